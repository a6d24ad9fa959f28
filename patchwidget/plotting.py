"""The one heatmap figure builder: ``PatchResult.plot``, ``patchwidget sweep`` and the widget's
Save figure all draw through ``draw_panels``.

Colours are diverging and centred on 0. Normalised values use a fixed scale by default (±1 = the
whole clean-corrupted gap), so a tiny effect looks tiny; raw values a symmetric scale shared by
every panel of the figure. Values beyond the scale keep the end colour and are circled; each panel
states its largest effect in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import METRICS

if TYPE_CHECKING:
    from .result import PatchResult

SCALES = ("auto", "gap", "fit")


@dataclass(frozen=True)
class HeatPanel:
    """One heatmap: a 2-D grid of metric values with labels, and the base run's value."""

    title: str
    values: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    row_axis: str
    col_axis: str
    base: float  # the unpatched base run in the same units (0 or 1 when normalised)


def base_value(direction: str, normalized: bool, baselines: dict[str, float]) -> float:
    """The metric of the run a patch starts from: corrupted when denoising, clean when noising."""
    run = "clean" if direction == "noising" else "corrupted"
    if normalized:
        return 1.0 if run == "clean" else 0.0
    return float(baselines[run])


def result_panel(result: PatchResult, metric: str, normalized: bool, title: str = "") -> HeatPanel:
    """A result as a grid: rows are every axis but the last (``L1 H3``), columns the last."""
    values = np.asarray(result.values(metric, normalized), dtype=np.float64)
    axes, labels = result.axes, result.labels
    row_axes = axes[:-1]
    rows = [""]
    for axis in row_axes:
        rows = [f"{r} {label}".strip() for r in rows for label in labels[axis]]
    return HeatPanel(
        title=title or f"{result.site}, {result.direction}",
        values=values.reshape(len(rows), -1),
        rows=tuple(rows),
        cols=tuple(labels[axes[-1]]),
        row_axis=" x ".join(row_axes),
        col_axis=axes[-1],
        base=base_value(result.direction, normalized, result.baselines(metric)),
    )


def scale_limit(
    panels: Sequence[HeatPanel], normalized: bool, scale: str | float = "auto"
) -> float:
    """The colour scale's end (shared by all panels): ``"gap"`` = 1 (normalised only),
    ``"fit"`` = the largest |value| on screen, ``"auto"`` = gap when normalised else fit,
    or a positive number."""
    if not isinstance(scale, str):
        limit = float(scale)
        if not np.isfinite(limit) or limit <= 0:
            raise ValueError(f"scale must be a positive number or one of {SCALES}; got {scale!r}")
        return limit
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)} or a number; got {scale!r}")
    if scale == "gap" and not normalized:
        raise ValueError("scale='gap' needs normalized=True: raw values have no gap to scale by")
    if scale == "gap" or (scale == "auto" and normalized):
        return 1.0
    finite = [np.abs(p.values[np.isfinite(p.values)]) for p in panels]
    largest = max((float(f.max()) for f in finite if f.size), default=0.0)
    return largest if largest > 0 else 1.0


def format_percent(fraction: float) -> str:
    """A fraction of the gap in percent with sensible digits: 0.0001 -> '0.01 %'."""
    pct = abs(100 * fraction)
    if pct >= 10:
        text = f"{pct:.0f}"
    elif pct >= 1:
        text = f"{pct:.1f}"
    else:
        text = f"{pct:.2g}"
    return f"{'-' if fraction < 0 else ''}{text} %"


def largest_effect(panel: HeatPanel, normalized: bool, metric: str) -> str:
    """The panel's largest move away from its base run, in words."""
    effect = np.abs(panel.values - panel.base)
    if not np.isfinite(effect).any():
        return "largest effect: none yet (no patch has finished)"
    flat = int(np.nanargmax(np.where(np.isfinite(effect), effect, -1.0)))
    r, c = divmod(flat, panel.values.shape[1])
    where = " ".join(x for x in (panel.rows[r], panel.cols[c]) if x)
    amount = (
        f"{format_percent(float(effect.flat[flat]))} of the gap"
        if normalized
        else f"{float(effect.flat[flat]):.3g} ({METRICS[metric]})"
    )
    return f"largest effect: {amount}, at {where}"


def draw_panels(
    panels: Sequence[HeatPanel],
    metric: str,
    normalized: bool,
    scale: str | float = "auto",
    axes: Sequence[Any] | None = None,
    suptitle: str = "",
) -> Any:
    """Draw panels side by side with one colour scale; returns the figure."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    limit = scale_limit(panels, normalized, scale)
    if axes is None:
        n_rows, n_cols = panels[0].values.shape
        width = min(9.0, 2.6 + 0.42 * n_cols) * len(panels) + 1.2
        height = min(16.0, 2.0 + 0.32 * n_rows)
        fig = Figure(figsize=(min(28.0, width), height), layout="constrained")
        axes = list(fig.subplots(1, len(panels), squeeze=False)[0])
    norm = Normalize(vmin=-limit, vmax=limit, clip=True)
    beyond_low = beyond_high = False
    image = None
    for ax, panel in zip(axes, panels, strict=True):
        image = ax.imshow(
            np.ma.masked_invalid(panel.values),
            cmap="RdBu_r",
            norm=norm,
            aspect="auto",
            interpolation="nearest",
        )
        rows, cols = np.nonzero(np.abs(np.nan_to_num(panel.values)) > limit * (1 + 1e-9))
        if rows.size:
            ax.scatter(cols, rows, s=30, facecolors="none", edgecolors="black", linewidths=1.0)
        finite = panel.values[np.isfinite(panel.values)]
        beyond_low |= bool((finite < -limit).any())
        beyond_high |= bool((finite > limit).any())
        ax.set_xticks(range(len(panel.cols)), panel.cols, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(panel.rows)), panel.rows, fontsize=8)
        ax.set_xlabel(panel.col_axis)
        ax.set_ylabel(panel.row_axis)
        ax.set_title(f"{panel.title}\n{largest_effect(panel, normalized, metric)}", fontsize=9)
    fig = axes[0].figure
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (beyond_low, beyond_high), "both"
    )
    if normalized:
        label = f"{metric}, normalised (±1 = the whole clean-corrupted gap)"
    else:
        label = f"{metric} (symmetric scale shared by all panels)"
    if beyond_low or beyond_high:
        label += "; circled: beyond the scale"
    fig.colorbar(image, ax=list(axes), label=label, shrink=0.8, extend=extend)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_result(
    result: PatchResult,
    metric: str,
    normalized: bool,
    ax: Any = None,
    title: str = "",
    scale: str | float = "auto",
) -> Any:
    """Draw ``result`` on ``ax`` (a new figure when None) and return the figure."""
    scale_note = "\n1 = clean behaviour, 0 = corrupted" if normalized else ""
    panel = result_panel(
        result,
        metric,
        normalized,
        title or f"{result.site}, {result.direction}: {METRICS[metric]}{scale_note}",
    )
    if ax is None:
        import matplotlib.pyplot as plt

        n_rows, n_cols = panel.values.shape
        _, ax = plt.subplots(
            figsize=(min(18.0, 3.0 + 0.45 * n_cols), min(24.0, 2.2 + 0.32 * n_rows)),
            layout="constrained",
        )
    return draw_panels([panel], metric, normalized, scale, axes=[ax])
