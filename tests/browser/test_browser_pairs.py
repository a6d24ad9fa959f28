"""End to end: the pair selector, the tooltip's mean ± standard error and the dimming, on a
mixed-length dataset with named positions; numbers checked against the kernel's PatchResult."""

from __future__ import annotations

import re

import pytest

from .widget_page import WidgetPage, assert_values_match

pytestmark = pytest.mark.browser

PAIR = 3
SETUP = """\
import numpy as np
import kernel_probe
import patchwidget as pw
from patchwidget.plotting import includes_zero

exp = pw.Experiment.from_dataset(pw.demo_model(), pw.demo_dataset(n=12))
w = pw.PatchingWidget(exp)
w"""
PROBE = f"""\
w.wait(120)
r = w.result
kernel_probe.show({{
    "history": len(w.history),
    "mean": np.asarray(r.values("logit_diff", normalized=True)),
    "stderr": np.asarray(r.stderr("logit_diff", normalized=True)),
    "pair": np.asarray(r.values("logit_diff", normalized=True, per_pair=True))[..., {PAIR}],
    "dimmed": np.flatnonzero(includes_zero(r, "logit_diff", True)),
    "tokens": exp.clean_tokens[{PAIR}],
    "named": {{k: v[{PAIR}] for k, v in exp.named_positions.items()}},
}})"""


def test_pair_selector_tooltip_and_dimming(open_notebook):
    nb = open_notebook([SETUP, PROBE])
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    state = nb.probe(1)
    assert widget.hook("pw-metric").input_value() == "logit_diff"
    assert widget.hook("pw-normalized").is_checked()
    assert_values_match(widget.heatmap_values(), state["mean"])

    # tooltip: mean ± standard error and the number of pairs, for the hovered cell
    row, col = 1, 2  # layer 1, S2
    x, y = widget.cell_center(row, col)
    widget.heatmap().get_by_test_id("pw-heatmap-canvas").hover(position={"x": x, "y": y})
    tooltip = widget.hook("pw-tooltip")
    widget.wait_for(lambda: tooltip.is_visible(), 10, "the tooltip")
    text = tooltip.inner_text()
    assert "at position S2" in text and "(mean of 12 pairs, ± standard error)" in text, text
    normalised = re.search(r"normalised (\S+) ± (\S+)", text)
    assert normalised, text
    mean, se = float(normalised[1]), float(normalised[2])
    assert mean == pytest.approx(state["mean"][row][col], rel=1e-4, abs=1e-6)
    assert se == pytest.approx(state["stderr"][row][col], rel=1e-2)

    # dimming: the cells whose mean ± 1.96 s.e. includes 0, as the kernel computes them
    widget.hook("pw-dim").check()
    heatmap = widget.heatmap()
    widget.wait_for(
        lambda: heatmap.get_attribute("data-dimmed") == str(state["dimmed"]).replace(" ", ""),
        10,
        f"dimmed cells {state['dimmed']}",
    )
    assert 0 < len(state["dimmed"]) < len(state["mean"]) * len(state["mean"][0])

    # one pair: its map (normalised by its own baselines) and its tokens with named positions
    widget.select("pw-show", str(PAIR))
    widget.wait_for(lambda: heatmap.get_attribute("data-pair") == str(PAIR), 10, "pair view")
    assert_values_match(widget.heatmap_values(), state["pair"])
    assert heatmap.get_attribute("data-dimmed") == "[]"
    clean = widget.hook("pw-tokens-clean")
    shown = [t.replace("␣", " ") for t in clean.locator(".pw-token").all_inner_texts()]
    assert shown == state["tokens"]
    named = clean.locator(".pw-named")
    got = {
        named.nth(i).get_attribute("data-name"): int(named.nth(i).get_attribute("data-pos"))
        for i in range(named.count())
    }
    assert got == state["named"]

    widget.select("pw-show", "mean")
    widget.wait_for(lambda: heatmap.get_attribute("data-pair") == "mean", 10, "the mean view")
    assert_values_match(widget.heatmap_values(), state["mean"])
    assert nb.probe(1)["history"] == state["history"], "choosing a pair made the kernel run"
