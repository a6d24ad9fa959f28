"""Packed passes: the suffixes of patch sets that start at different positions, side by side in
one row.

A patch set that first changes position ``p`` computes only positions ``p ..`` (the base run's
keys and values stand in for the rest, see :mod:`prefix`). Rather than giving every set its own
row, padded to the pass's earliest start, a row holds several sets' suffixes one after another
(*segments*). Each position keeps its own position id, and a 4-D attention mask lets it see the
cached positions before its segment's start and its own segment's earlier positions, so every
segment computes exactly what it would alone. A pass then computes no position that no set
needs, whatever mix of starts it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Packing:
    """Where each segment of a packed pass lies: ``rows`` rows of ``width`` slots.

    ``row_of``/``slot_of`` (segments,) give each segment's row and first slot; slot ``s`` of row
    ``r`` holds position ``position[r, s]`` of segment ``segment[r, s]`` (-1: padding)."""

    starts: tuple[int, ...]  # per segment: its first position
    length: int
    row_of: np.ndarray
    slot_of: np.ndarray
    segment: np.ndarray  # (rows, width)
    position: np.ndarray  # (rows, width)

    @property
    def rows(self) -> int:
        return int(self.segment.shape[0])

    @property
    def cached(self) -> int:
        """Positions of the base run's cache the pass reads: up to its latest start."""
        return max(self.starts)

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) of each segment's last position: where its answer is read."""
        last = self.slot_of + (self.length - 1 - np.asarray(self.starts))
        return self.row_of, last


def pack(starts: Sequence[int], length: int, capacity: int) -> Packing:
    """Segments ``starts[i] .. length - 1`` packed first-fit, longest first, into rows of at
    most ``capacity`` slots (at least ``length``, so any one segment fits)."""
    capacity = max(capacity, length)
    sizes = [length - s for s in starts]
    fill: list[int] = []
    row_of = np.zeros(len(starts), dtype=np.int64)
    slot_of = np.zeros(len(starts), dtype=np.int64)
    for i in sorted(range(len(starts)), key=lambda i: (-sizes[i], i)):
        row = next((r for r, used in enumerate(fill) if used + sizes[i] <= capacity), len(fill))
        if row == len(fill):
            fill.append(0)
        row_of[i], slot_of[i] = row, fill[row]
        fill[row] += sizes[i]
    width = max(fill, default=0)
    segment = np.full((len(fill), width), -1, dtype=np.int64)
    position = np.full((len(fill), width), length - 1, dtype=np.int64)
    for i, size in enumerate(sizes):
        slots = slice(slot_of[i], slot_of[i] + size)
        segment[row_of[i], slots] = i
        position[row_of[i], slots] = np.arange(starts[i], length)
    return Packing(tuple(starts), length, row_of, slot_of, segment, position)


def attention_mask(packing: Packing, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (rows, 1, width, cached + width): a position sees the cached positions
    before its segment's start and its segment's positions up to itself. A padding slot sees
    only itself (a row of nothing but masked keys would give NaN)."""
    segment, position = packing.segment, packing.position
    starts = np.asarray(packing.starts)
    real = segment >= 0
    first = np.where(real, starts[np.maximum(segment, 0)], 0)
    cached = np.arange(packing.cached)[None, None, :] < first[:, :, None]
    same = segment[:, :, None] == segment[:, None, :]
    earlier = position[:, None, :] <= position[:, :, None]
    own = np.where(real[:, :, None], same & earlier, np.eye(segment.shape[1], dtype=bool))
    return additive(np.concatenate([cached & real[:, :, None], own], axis=-1), dtype)[:, None]


def additive(allowed: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """The additive attention mask of a boolean one: 0 where allowed, the dtype's minimum
    elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask[torch.from_numpy(~allowed)] = torch.finfo(dtype).min
    return mask


def packing_blocker(config: Any, length: int) -> str | None:
    """Why passes of a model may not pack segments, or None when they may."""
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in ("eager", "sdpa"):
        return (
            f"attention implementation {implementation!r}: only eager and sdpa attention take "
            "the 4-D additive mask that keeps segments apart"
        )
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True) and window < length:
        return (
            f"sliding-window attention ({window} positions) shorter than the prompt: one mask "
            "for every layer can't hold each layer's window"
        )
    return None
