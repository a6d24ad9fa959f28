"""The widget's map as a static picture and a one-line summary, for where no widget front end runs.

Shown by the picture output that follows the widget's view (``static_output``), and part of the
widget's own mime bundle where something renders that bundle without IPython's display.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from typing import Any

DPI = 80  # small enough to keep saved notebooks light, large enough to read the labels
# Pictures are drawn by the main thread, the job thread and debounce timers: one at a time.
_DRAWING = threading.Lock()


def summary_line(
    model: str, n_pairs: int, results: Sequence[Any], metric: str, normalized: bool
) -> str:
    """E.g. ``PatchingWidget: pw.demo_model(), 32 prompt pairs; resid_pre denoising logit_diff
    (normalised): strongest L1 pos 10: Kate/Henry = 1.01``."""
    from ..cli.report import strongest

    head = f"PatchingWidget: {model}, {n_pairs} prompt pair{'s' if n_pairs != 1 else ''}"
    if not results:
        return f"{head}; no sweep yet (the map is drawn by a live kernel)"
    res = results[0]
    scale = " (normalised)" if normalized else ""
    directions = " + ".join(r.direction for r in results)
    line = f"{head}; {res.site} {directions} {metric}{scale}"
    top = strongest(res, metric, normalized, 1)
    if top:
        line += f": strongest {top[0]['component']} = {top[0]['value']:.3g}"
    return line + ("" if all(r.complete for r in results) else " (incomplete)")


def map_png(results: Sequence[Any], metric: str, normalized: bool) -> bytes:
    """The current map(s) side by side, drawn off-screen by the package's figure builder."""
    from ..plotting import draw_panels, result_panel

    panels = [result_panel(r, metric, normalized, f"{r.site}, {r.direction}") for r in results]
    buffer = io.BytesIO()
    draw_panels(panels, metric, normalized).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


class StaticView:
    """The PNG and summary of the latest map, redrawn only when the map or its reading changes."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] = ()
        self._png = ""
        self._results: list[Any] = []  # held so that the ids in the key stay unique

    def bundle(
        self, model: str, n_pairs: int, results: Sequence[Any], metric: str, norm: bool
    ) -> dict[str, str]:
        """``{"text/plain": ..., "image/png": base64}`` (no image before the first sweep)."""
        data = {"text/plain": summary_line(model, n_pairs, results, metric, norm)}
        if not results:
            return data
        key = (*(id(r) for r in results), metric, norm)
        with _DRAWING:
            if key != self._key or not self._png:
                self._png = base64.b64encode(map_png(results, metric, norm)).decode("ascii")
                self._key, self._results = key, list(results)
            data["image/png"] = self._png
        return data
