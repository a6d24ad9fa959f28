"""End to end: the PatchingWidget in JupyterLab and Notebook 7, with a real kernel and model.

The heatmap's data-values are checked against the kernel's `w.result.values(...)`, and
`w.history` tells which requests the kernel ran. Screenshots go to test-artifacts/; the README's
picture, docs/screenshot.png, is refreshed only on purpose (see CONTRIBUTING.md):
``PW_UPDATE_SCREENSHOT=1 pytest tests/browser -k "heatmap_matches_kernel and lab"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .browser_env import REPO, artifact_name
from .widget_page import WidgetPage, all_finite, assert_values_match

pytestmark = pytest.mark.browser

SCREENSHOT = REPO / "docs" / "screenshot.png"
DEMO = """\
import kernel_probe
import patchwidget as pw

w = pw.PatchingWidget.demo()
w"""
# batch_size=1: one forward pass per patch, so a neuron sweep runs long enough to cancel
SLOW_DEMO = """\
import kernel_probe
import patchwidget as pw
from patchwidget.demo import demo_model, demo_prompts

exp = pw.Experiment(demo_model(), batch_size=1, **demo_prompts("flip_s2"))
w = pw.PatchingWidget(exp)
w"""
# The same widget on the demo model through nnsight's local simulation of remote execution.
REMOTE_DEMO = """\
import kernel_probe
import patchwidget as pw
from patchwidget.demo import demo_model, demo_prompts

