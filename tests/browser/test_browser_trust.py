"""End to end, views a user can trust: a grouped-query circuit patches the key/value head that was
clicked; the fixed colour scale, the legends of both directions, the writers of a residual cell
and unknown words, as a user sees them (screenshots in test-artifacts/)."""

from __future__ import annotations

import math

import pytest

from .test_browser_widget import screenshot, sweeps
from .widget_page import WidgetPage, assert_values_match

pytestmark = pytest.mark.browser

# A tiny random Llama with grouped-query attention (4 query heads, 2 key/value heads), built in
# the kernel with a word-level tokenizer: no download.
GQA = """\
import kernel_probe
import torch, transformers
import patchwidget as pw
from tokenizers import Tokenizer, models, pre_tokenizers, processors

vocab = {"<bos>": 0, "<unk>": 1, "<pad>": 2, **{f"w{i}": i + 3 for i in range(97)}}
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.post_processor = processors.TemplateProcessing(
    single="<bos> $A", special_tokens=[("<bos>", 0)]
)
tokenizer = transformers.PreTrainedTokenizerFast(
    tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>", pad_token="<pad>"
)
torch.manual_seed(0)
config = transformers.LlamaConfig(
    vocab_size=100, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    initializer_range=0.4, bos_token_id=0, eos_token_id=0, pad_token_id=2,
)
hf = transformers.LlamaForCausalLM(config).eval()
exp = pw.Experiment(
    pw.load_model(hf, tokenizer=tokenizer),
    clean=["w5 w17 w3 w40 w8 w22 w61 w9 w14", "w11 w2 w33 w40 w7 w50 w61 w19 w14"],
    corrupted=["w5 w17 w3 w41 w8 w22 w62 w9 w14", "w11 w2 w34 w40 w7 w50 w63 w19 w14"],
    answers=[(" w7", " w9"), (" w12", " w30")],
)
w = pw.PatchingWidget(exp)
w.site = "head_k"
w"""
GQA_PROBE = """\
import numpy as np
w.wait(120)
checks = getattr(w, "circuit_checks", None)
kernel_probe.show({
    "history": w.history,
    "site": w.result.site if w.result is not None else None,
    "axes": w.result_meta.get("axes"),
    "values": np.asarray(w.result.values("logit_diff", normalized=True)),
    "components": w.circuit_meta.get("components"),
    "circuit": None if checks is None else checks.recovery()["denoising/circuit"],
})"""

# The demo with an unknown word ("wandered") in the first pair.
DEMO_UNKNOWN = """\
import kernel_probe
import patchwidget as pw
from patchwidget.demo import demo_prompts

prompts = demo_prompts("flip_s2", n=3)
for key in ("clean", "corrupted"):
    prompts[key][0] = prompts[key][0].replace(" went ", " wandered ")
w = pw.PatchingWidget(pw.Experiment(pw.demo_model(), **prompts), model_expr="pw.demo_model()")
w"""
VIEW_PROBE = """\
from patchwidget.widget.exports import view_panels
w.wait(120)
view = w._views.get(w.result_meta.get("id"))
kernel_probe.show({
    "history": w.history,
    "request": w.result_meta.get("request"),
    "grids": [p.values for p in view_panels(view, "logit_diff", True, False)] if view else [],
    "unknown": w.prompts["unknown"],
})"""


def _open(open_notebook, setup: str, probe: str, ui: str = "lab"):
    nb = open_notebook([setup, probe], ui=ui)
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    return nb, widget


