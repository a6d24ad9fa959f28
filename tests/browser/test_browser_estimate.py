"""End to end: the widget's fast-estimate mode in JupyterLab, with a real kernel and model."""

from __future__ import annotations

import json

import pytest

from .test_browser_widget import open_widget, screenshot, shown_metric, sweeps
from .widget_page import assert_values_match

pytestmark = pytest.mark.browser


def test_fast_estimate_turns_exact_and_its_scatter_drills_down(open_notebook, artifacts):
    nb, widget = open_widget(open_notebook)
    n_sweeps = len(sweeps(nb.probe(1)))
    widget.select("pw-site", "head")
    widget.hook("pw-fast-estimate").set_checked(True)
    widget.hook("pw-run").click()
    state = nb.probe_until(
        1, lambda s: len(sweeps(s)) > n_sweeps and sweeps(s)[-1]["status"] != "running"
    )
    run = sweeps(state)[-1]
    assert run["site"] == "head" and run["method"] == "attribution" and run["status"] == "done"
    shown = widget.wait_settled()
    # every cell ended exact: the heatmap shows the kernel's exact values, none hatched
    assert_values_match(shown, state["result"]["values"][shown_metric(widget)])
    flags = json.loads(widget.heatmap().get_attribute("data-exact") or "[]")
    assert flags == [1] * 12, flags
    assert "12 of 12 cells exact" in widget.hook("pw-estimate-status").inner_text()
    scatter = widget.hook("pw-scatter")
    assert scatter.get_attribute("data-points") == "12"
    marked = widget.hook("pw-disagreement")
    assert marked.count() == 3  # the worst few: a quarter of a 12-cell map
    screenshot(widget, artifacts / "fast-estimate.png")

    marked.first.click()  # drills into that head's q/k/v/pattern, like a heatmap click
    state = nb.probe_until(1, lambda s: len(sweeps(s)) > n_sweeps + 1)
    drill = sweeps(state)[-1]
    assert drill["site"] == "head_parts", drill
