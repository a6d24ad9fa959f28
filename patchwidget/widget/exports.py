"""Files the widget writes from the view on screen: a PNG figure (its grid, one shared colour
scale) and a CSV table (a row per cell and pair, a column per metric)."""

from __future__ import annotations

import csv
import itertools
import math
import pathlib
import time
from typing import Any

import numpy as np

from .. import metrics
from ..plotting import SCALES, HeatPanel, base_value, draw_panels
from .messages import MessageError
from .views import ViewData

COMPONENT_FIELDS = ("site", "layer", "head", "kv_head", "pos", "neuron")


def parse_display(msg: dict[str, Any]) -> tuple[str | float, bool]:
    """The colour ``scale`` ("auto", "gap", "fit" or a positive number) and ``drop`` (noising
    shown as 1 - normalised) of a save request."""
    scale = msg.get("scale", "auto")
    if isinstance(scale, bool) or not (
        scale in SCALES or (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0)
    ):
        raise MessageError(
            f"'scale' must be one of {', '.join(SCALES)} or a positive number; got {scale!r}",
            "scale",
        )
    drop = msg.get("drop", False)
    if not isinstance(drop, bool):
        raise MessageError("'drop' must be true or false", "drop")
    return scale, drop


def view_panels(view: ViewData, metric: str, normalized: bool, drop: bool) -> list[HeatPanel]:
    """The view's grid per direction, as on screen (rows: all axes but the last)."""
    row_axes, col_axis = view.axes[:-1], view.axes[-1]
    rows = [" ".join(parts) for parts in itertools.product(*(view.labels[a] for a in row_axes))]
    panels = []
    for direction, panel in view.panels.items():
        values = metrics.compute(
            metric, panel["readouts"], panel["clean"], panel["corrupted"], normalized=normalized
        ).astype(np.float64)
        base = base_value(direction, normalized, metrics.baselines(metric, *_bases(panel)))
        title = f"{view.request.label or view.request.site} · {direction}"
        if drop and normalized and direction == "noising":
            values, base = 1.0 - values, 0.0
            title += " (drop from clean: 1 - normalised)"
        panels.append(
            HeatPanel(
                title=title,
                values=values.reshape(len(rows), -1),
                rows=tuple(rows),
                cols=tuple(view.labels[col_axis]),
                row_axis=" x ".join(row_axes),
                col_axis=col_axis,
                base=base,
            )
        )
    return panels


def save_view_figure(
    view: ViewData,
    metric: str,
    normalized: bool,
    scale: str | float,
    drop: bool,
    directory: pathlib.Path,
) -> pathlib.Path:
    """The view as one figure (a panel per direction, one colour scale) in a new PNG."""
    if scale == "gap" and not normalized:
        scale = "auto"
    fig = draw_panels(view_panels(view, metric, normalized, drop), metric, normalized, scale)
    path = unique_path(directory, f"patchwidget-{view.request.site}-{metric}", ".png")
    fig.savefig(path, dpi=150)
    return path


def write_view_csv(view: ViewData, directory: pathlib.Path) -> pathlib.Path:
    """A row per (direction, cell, pair); columns: the component, the pair, every metric raw and
    normalised."""
    path = unique_path(directory, f"patchwidget-{view.request.site}", ".csv")
    names = list(metrics.METRICS)
    header = ["direction", *COMPONENT_FIELDS, "pair"]
    header += [f"{m}{suffix}" for m in names for suffix in ("", "_normalized")]
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        for direction, panel in view.panels.items():
            columns = [
                metrics.compute(
                    m,
                    panel["readouts"],
                    panel["clean"],
                    panel["corrupted"],
                    normalized=norm,
                    per_pair_values=True,
                ).reshape(-1, view.n_pairs)
                for m in names
                for norm in (False, True)
            ]
            for cell, component in enumerate(view.components()):
                for pair in range(view.n_pairs):
                    fields = [component.get(k, "") for k in COMPONENT_FIELDS]
                    values = [_number(c[cell, pair]) for c in columns]
                    out.writerow([direction, *fields, pair, *values])
    return path


def unique_path(directory: pathlib.Path, stem: str, suffix: str) -> pathlib.Path:
    """``stem-<date-time><suffix>``, with ``-2``, ``-3``… when saved again in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        path = directory / f"{stem}-{stamp}{'' if n == 1 else f'-{n}'}{suffix}"
        try:
            path.touch(exist_ok=False)  # claims the name, so two saves never share it
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _bases(panel: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return panel["clean"], panel["corrupted"]


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))
