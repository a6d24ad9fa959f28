"""Displayed through IPython, the widget makes two outputs: its live view, and the picture of its
map with a summary under a display id, replaced when the map on screen changes (a sweep finished,
another metric or scale): once per change, never while a sweep streams, never in a terminal."""

from __future__ import annotations

import base64
import functools
import re
import time
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from patchwidget.demo import demo_model, demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.widget import PatchingWidget
from patchwidget.widget.snapshot import map_png
from patchwidget.widget.static_output import DEBOUNCE_S

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
IMG = re.compile(r'<img src="data:image/png;base64,([^"]+)"')


class SilentComm(BaseComm):
    def publish_msg(self, *args: Any, **kwargs: Any) -> None:
        pass


class KeptOutputs(DisplayPublisher):
    """Records each display as a kernel would send it (outputs kept, so replaceable)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def publish(self, data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> None:
        transient = kwargs.get("transient") or {}
        self.sent.append(
            {"data": data, "id": transient.get("display_id"), "update": kwargs.get("update")}
        )


@pytest.fixture(autouse=True)
def silent_comm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: SilentComm(*a, **k))


@pytest.fixture
def shell() -> Any:
    shell = InteractiveShell.instance()
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()


@functools.cache
def _model() -> Any:
    return demo_model()


def widget() -> PatchingWidget:
    return PatchingWidget(Experiment(_model(), **demo_prompts("flip_s2", n=4)), model_expr="demo()")


def sweep(w: PatchingWidget, request_id: int, site: str) -> None:
    w._handle_custom_msg(
        {"type": "sweep", "id": request_id, "site": site, "direction": "denoising"}, []
    )
    assert w.wait(120)


def picture(data: dict[str, str]) -> bytes | None:
    found = IMG.findall(data["text/html"])
    assert len(found) <= 1, "more than one picture in the output"
    return base64.b64decode(found[0]) if found else None


def test_two_outputs_and_the_picture_follows_the_map(shell: Any) -> None:
    shell.display_pub = pub = KeptOutputs()
    w = widget()
    w._ipython_display_()
    view, static = pub.sent
    assert set(view["data"]) == {WIDGET_VIEW} and view["id"] is None  # no second picture
    assert view["data"][WIDGET_VIEW]["model_id"] == w.model_id
    assert static["id"] and not static["update"]
    assert set(static["data"]) == {"text/html", "text/plain"}
    assert static["data"]["text/plain"].endswith("no sweep yet (the map is drawn by a live kernel)")
    assert 'class="pw-static-map"' in static["data"]["text/html"]
    assert picture(static["data"]) is None

    # Progress streams to the view; the picture is replaced once, at the end.
    sweep(w, 1, "resid_pre")
    (update,) = pub.sent[2:]
    assert update["id"] == static["id"] and update["update"]
    summary = update["data"]["text/plain"]
    assert "; resid_pre denoising logit_diff (normalised): strongest" in summary
    assert summary == w._repr_mimebundle_()[0]["text/plain"]  # type: ignore[index]
    assert picture(update["data"]) == map_png([w.result], "logit_diff", True)

    # Changes made in a cell: one redraw when the cell ends (post_execute), before its reply.
    w.metric, w.normalized = "prob", False
    assert len(pub.sent) == 3
    shell.events.trigger("post_execute")
    (reread,) = pub.sent[3:]
    assert reread["id"] == static["id"] and reread["update"]
    assert "; resid_pre denoising prob: strongest" in reread["data"]["text/plain"]
    assert picture(reread["data"]) == map_png([w.result], "prob", False)
    shell.events.trigger("post_execute")  # nothing changed: nothing sent
    time.sleep(DEBOUNCE_S * 2)
    assert len(pub.sent) == 4

    # Changes from the front end (no cell runs): drawn once after a quiet DEBOUNCE_S.
    w.metric = "logit_diff"
    w.normalized = True
    time.sleep(DEBOUNCE_S * 3)
    (back,) = pub.sent[4:]
    assert picture(back["data"]) == map_png([w.result], "logit_diff", True)

    sweep(w, 2, "head")
    (head,) = pub.sent[5:]
    assert "; head denoising logit_diff (normalised): strongest L" in head["data"]["text/plain"]
    assert picture(head["data"]) == map_png([w.result], "logit_diff", True)

    # Back along the drill-down path: the front end shows the kept first map (result_id).
    first = w.results
    w.set_state({"result_id": 1})
    assert w.results[0] is not first[0] and w.result.site == "resid_pre"
    shell.events.trigger("post_execute")
    (again,) = pub.sent[6:]
    assert "; resid_pre denoising logit_diff (normalised)" in again["data"]["text/plain"]
    assert picture(again["data"]) == map_png([w.result], "logit_diff", True)

    w.close()  # a closed widget's output keeps its last picture
    w.metric = "prob"
    shell.events.trigger("post_execute")
    assert len(pub.sent) == 7


def test_a_terminal_prints_the_summary_once(shell: Any) -> None:
    """Terminal IPython prints every display, replacements too: there, none is made."""
    published: list[tuple[Any, Any]] = []
    shell.display_pub = DisplayPublisher()  # terminal IPython's
    record = lambda data, *a, **k: published.append((data, k))  # noqa: E731
    shell.display_pub.publish = record  # type: ignore[method-assign]
    w = widget()
    w._ipython_display_()
    sweep(w, 1, "resid_pre")
    w.metric = "prob"
    shell.events.trigger("post_execute")
    time.sleep(DEBOUNCE_S * 2)
    assert [d.get("text/plain") for d, _ in published] == [
        None,
        "PatchingWidget: demo(), 4 prompt pairs; no sweep yet (the map is drawn by a live kernel)",
    ]
    assert all(not k.get("transient") and not k.get("update") for _, k in published)


def test_an_executed_notebook_keeps_the_map_last_shown() -> None:
    """nbclient (`jupyter nbconvert --execute`) applies the replacements to the saved output."""
    import nbformat
    from nbclient import NotebookClient

    sources = [
        "import patchwidget as pw\n\nw = pw.PatchingWidget.demo(n=4)\nw",
        # what the front end would send; the map changes in a later cell
        'w._handle_custom_msg({"type": "sweep", "id": 1, "site": "resid_pre",\n'
        '                      "direction": "denoising"}, [])\nassert w.wait(120)',
        'w.metric = "prob"',
        "print(w._static_data()['text/plain'])",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, kernel_name="python3", timeout=180).execute()
    outputs = nb.cells[0].outputs
    assert [set(o["data"]) for o in outputs] == [{WIDGET_VIEW}, {"text/html", "text/plain"}]
    kernel_summary = nb.cells[3].outputs[0]["text"].strip()
    assert "; resid_pre denoising prob (normalised): strongest" in kernel_summary
    assert outputs[1]["data"]["text/plain"] == kernel_summary
    assert picture(outputs[1]["data"]) is not None
