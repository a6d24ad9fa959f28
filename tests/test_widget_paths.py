"""The widget's path patching and attention requests, kernel side (see js/PROTOCOL.md)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_widget_protocol import decode, final, make_widget, recording_comm, replies, send

import patchwidget as pw

__all__ = ["recording_comm"]  # the autouse fixture, imported so it applies here too

MLP1_AT_14 = {"site": "mlp_in", "layer": 1, "pos": 14}


def test_sweep_with_receivers_matches_the_engine() -> None:
    w = make_widget()
    view = {"type": "sweep", "id": 1, "site": "head", "direction": "both"}
    send(w, {**view, "receivers": [MLP1_AT_14, "logits"], "label": "→ MLP L1"})
    reply = final(w, 1)
    assert reply["type"] == "result" and reply["status"] == "done"
    meta = reply["meta"]
    assert meta["request"]["receivers"] == [MLP1_AT_14, "logits"]
    panels = decode(meta, replies(w, 1, "result")[0][1][0])
    receivers = [pw.Component("mlp_in", 1, pos=14), "logits"]
    for direction in ("denoising", "noising"):
        want = w.experiment.sweep("head", direction, receivers=receivers, progress=False)
        np.testing.assert_allclose(panels[direction]["readouts"], want.readouts, atol=1e-6)
        assert want.metadata["receivers"] == ["mlp_in L1 @14", "logits"]


def test_key_receivers_name_query_heads() -> None:
    """The front end names query heads; k/v receivers map to their key/value head."""
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "denoising",
             "receivers": [{"site": "head_k", "layer": 2, "head": 3, "pos": 14}]})  # fmt: skip
    assert final(w, 1)["type"] == "result"
    assert w.result.metadata["receivers"] == ["head_k L2 H3 @14"]  # no grouping in the demo


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"receivers": [{"site": "resid_pre", "layer": 1}]}, "receivers", 'must be "logits"'),
        ({"receivers": [{"site": "head_q", "layer": 1}]}, "receivers[0]", "needs a head"),
        ({"receivers": [{"site": "mlp_in", "layer": 9}]}, "receivers[0].layer", "integer in"),
        ({"receivers": "logits"}, "receivers", "must be a list"),
        ({"site": "neuron", "receivers": ["logits"]}, "site", "sends from head"),
    ],
)
def test_bad_receivers_get_an_error_naming_the_field(extra: dict, field: str, words: str) -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "denoising", **extra})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == field and words in reply["message"]


def test_attention_reply_holds_both_patterns() -> None:
    w = make_widget()
    send(w, {"type": "attention", "id": 1, "layer": 1, "head": 3})
    assert w.wait(60)
    ((content, buffers),) = replies(w, 1, "attention")
    meta = content["meta"]
    assert (meta["layer"], meta["head"], meta["n_pairs"], meta["length"]) == (1, 3, 4, 15)
    data = np.frombuffer(bytes(buffers[0]), dtype="<f4").reshape(2, 4, 15, 15)
    att = w.experiment.attention(1, 3)
    np.testing.assert_array_equal(data[0], att.clean.data)
    np.testing.assert_array_equal(data[1], att.corrupted.data)
    assert meta["clean_tokens"][0] == w.experiment.clean_tokens[0]
    send(w, {"type": "attention", "id": 2, "layer": 1, "head": 4})
    reply = final(w, 2)
    assert reply["type"] == "error" and reply["field"] == "head"


def test_circuit_of_path_steps_patches_those_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_widget()
    step = {"site": "head", "layer": 1, "head": 3, "receiver": MLP1_AT_14}
    node = {"site": "mlp_out", "layer": 1, "pos": 14}
    send(w, {"type": "circuit", "id": 1, "components": [step, node]})
    reply = final(w, 1)
    assert reply["type"] == "circuit_result", reply
    meta = reply["meta"]
    assert meta["components"] == [step, node]
    assert meta["entries"] == [
        {"direction": "denoising", "which": "circuit"},
        {"direction": "noising", "which": "circuit"},
    ]
    exp = w.experiment
    mlp1 = pw.Component("mlp_out", 1, pos=14)
    paths = [pw.Path(pw.Component("head", 1, head=3), pw.Component("mlp_in", 1, pos=14))]
    paths += [pw.Path(mlp1, r) for r in pw.paths.every_receiver_after(exp, "mlp_out", 1)]
    data = np.frombuffer(bytes(replies(w, 1, "circuit_result")[0][1][0]), dtype="<f4")
    n = exp.n_pairs * 6
    for i, direction in enumerate(("denoising", "noising")):
        want = exp.patch_paths(paths, direction).readouts.ravel()
        np.testing.assert_allclose(data[3 * n * i : 3 * n * i + n], want, atol=1e-6)
    # the copied code reproduces it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    send(w, {"type": "copy_code", "id": 2, "what": "circuit", "components": [step, node]})
    code = final(w, 2)["code"]
    assert "exp.patch_paths(paths, direction)" in code
    printed: list[Any] = []
    exec(compile(code, "<widget code>", "exec"), {"print": lambda *a: printed.append(a)})
    first = float(np.asarray(printed[0][1]).ravel()[0])
    want = exp.patch_paths(paths, "denoising").values("logit_diff", normalized=True)
    assert first == pytest.approx(float(np.asarray(want).ravel()[0]), abs=1e-5)


def test_copy_code_of_a_path_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    w = make_widget()
    view = {"kind": "sweep", "site": "head", "direction": "denoising", "layers": [0, 1],
            "heads": None, "positions": None, "neurons": None, "label": "x",
            "receivers": [{"site": "head_v", "layer": 2, "head": 1}, "logits"]}  # fmt: skip
    send(w, {"type": "copy_code", "id": 1, "view": view, "metric": "logit_diff"})
    code = final(w, 1)["code"]
    assert "receivers=[pw.Component('head_v', layer=2, head=1), 'logits']" in code
    namespace: dict[str, Any] = {"print": lambda *a: None}
    exec(compile(code, "<widget code>", "exec"), namespace)
    assert namespace["res"].metadata["receivers"] == ["head_v L2 H1", "logits"]
