"""Patch sets whose first layer changes only its own positions: that layer runs alone.

A head's output, a query, a neuron, the MLP's or the block's output at position ``q`` feeds only
position ``q`` in the rest of its layer (:data:`prefix.OWN_POSITION`), and the layer's keys and
values are the base run's. When every changed cell of a set's first layer ``L`` is such a point,
that layer's output differs from the base run's only at those positions ``P``. One-layer passes
(:mod:`own_layer_pass`: every other layer skipped, the base run's keys and values for the
attention) compute it there for many sets at once, and each set's packed pass starts at layer
``L + 1``: layer ``L`` costs ``|P|`` positions instead of the ``length - p`` of the set's suffix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .batching import BatchCost
from .hookpoints import Key, Target
from .prefix import OWN_POSITION

# Slots of one one-layer pass (per pair): its attention mask holds slots x (length + slots).
MAX_WIDTH = 512


def own_positions(
    targets: Sequence[Target],
    start: tuple[int, int],
    changed: dict[Key, torch.Tensor],
    n_layers: int,
    length: int,
) -> tuple[int, ...] | None:
    """The positions ``P`` where a set's first layer changes, when its cells there are all
    own-position points and ``P`` is shorter than the set's suffix (else None). The last layer
    is left out: its own-position cells are read only at the last position already."""
    layer, first = start
    if layer >= n_layers - 1:
        return None
    positions: set[int] = set()
    for t in targets:
        if t.layer != layer:
            continue
        if t.point not in OWN_POSITION:
            return None
        cells = changed[(t.point, t.layer)][:, t.unit]
        kept = range(length) if t.positions is None else t.positions
        positions.update(p for p in kept if 0 <= p < length and bool(cells[p]))
    if not positions or len(positions) >= length - first:
        return None
    return tuple(sorted(positions))


def worthwhile(
    candidates: dict[int, tuple[int, ...]],
    starts: Sequence[tuple[int, int]],
    n_pairs: int,
    length: int,
    cost: BatchCost,
) -> dict[int, tuple[int, ...]]:
    """The candidates of the layers where one-layer passes save more than they cost (in
    token-layers, :class:`BatchCost`): a pass's fixed costs against the suffixes' positions of
    the first layer that its sets no longer compute."""
    by_layer: dict[int, list[int]] = {}
    for i in candidates:
        by_layer.setdefault(starts[i][0], []).append(i)
    kept: dict[int, tuple[int, ...]] = {}
    for members in by_layer.values():
        tokens = n_pairs * sum(len(candidates[i]) for i in members)
        saved = n_pairs * sum(length - starts[i][1] for i in members) - tokens
        passes = -(-tokens // max(1, min(cost.max_tokens, MAX_WIDTH * n_pairs)))
        if saved > passes * (cost.overhead + cost.layer_overhead):
            kept.update({i: candidates[i] for i in members})
    return kept