model = pw.load_model(demo_model(), remote="local")
w = pw.PatchingWidget(pw.Experiment(model, **demo_prompts("flip_s2", n=8)))
w"""
PROBE = "w.wait(120)\nkernel_probe.widget_state(w)"


def open_widget(open_notebook, ui: str = "lab", setup: str = DEMO):
    nb = open_notebook([setup, PROBE], ui=ui)
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    return nb, widget


def shown_metric(widget: WidgetPage) -> str:
    """The values key in kernel_probe.result_state for the metric the widget shows."""
    metric = widget.hook("pw-metric").input_value()
    return metric + ("_norm" if widget.hook("pw-normalized").is_checked() else "")


def sweeps(state: dict) -> list[dict]:
    return [h for h in state["history"] if h["kind"] == "sweep"]


def screenshot(widget: WidgetPage, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    widget.root.screenshot(path=str(path), animations="disabled")


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_heatmap_matches_kernel(open_notebook, artifacts, request, ui):
    nb, widget = open_widget(open_notebook, ui)
    shown = widget.heatmap_values()
    state = nb.probe(1)
    result = state["result"]
    assert result is not None and result["complete"]
    assert result["site"] == "resid_pre" and result["axes"] == ["layer", "pos"], result["axes"]
    n_layers, n_pos = len(result["coords"]["layer"]), len(result["coords"]["pos"])
    assert (len(shown), len(shown[0])) == (n_layers, n_pos)  # data-rows x data-cols
    assert_values_match(shown, result["values"][shown_metric(widget)])
    assert [h["status"] for h in sweeps(state)] == ["done"]

    screenshot(widget, artifacts / f"{artifact_name(request.node.name)}.png")
    if ui == "lab" and os.environ.get("PW_UPDATE_SCREENSHOT") == "1":
        screenshot(widget, SCREENSHOT)


def test_a_remote_model_says_where_it_runs_and_shows_the_kernels_values(open_notebook):
    nb, widget = open_widget(open_notebook, setup=REMOTE_DEMO)
    shown = widget.heatmap_values()
    state = nb.probe(1)
    assert state["result"]["complete"]
    assert_values_match(shown, state["result"]["values"][shown_metric(widget)])
    line = widget.hook("pw-model").inner_text()
    assert "runs on nnsight's local simulation of NDIF" in line, line
    assert re.search(r"last request \d+\.\d\d s on the server \(\d+ so far\)", line), line


def test_metric_and_direction_switches(open_notebook):
    nb, widget = open_widget(open_notebook)
    before = nb.probe(1)
    n_history = len(before["history"])
    values = before["result"]["values"]

    for metric in ("prob", "kl", "logprob", "logit_diff"):
        for normalized in (False, True):
            widget.select("pw-metric", metric)
            widget.hook("pw-normalized").set_checked(normalized)
            key = metric + ("_norm" if normalized else "")
            widget.wait_for(
                lambda key=key: _matches(widget.heatmap_values(), values[key]),
                10,
                f"the heatmap to show {key}",
            )
    assert len(nb.probe(1)["history"]) == n_history, "a metric switch made the kernel run"

    shown_denoising = widget.heatmap_values()
    widget.select("pw-direction", "noising")
    widget.wait_for(
        lambda: (
            widget.status == "idle"
            and all_finite(widget.heatmap_values())
            and widget.heatmap_values() != shown_denoising
        ),
        what="the noising heatmap",
    )
    after = nb.probe(1)
    assert after["result"]["direction"] == "noising"
    assert_values_match(widget.heatmap_values(), after["result"]["values"][shown_metric(widget)])


def test_click_drills_down_to_heads_by_position(open_notebook):
    nb, widget = open_widget(open_notebook)
    top = nb.probe(1)["result"]
    assert top["axes"] == ["layer", "pos"], top["axes"]
    row, col = 1, len(top["coords"]["pos"]) - 1
    layer, pos = top["coords"]["layer"][row], top["coords"]["pos"][col]

    widget.click_cell(row, col)  # a residual cell opens its writers, and offers its readers
    state = nb.probe_until(1, lambda s: sweeps(s)[-1]["site"] == "writers", timeout=60)
    n_sweeps = len(sweeps(state))
    readers = widget.hook("pw-drill-option")
    readers.wait_for()
    assert "readers" in readers.inner_text()
    readers.click()
    state = nb.probe_until(1, lambda s: len(sweeps(s)) > n_sweeps, timeout=60)
    drill = sweeps(state)[-1]
    assert drill["site"] == "head_by_pos" and drill["layers"] == [layer], drill
    assert drill["positions"] == [pos], drill
    assert drill["status"] == "done", drill
    shown = widget.wait_settled()
    result = state["result"]
    assert result["site"] == "head_by_pos" and result["coords"]["layer"] == [layer]
    assert_values_match(shown, result["values"][shown_metric(widget)])
    assert widget.hook("pw-crumb").count() >= 2


def test_cancel_keeps_partial_results(open_notebook):
    nb, widget = open_widget(open_notebook, setup=SLOW_DEMO)
    n_sweeps = len(sweeps(nb.probe(1)))
    widget.select("pw-site", "neuron")
    # One row per pass may make this a long sweep (the estimate depends on the machine's speed):
    # then the widget asks before running it.
    run_anyway = widget.hook("pw-run-anyway")
    progress = widget.hook("pw-progress")

    def started() -> bool:
        if run_anyway.is_visible():
            run_anyway.click()
        return int(progress.get_attribute("data-done") or 0) > 0

    widget.wait_for(started, 60, "progress")
    widget.hook("pw-cancel").click()
    widget.wait_for(lambda: widget.status == "idle", 60, "the cancelled run to stop")

    state = nb.probe_until(1, lambda s: sweeps(s)[-1]["status"] != "running")
    run = sweeps(state)[-1]
    assert len(sweeps(state)) > n_sweeps and run["site"] == "neuron"
    assert run["status"] == "cancelled", run
    result = state["result"]
    assert result["site"] == "neuron" and not result["complete"]
    shown = [v for row in widget.heatmap_values() for v in row]
    assert any(v is not None for v in shown), "partial data was dropped"
    assert any(v is None for v in shown), "the cancelled run shows a complete heatmap"
    assert_values_match(widget.heatmap_values(), result["values"][shown_metric(widget)])


def test_shift_click_builds_and_patches_a_circuit(open_notebook, artifacts):
    nb, widget = open_widget(open_notebook)
    shown = widget.heatmap_values()
    cells = sorted(
        ((r, c) for r, row in enumerate(shown) for c in range(len(row))),
        key=lambda rc: -abs(shown[rc[0]][rc[1]]),
    )
    for r, c in cells[:2]:  # the two strongest cells: a circuit worth showing
        widget.click_cell(r, c, shift=True)
    circuit = widget.hook("pw-circuit-list")
    widget.wait_for(lambda: circuit.locator("li, [data-component]").count() == 2, 10, "2 items")

    widget.hook("pw-patch-circuit").click()
    state = nb.probe_until(1, lambda s: any(h["kind"] == "circuit" for h in s["history"]))
    run = [h for h in state["history"] if h["kind"] == "circuit"][-1]
    assert run["status"] == "done", run
    result = widget.hook("pw-circuit-result")
    result.wait_for()
    assert result.inner_text().strip()
    screenshot(widget, artifacts / "circuit.png")


def _matches(shown, kernel_values) -> bool:
    try:
        assert_values_match(shown, kernel_values)
    except AssertionError:
        return False
    return True
