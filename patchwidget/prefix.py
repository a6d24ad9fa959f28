"""Reusing the base run's prefix: with causal attention, a patch whose earliest position is ``p``
changes nothing before ``p`` in any layer, so a batch runs only positions ``p ..`` and reads the
base run's keys and values for the positions before them from a transformers key/value cache.

A patched cell whose source equals the base run's own value changes nothing either (counterfactual
prompts share their tokens up to the first one that differs), so a patch set starts at the first
layer and position where one of its cells differs from the base run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import DynamicCache

from .hookpoints import RESID_MID, Key, Target

KeysValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (pairs, kv_heads, pos, d_head)


def changed_cells(
    sources: dict[Key, torch.Tensor], base: dict[Key, torch.Tensor]
) -> dict[Key, torch.Tensor]:
    """Per hook point, the (position, unit) cells where the source differs from the base run's
    own value in any pair: a patch of any other cell writes the value already there."""
    return {k: (v != base[k]).flatten(3).any(-1).any(0).cpu() for k, v in sources.items()}


def first_change(
    targets: Sequence[Target], changed: dict[Key, torch.Tensor], n_layers: int, length: int
) -> tuple[int, int]:
    """The first layer and position a patch set changes (the last ones for a set that changes
    nothing): before either, its run is the base run."""
    layer, position = n_layers - 1, length - 1
    for t in targets:
        cells = changed[(t.point, t.layer)][:, t.unit].clone()
        if t.positions is not None:
            cells[[p for p in range(length) if p not in t.positions]] = False
        where = torch.nonzero(cells).flatten()
        if len(where):
            layer, position = min(layer, t.layer), min(position, int(where[0]))
    return layer, position


def changes_nothing(
    targets: Sequence[Target], changed: dict[Key, torch.Tensor], length: int
) -> bool:
    """Whether every cell a patch set writes already holds its source value in the base run:
    then its run is the base run, and its readouts are the base run's."""
    for t in targets:
        cells = changed[(t.point, t.layer)][:, t.unit]
        if t.positions is not None:
            cells = cells[[p for p in t.positions if 0 <= p < length]]
        if bool(cells.any()):
            return False
    return True


# Hook points whose value at a position feeds only that position in the rest of its layer (a
# query, an attention pattern's row, a head's output, the MLP, the block's output): in the last
# layer they reach the readout only at the last position.
OWN_POSITION = frozenset(
    {"q", "pattern", "z", "attn_contrib", "neurons", "mlp_contrib", "block_out", RESID_MID}
)


def read_cells(targets: Sequence[Target], n_layers: int, length: int) -> list[Target]:
    """A patch set's cells that can change the readout at the last position: the last layer's
    own-position points only there (the others change nothing that is read, and a set of only
    those reads the base run's values exactly)."""
    out = []
    for t in targets:
        if t.layer == n_layers - 1 and t.point in OWN_POSITION:
            if t.positions is not None and length - 1 not in t.positions:
                continue
            t = replace(t, positions=(length - 1,))
        out.append(t)
    return out


def trim(targets: Sequence[Target], layer: int, start: int) -> list[Target]:
    """The targets' cells from ``layer`` and position ``start`` on, for a pass that starts there
    (the earlier ones write the base run's own values into a run that is still the base run)."""
    out = []
    for t in targets:
        kept = t.positions if t.positions is None else tuple(p for p in t.positions if p >= start)
        if t.layer >= layer and kept != ():
            out.append(replace(t, positions=kept))
    return out


def reuse_blocker(targets: Sequence[Target]) -> str | None:
    """Why a patch set must run every position, or None when the prefix can be reused.

    (Remote models never get here: runner.run hands them to remote.py, and says why.)"""
    if any(t.point == "pattern" for t in targets):
        return (
            "attention-pattern patches replace whole rows of softmax weights inside nnsight's "
            "instrumented attention function, whose source values are laid out over every "
            "position; they run the full prompt"
        )
    return None


def empty_cache() -> DynamicCache:
    """A cache to hand a base run, which fills it with every layer's keys and values.

    Built without the model's config so that sliding-window layers keep every position too."""
    return DynamicCache()


def keys_values(cache: DynamicCache) -> KeysValues:
    """Every layer's (keys, values) from a cache a base run filled."""
    # The layer types transformers declares include some without keys (linear attention,
    # dummies); a base run of a softmax-attention model fills ordinary ones.
    layers: list[Any] = list(cache.layers)
    return [(layer.keys, layer.values) for layer in layers]


def prefix_cache(kv: KeysValues, pairs: torch.Tensor, start: int, config: Any) -> DynamicCache:
    """A cache holding positions ``0 .. start - 1`` of the base run for rows of ``pairs``.

    Built with the model's ``config``, sliding-window layers (Gemma 2, Mistral) keep the window
    they would have kept in a full run; with None, every layer keeps every position. Each layer's
    rows are picked on its own device (a model spread over several)."""
    data = []
    for k, v in kv:
        rows = pairs.to(k.device)
        data.append((k[rows, :, :start], v[rows, :, :start]))
    return DynamicCache(data, config=config)


@dataclass(frozen=True)
class BaseRun:
    """What patched passes reuse of their direction's base run: every block's output (to skip
    the layers before a batch's first patch) and, where positions can be skipped too, every
    layer's keys and values."""

    blocks: list[Any]
    kv: KeysValues | None
