"""Matplotlib heatmaps of patching results: diverging, centred on zero, never clipped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import METRICS
from .spread import Z95

if TYPE_CHECKING:
    from .result import PatchResult


def heatmap_grid(
    result: PatchResult, metric: str, normalized: bool, pair: int | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """The values (of one pair, or the mean) as a 2-D grid with row and column labels
    (layer x head rows when 3-D)."""
    if pair is None:
        values = np.asarray(result.values(metric, normalized))
    elif not 0 <= pair < result.n_pairs:
        raise ValueError(f"pair {pair} is out of range: this result has {result.n_pairs} pairs")
    else:
        values = np.asarray(result.values(metric, normalized, per_pair=True))[..., pair]
    axes, labels = result.axes, result.labels
    if len(axes) == 1:
        return values[None, :], [""], list(labels[axes[0]])
    if len(axes) == 2:
        return values, list(labels[axes[0]]), list(labels[axes[1]])
    rows = [f"{a} {b}" for a in labels[axes[0]] for b in labels[axes[1]]]
    return values.reshape(len(rows), -1), rows, list(labels[axes[2]])


def includes_zero(result: PatchResult, metric: str, normalized: bool) -> np.ndarray:
    """Cells whose mean ± 1.96 standard errors over pairs includes 0 (the widget's rule)."""
    mean = np.asarray(result.values(metric, normalized))
    se = np.asarray(result.stderr(metric, normalized))
    with np.errstate(invalid="ignore"):
        return np.isfinite(mean) & np.isfinite(se) & (np.abs(mean) <= Z95 * se)


def plot_result(
    result: PatchResult,
    metric: str,
    normalized: bool,
    ax: Any = None,
    title: str = "",
    dim: bool = False,
    pair: int | None = None,
) -> Any:
    """Draw ``result`` on ``ax`` (a new figure when None) and return the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    grid, rows, cols = heatmap_grid(result, metric, normalized, pair)
    finite = np.abs(grid[np.isfinite(grid)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    if ax is None:
        width = min(18.0, 2.5 + 0.45 * len(cols))
        height = min(24.0, 1.8 + 0.32 * len(rows))
        _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap="RdBu_r",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax),
        aspect="auto",
        interpolation="nearest",
    )
    if dim and pair is None:
        pale = includes_zero(result, metric, normalized).reshape(grid.shape)
        veil = np.zeros((*grid.shape, 4))
        veil[pale] = (1.0, 1.0, 1.0, 0.75)
        ax.imshow(veil, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(result.axes[-1])
    ax.set_ylabel(" x ".join(result.axes[:-1]))
    label = f"{metric}, normalised" if normalized else metric
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    scale = "\n1 = clean behaviour, 0 = corrupted" if normalized else ""
    which = f" (pair {pair})" if pair is not None else ""
    if dim and pair is None:
        scale += "\npale: 95% interval over pairs includes 0"
    ax.set_title(
        title or f"{result.site}, {result.direction}{which}: {METRICS[metric]}{scale}",
        fontsize=10,
    )
    return ax.figure
