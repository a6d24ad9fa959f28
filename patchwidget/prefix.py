"""Reusing the base run's prefix: with causal attention, a patch whose earliest position is ``p``
changes nothing before ``p`` in any layer, so a batch runs only positions ``p ..`` and reads the
base run's keys and values for the positions before them from a transformers key/value cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from .hookpoints import Target

KeysValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (pairs, kv_heads, pos, d_head)


def first_position(targets: Sequence[Target]) -> int:
    """The earliest position a patch set touches (0 for a patch at all positions)."""
    return min((min(t.positions) if t.positions else 0 for t in targets), default=0)


def reuse_blocker(targets: Sequence[Target], remote: bool) -> str | None:
    """Why a patch set must run every position, or None when the prefix can be reused."""
    if remote:
        return (
            "remote execution: the base run's keys and values are filled into a local cache "
            "object in place, which a remote run neither fills nor receives"
        )
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
    return [(layer.keys, layer.values) for layer in cache.layers]


def prefix_cache(kv: KeysValues, pairs: torch.Tensor, start: int, config: Any) -> DynamicCache:
    """A cache holding positions ``0 .. start - 1`` of the base run for rows of ``pairs``.

    Built with the model's config, so sliding-window layers (Gemma 2, Mistral) keep the window
    they would have kept in a full run."""
    rows = pairs.to(kv[0][0].device)
    data = [(k[rows, :, :start], v[rows, :, :start]) for k, v in kv]
    return DynamicCache(data, config=config)


@dataclass(frozen=True)
class BaseRun:
    """What patched passes reuse of their direction's base run: every block's output (to skip
    the layers before a batch's first patch) and, where positions can be skipped too, every
    layer's keys and values."""

    blocks: list[Any]
    kv: KeysValues | None
