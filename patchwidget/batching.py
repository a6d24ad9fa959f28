"""Grouping patch sets into forward passes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .hookpoints import Target


def first_layer(targets: Sequence[Target]) -> int:
    return min((t.layer for t in targets), default=0)


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


def rows_of(value: Any, pairs: np.ndarray) -> Any:
    """Rows of a block output (a tensor, or a tuple led by one) for the given pairs."""
    index = torch.as_tensor(pairs)
    if isinstance(value, tuple):
        return (value[0][index.to(value[0].device)], *value[1:])
    return value[index.to(value.device)]
