"""The widget's output for viewers without a widget front end: a PNG of the current map and a
one-line summary in its mime bundle, redrawn after each sweep and on a new reading."""

from __future__ import annotations

import base64
import functools
from typing import Any

import comm
import numpy as np
import pytest
from comm.base_comm import BaseComm

from patchwidget.demo import demo_model, demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.widget import PatchingWidget
from patchwidget.widget.snapshot import map_png

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class SilentComm(BaseComm):
    def publish_msg(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def silent_comm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: SilentComm(*a, **k))


@functools.cache
def _model() -> Any:
    return demo_model()


def sweep(w: PatchingWidget, request_id: int, site: str) -> None:
    """The request the front end sends for a sweep; waits for it to finish."""
    w._handle_custom_msg(
        {"type": "sweep", "id": request_id, "site": site, "direction": "denoising"}, []
    )
    assert w.wait(120)
    assert w.result is not None and w.result.site == site


def bundle(w: PatchingWidget) -> dict[str, Any]:
    out = w._repr_mimebundle_()
    assert out is not None
    data, _metadata = out
    return data


def png(data: dict[str, Any]) -> bytes:
    raw = base64.b64decode(data["image/png"])
    assert raw.startswith(PNG_MAGIC)
    return raw


def strongest_label(result: Any, metric: str) -> tuple[str, float]:
    """Independently: the cell furthest from the corrupted run (0, normalised, denoising)."""
    values = np.asarray(result.values(metric, normalized=True))
    index = np.unravel_index(np.nanargmax(np.abs(values)), values.shape)
    parts = [result.labels[a][i] for a, i in zip(result.axes, index, strict=True)]
    parts = [f"pos {p}" if a == "pos" else p for a, p in zip(result.axes, parts, strict=True)]
    return " ".join(parts), float(values[index])


def test_static_view_follows_each_sweep_and_the_reading() -> None:
    w = PatchingWidget(Experiment(_model(), **demo_prompts("flip_s2", n=4)), model_expr="demo()")

    before = bundle(w)
    assert before[WIDGET_VIEW]["model_id"] == w.model_id
    assert "image/png" not in before
    assert before["text/plain"] == (
        "PatchingWidget: demo(), 4 prompt pairs; no sweep yet (the map is drawn by a live kernel)"
    )

    sweep(w, 1, "resid_pre")
    first = bundle(w)
    label, value = strongest_label(w.result, "logit_diff")
    assert first["text/plain"] == (
        "PatchingWidget: demo(), 4 prompt pairs; resid_pre denoising logit_diff (normalised): "
        f"strongest {label} = {value:.3g}"
    )
    assert png(first) == map_png([w.result], "logit_diff", True)

    w.metric, w.normalized = "prob", False  # a new reading of the same map: redrawn
    reread = bundle(w)
    assert "resid_pre denoising prob: strongest" in reread["text/plain"]
    assert png(reread) == map_png([w.result], "prob", False) != png(first)

    sweep(w, 2, "head")
    second = bundle(w)
    assert second[WIDGET_VIEW]["model_id"] == w.model_id
    assert "; head denoising prob: strongest L" in second["text/plain"]
    assert png(second) == map_png([w.result], "prob", False) != png(reread)


def test_the_demo_model_is_named_as_it_is_loaded() -> None:
    """`exp.widget()` on the bundled model says `pw.demo_model()` (summary, Copy code): no path."""
    w = Experiment(_model(), **demo_prompts("flip_s2", n=2)).widget()
    assert w.model_expr == "pw.demo_model()"
    assert bundle(w)["text/plain"].startswith("PatchingWidget: pw.demo_model(), 2 prompt pairs; ")