def test_grouped_query_circuit_patches_the_clicked_key_value_head(open_notebook, artifacts):
    nb, widget = _open(open_notebook, GQA, GQA_PROBE)
    state = nb.probe(1)
    assert state["site"] == "head_k" and state["axes"] == ["layer", "kv_head"], state
    shown = widget.heatmap_values()
    assert (len(shown), len(shown[0])) == (2, 2)  # 2 layers x 2 key/value heads
    assert_values_match(shown, state["values"])

    widget.click_cell(0, 1, shift=True)  # L0 KV1
    chips = widget.hook("pw-circuit-list").locator("li")
    widget.wait_for(lambda: chips.count() == 1, 10, "one circuit chip")
    assert "KV1" in chips.first.inner_text()
    widget.hook("pw-patch-circuit").click()
    state = nb.probe_until(1, lambda s: s["circuit"] is not None, timeout=60)
    assert state["components"] == [{"site": "head_k", "layer": 0, "kv_head": 1}]
    # the circuit of one cell is that cell: the same number the map shows for L0 KV1
    assert math.isclose(state["circuit"], state["values"][0][1], rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(state["circuit"], state["values"][0][0], rel_tol=1e-3)
    screenshot(widget, artifacts / "trust-gqa-circuit.png")


def test_site_set_from_python_updates_the_open_view(open_notebook):
    nb = open_notebook([GQA, GQA_PROBE, 'w.site = "head_v"'])
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    nb.run_cell(2)
    state = nb.probe_until(1, lambda s: s["site"] == "head_v", timeout=60)
    assert [h["site"] for h in sweeps(state)] == ["head_k", "head_v"]
    widget.wait_for(lambda: widget.hook("pw-site").input_value() == "head_v", 10, "head_v")
    widget.wait_for(
        lambda: widget.status == "idle" and _close(widget.heatmap_values(), state["values"]),
        30,
        "the head_v map",
    )


def test_fixed_scale_legends_writers_and_unknown_words(open_notebook, artifacts):
    nb, widget = _open(open_notebook, DEMO_UNKNOWN, VIEW_PROBE)
    # fixed scale: ±1 = the whole gap, the largest effect in words
    assert widget.hook("pw-colorbar").get_attribute("data-max") == "1"
    effect = widget.hook("pw-largest-effect").first.inner_text()
    assert effect.startswith("largest effect:") and "of the gap" in effect, effect
    screenshot(widget, artifacts / "trust-fixed-scale.png")

    # unknown words: highlighted chips and a note, from the kernel's flags
    state = nb.probe(1)
    flagged = [i for i, u in enumerate(state["unknown"]["clean"][0]) if u]
    assert flagged, state["unknown"]
    chips = widget.hook("pw-tokens-clean").locator("[data-unknown]")
    assert [int(c.get_attribute("data-pos")) for c in chips.all()] == flagged
    assert widget.hook("pw-unknown-note").is_visible()
    widget.root.locator(".pw-prompts").screenshot(path=str(artifacts / "trust-unknown-word.png"))

    # both directions: a legend per panel; noising as the drop from clean reads like denoising
    widget.select("pw-direction", "both")
    widget.wait_for(
        lambda: widget.status == "idle" and widget.hook("pw-heatmap").count() == 2, 60, "2 maps"
    )
    legends = widget.hook("pw-matters")
    assert legends.nth(0).inner_text().startswith("matters = red")
    assert legends.nth(1).inner_text().startswith("matters = pale or blue")
    screenshot(widget, artifacts / "trust-legends.png")
    widget.hook("pw-drop").set_checked(True)
    widget.wait_for(lambda: legends.nth(1).inner_text().startswith("matters = red"), 10, "drop")
    screenshot(widget, artifacts / "trust-legends-drop.png")

    # a residual cell opens its writers: earlier heads and MLPs at its position
    widget.select("pw-direction", "denoising")
    widget.wait_settled()
    n_pos = len(widget.heatmap_values()[0])
    widget.click_cell(2, n_pos - 1)
    widget.wait_for(
        lambda: widget.status == "idle" and widget.heatmap().get_attribute("data-cols") == "5",
        60,
        "the writers map",
    )
    # keyboard focus follows the drill-down (checked before a probe cell takes it)
    assert widget.page.evaluate("document.activeElement?.dataset.testid") == "pw-heatmap-canvas"
    state = nb.probe_until(
        1, lambda s: sweeps(s)[-1]["site"] == "writers" and sweeps(s)[-1]["status"] == "done", 60
    )
    assert state["request"]["kind"] == "writers" and state["request"]["layers"] == [2]
    assert state["request"]["positions"] == [n_pos - 1]
    shown = widget.wait_settled()
    assert (len(shown), len(shown[0])) == (2, 5)  # layers 0-1 x (4 heads + MLP)
    assert_values_match(shown, state["grids"][0])
    assert "readers" in widget.hook("pw-drill-option").inner_text()
    screenshot(widget, artifacts / "trust-writers.png")


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_toolbar_at_1024_px_keeps_button_labels_on_one_line(open_notebook, artifacts, ui):
    nb = open_notebook([DEMO_UNKNOWN, VIEW_PROBE], ui=ui)
    nb.page.set_viewport_size({"width": 1024, "height": 900})
    nb.run_cell(0)
    widget = WidgetPage(nb.page)
    widget.wait_settled()
    heights = {
        testid: widget.hook(testid).bounding_box()["height"]
        for testid in ("pw-run", "pw-copy-code", "pw-save-figure", "pw-export-csv")
    }
    assert max(heights.values()) < 1.5 * min(heights.values()), heights
    widget.root.locator(".pw-controls").screenshot(
        path=str(artifacts / f"trust-toolbar-1024-{ui}.png")
    )


def _close(shown, kernel) -> bool:
    try:
        assert_values_match(shown, kernel)
    except AssertionError:
        return False
    return True
