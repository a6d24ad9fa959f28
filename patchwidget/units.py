"""Unit views of hook-point tensors, in plain torch.

A hook point's tensor is viewed as units ``(batch, pos, unit, width)`` so that one boolean mask
over ``(batch, pos, unit)`` expresses any set of patches. This module imports nothing but torch:
remote requests ship it by value (``nnsight.register``), so NDIF runs the same code as a local run.
"""

from __future__ import annotations

import torch

PATTERN = "pattern"  # (batch, head, query, key): units are heads, on axis 2 after a transpose
NEURONS = "neurons"  # (batch, pos, neuron): one unit of width 1 per neuron


def to_units(view: str, x: torch.Tensor, n_units: int) -> torch.Tensor:
    """``x`` as ``(batch, pos, unit, width)``; ``view`` names hook points with their own layout."""
    if view == PATTERN:
        return x.transpose(1, 2)
    if view == NEURONS:
        return x.unsqueeze(-1)
    if n_units == 1:
        return x.unsqueeze(2)
    return x.reshape(x.shape[0], x.shape[1], n_units, -1)


def from_units(view: str, units: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_units`, shaped like the hook point's tensor ``like``."""
    if view == PATTERN:
        return units.transpose(1, 2)
    return units.reshape(like.shape)


def patch_units(mask: torch.Tensor, source: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """``units`` with the masked cells taken from ``source``, on the units' device and dtype (a
    layer of a model spread over devices has its own device)."""
    return torch.where(mask.to(units.device), source.to(units.device, units.dtype), units)


def mask_of(rows: int, length: int, n_units: int, cells: torch.Tensor) -> torch.Tensor:
    """A boolean mask ``(rows, length, n_units, 1)`` true at the ``cells`` (n, 3) = (row, pos,
    unit)."""
    mask = torch.zeros(rows, length, n_units, 1, dtype=torch.bool)
    cells = cells.long()
    mask[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    return mask
