"""Grouping patch sets into forward passes, two ways with one signature.

A rectangular pass (``group_batches``) starts every row at its sets' smallest first layer ``L``
and position ``p``: ``(n_layers - L) * (length - p)`` token-layers per row. A packed pass
(``group_bands``, :mod:`packing`) computes each set's own suffix from ``L``. Either way a pass
also costs a fixed amount, a fixed amount per layer and the answers' logits; sets are grouped
so that the total, under the :class:`BatchCost` of :mod:`costs`, is small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .hookpoints import Target


@dataclass(frozen=True)
class BatchCost:
    """What a forward pass costs, in units of one position through one layer of one row."""

    overhead: float  # per pass: trace set-up, kernel launches, readouts
    per_row: float  # per row: the answer position's logits
    max_tokens: int  # rows x computed positions of one pass: its best size (CPU) or memory (GPU)
    max_rows: int | None = None  # the user's batch_size, if given
    layer_overhead: float = 0.0  # per pass and computed layer: hooks, module calls


def first_layer(targets: Sequence[Target]) -> int:
    return min((t.layer for t in targets), default=0)


def group_batches(
    starts: Sequence[tuple[int, int]],
    n_pairs: int,
    n_layers: int,
    length: int,
    cost: BatchCost,
) -> list[list[int]]:
    """Indices of the patch sets of each pass, from each set's (first layer, first position).

    Sets are tiled into rectangles of first layers x first positions, a rectangle running from
    its smallest layer and position: an exact dynamic program over layer bands, each with its
    own best cut of positions. A rectangle with more rows than ``cost.max_tokens`` allows is
    split into several passes."""
    layers = sorted({layer for layer, _ in starts})
    positions = sorted({pos for _, pos in starts})
    count = np.zeros((len(layers), len(positions)), dtype=np.int64)
    li, pi = {v: i for i, v in enumerate(layers)}, {v: i for i, v in enumerate(positions)}
    for layer, pos in starts:
        count[li[layer], pi[pos]] += 1

    def position_cuts(lo: int, hi: int) -> tuple[float, list[int]]:
        """Best cost and cut points over positions for layer band ``lo .. hi - 1``."""
        cum = np.concatenate([[0], np.cumsum(count[lo:hi].sum(0))])
        depth = n_layers - layers[lo]
        suffix = length - np.asarray(positions)
        per_pass = np.maximum(1, cost.max_tokens // (suffix * n_pairs))
        if cost.max_rows is not None:
            per_pass = np.minimum(per_pass, max(1, cost.max_rows // n_pairs))
        best = np.zeros(len(positions) + 1)
        choice = np.zeros(len(positions) + 1, dtype=np.int64)
        for j in range(1, len(positions) + 1):
            k = np.arange(j)
            sets = cum[j] - cum[k]
            passes = -(-sets // per_pass[k])
            total = (
                best[k]
                + passes * (cost.overhead + cost.layer_overhead * depth)
                + sets * n_pairs * (depth * suffix[k] + cost.per_row)
            )
            choice[j] = int(np.argmin(total))
            best[j] = total[choice[j]]
        cuts, j = [], len(positions)
        while j > 0:
            cuts.append(int(choice[j]))
            j = cuts[-1]
        return float(best[-1]), sorted(cuts)

    best = np.zeros(len(layers) + 1)
    choice: list[tuple[int, list[int]]] = [(0, [])]
    for hi in range(1, len(layers) + 1):
        bands = [(lo, *position_cuts(lo, hi)) for lo in range(hi)]
        lo, total, cuts = min(bands, key=lambda band: best[band[0]] + band[1])
        best[hi] = best[lo] + total
        choice.append((lo, cuts))

    groups: dict[tuple[int, int], list[int]] = {}
    hi = len(layers)
    while hi > 0:
        lo, cuts = choice[hi]
        edges = [*cuts, len(positions)]
        for i, (layer, pos) in enumerate(starts):
            if lo <= li[layer] < hi:
                segment = int(np.searchsorted(edges, pi[pos], side="right")) - 1
                groups.setdefault((lo, segment), []).append(i)
        hi = lo
    out: list[list[int]] = []
    for members in groups.values():
        members.sort(key=lambda i: (starts[i], i))
        suffix = length - min(starts[i][1] for i in members)
        size = max(1, cost.max_tokens // (suffix * n_pairs))
        if cost.max_rows is not None:
            size = min(size, max(1, cost.max_rows // n_pairs))
        out.extend(members[s : s + size] for s in range(0, len(members), size))
    return sorted(out, key=min)


def group_bands(
    starts: Sequence[tuple[int, int]],
    n_pairs: int,
    n_layers: int,
    length: int,
    cost: BatchCost,
) -> list[list[int]]:
    """Indices of the patch sets of each packed pass (:mod:`packing`), from each set's (first
    layer, first position).

    A packed pass computes each set's own suffix, so only its first layer costs anything extra:
    a dynamic program cuts the first layers into bands (a pass starts at its band's first
    layer), each band split into passes of at most ``cost.max_tokens`` positions and
    ``cost.max_rows`` rows (sets x pairs)."""
    layers = sorted({layer for layer, _ in starts})
    tokens = np.zeros(len(layers))
    sets = np.zeros(len(layers))
    li = {v: i for i, v in enumerate(layers)}
    for layer, pos in starts:
        tokens[li[layer]] += (length - pos) * n_pairs
        sets[li[layer]] += n_pairs
    max_rows = cost.max_rows or 2**62

    def band_cost(lo: int, hi: int) -> float:
        depth = n_layers - layers[lo]
        work, rows = tokens[lo:hi].sum(), sets[lo:hi].sum()
        passes = max(-(-work // cost.max_tokens), -(-rows // max_rows), 1)
        fixed = cost.overhead + cost.layer_overhead * depth
        return float(passes * fixed + depth * work + cost.per_row * rows)

    best = np.zeros(len(layers) + 1)
    cut = [0] * (len(layers) + 1)
    for hi in range(1, len(layers) + 1):
        options = [best[lo] + band_cost(lo, hi) for lo in range(hi)]
        cut[hi] = int(np.argmin(options))
        best[hi] = options[cut[hi]]
    out: list[list[int]] = []
    hi = len(layers)
    while hi > 0:
        lo = cut[hi]
        band = [i for i, (layer, _) in enumerate(starts) if li[layer] in range(lo, hi)]
        band.sort(key=lambda i: (starts[i][1], starts[i][0], i))
        out.extend(
            split_runs(band, [(length - starts[i][1]) * n_pairs for i in band], n_pairs, cost)
        )
        hi = lo
    return sorted(out, key=min)


def split_runs(
    members: list[int], tokens: list[int], n_pairs: int, cost: BatchCost
) -> list[list[int]]:
    """``members`` in order, cut into runs of at most ``cost.max_tokens`` tokens and
    ``cost.max_rows`` rows (at least one set per run)."""
    per_set = max(1, (cost.max_rows or 2**62) // n_pairs)
    runs: list[list[int]] = [[]]
    used = 0
    for member, size in zip(members, tokens, strict=True):
        if runs[-1] and (used + size > cost.max_tokens or len(runs[-1]) == per_set):
            runs.append([])
            used = 0
        runs[-1].append(member)
        used += size
    return [run for run in runs if run]


def batches(
    patch_sets: Sequence[Sequence[Target]], size: int, min_size: int
) -> list[tuple[int, int]]:
    """(start, stop) of batches of at most ``size`` patch sets. A batch also ends where the
    first patched layer changes once it holds ``min_size``, so batches can skip the layers
    before their patches without shrinking into many tiny forward passes."""
    bounds, start = [], 0
    for i in range(1, len(patch_sets) + 1):
        if (
            i == len(patch_sets)
            or i - start == size
            or (
                i - start >= min_size
                and first_layer(patch_sets[i]) != first_layer(patch_sets[i - 1])
            )
        ):
            bounds.append((start, i))
            start = i
    return bounds


def gather_positions(value: Any, rows: torch.Tensor, positions: torch.Tensor) -> Any:
    """Row ``rows[r]``, position ``positions[r, s]`` at slot (r, s) of a block output (a tensor,
    or a tuple led by one)."""
    head = value[0] if isinstance(value, tuple) else value
    picked = head[rows.to(head.device)[:, None], positions.to(head.device)]
    return (picked, *value[1:]) if isinstance(value, tuple) else picked


def rows_of(value: Any, pairs: np.ndarray, start: int = 0) -> Any:
    """Positions ``start ..`` of a block output (a tensor, or a tuple led by one) for the given
    pairs."""
    index = torch.as_tensor(pairs)
    if isinstance(value, tuple):
        return (value[0][index.to(value[0].device), start:], *value[1:])
    return value[index.to(value.device), start:]
