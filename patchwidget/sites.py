"""Where each site is patched: the site → hook-point mapping and the sizes of a site's axes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .architectures import ModelDims
from .components import HEAD_PART_SITES, SITES
from .hookpoints import RESID_MID, HookPoints, Target

SIMPLE_POINTS = {
    "resid_pre": "block_in",
    "resid_mid": RESID_MID,
    "resid_post": "block_out",
    "attn_out": "attn_contrib",
    "mlp_out": "mlp_contrib",
}
KV_SITES = ("head_k", "head_v")


def n_heads_of(site: str, dims: ModelDims) -> int:
    """How many heads a head site has: key/value heads for head_k/head_v, else query heads."""
    return dims.n_kv_heads if site in KV_SITES else dims.n_heads


def kv_group(dims: ModelDims) -> int:
    """Query heads per key/value head (1 without grouped-query attention)."""
    return max(1, dims.n_heads // dims.n_kv_heads)


def kv_head(site: str, head: int | None, group: int) -> int | None:
    """The site's head for a query head: key/value sites map it to its group's key/value head."""
    if head is not None and site in KV_SITES:
        return head // group
    return head


def sweep_axes(site: str, by_pos: bool) -> tuple[str, ...]:
    """The axes of a sweep over ``site``; ``by_pos`` adds a position axis to head parts."""
    axes = SITES[site].axes
    if by_pos and "pos" not in axes:
        if site not in HEAD_PART_SITES:
            raise ValueError(f"by_pos applies to head_q/k/v/pattern, not {site!r}")
        axes = (*axes, "pos")
    return axes


def indices(values: Iterable[int] | int | None, size: int, name: str) -> tuple[int, ...]:
    """Checked indices into an axis of ``size`` (negative ones count from the end; None: all)."""
    if values is None:
        return tuple(range(size))
    out = []
    for v in [values] if isinstance(values, int) else values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {v!r}")
        if not -size <= v < size:
            raise ValueError(f"{name} {v} is out of range: this model has {size} ({0}..{size - 1})")
        out.append(int(v) % size)
    if not out:
        raise ValueError(f"no {name}s selected: give at least one, or None for all")
    return tuple(out)


def target(
    hooks: HookPoints,
    site: str,
    layer: int,
    head: int | None = None,
    pos: int | None = None,
    neuron: int | None = None,
    together: tuple[int, ...] | None = None,
) -> Target:
    """The hook-point unit a component of ``site`` patches, at ``pos`` (else ``together``)."""
    positions = (pos,) if pos is not None else together
    if site in SIMPLE_POINTS:
        return Target(SIMPLE_POINTS[site], layer, 0, positions)
    if site in ("head", "head_by_pos"):
        return Target("z", layer, _unit(head), positions)
    if site == "head_pattern":
        return Target("pattern", layer, _unit(head), positions)
    if site in HEAD_PART_SITES:
        point, unit = hooks.head_part(site[-1], _unit(head))
        return Target(point, layer, unit, positions)
    return Target("neurons", layer, _unit(neuron), positions)


def _unit(index: int | None) -> int:
    if index is None:
        raise ValueError("this site needs a head or neuron index")
    return index
