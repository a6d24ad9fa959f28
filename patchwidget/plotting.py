"""Matplotlib heatmaps of patching results: diverging, centred on zero, never clipped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import METRICS

if TYPE_CHECKING:
    from .result import PatchResult


def heatmap_grid(
    result: PatchResult, metric: str, normalized: bool
) -> tuple[np.ndarray, list[str], list[str]]:
    """The values as a 2-D grid with row and column labels (layer x head rows when 3-D)."""
    values = np.asarray(result.values(metric, normalized))
    axes, labels = result.axes, result.labels
    if len(axes) == 1:
        return values[None, :], [""], list(labels[axes[0]])
    if len(axes) == 2:
        return values, list(labels[axes[0]]), list(labels[axes[1]])
    rows = [f"{a} {b}" for a in labels[axes[0]] for b in labels[axes[1]]]
    return values.reshape(len(rows), -1), rows, list(labels[axes[2]])


def plot_result(
    result: PatchResult, metric: str, normalized: bool, ax: Any = None, title: str = ""
) -> Any:
    """Draw ``result`` on ``ax`` (a new figure when None) and return the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    grid, rows, cols = heatmap_grid(result, metric, normalized)
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
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(result.axes[-1])
    ax.set_ylabel(" x ".join(result.axes[:-1]))
    label = f"{metric}, normalised" if normalized else metric
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    scale = "\n1 = clean behaviour, 0 = corrupted" if normalized else ""
    ax.set_title(
        title or f"{result.site}, {result.direction}: {METRICS[metric]}{scale}", fontsize=10
    )
    return ax.figure
