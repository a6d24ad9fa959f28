"""The widget on a mixed-length dataset with named positions: names on the position axis,
every pair's readouts in the buffer, code that rebuilds the experiment, marked prompts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_widget_protocol import _model, decode, final, recording_comm, replies, send

from patchwidget.demo import demo_dataset
from patchwidget.experiment import Experiment
from patchwidget.positions import strip_marks
from patchwidget.widget import PatchingWidget

__all__ = ["recording_comm"]  # the fixture that records the widget's messages


def make_widget() -> PatchingWidget:
    exp = Experiment.from_dataset(_model(), demo_dataset(n=6))
    return PatchingWidget(exp, model_expr="pw.demo_model()")


def test_sweeps_show_names_and_every_pairs_readouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    w = make_widget()
    assert w.prompts["position_labels"] == ["IO", "S1", "S2", "END"]
    assert w.prompts["named_positions"]["END"] == [13, 13, 14, 14, 15, 15]
    assert w.prompts["diff_positions"] == [2]  # S2
    view = {"kind": "sweep", "site": "head_by_pos", "direction": "noising", "layers": [1]}
    view |= {"positions": [2, 3], "heads": None, "neurons": None, "label": "x"}
    send(w, {"type": "sweep", "id": 1, **view})
    assert final(w, 1)["type"] == "result"
    ((content, buffers),) = replies(w, 1, "result")
    meta = content["meta"]
    assert meta["labels"]["pos"] == ["S2", "END"] and meta["n_pairs"] == 6
    panel = decode(meta, buffers[0])["noising"]
    np.testing.assert_array_equal(panel["readouts"], w.result.readouts)

    send(
        w, {"type": "copy_code", "id": 2, "view": view, "metric": "logit_diff", "normalized": True}
    )
    code = final(w, 2)["code"]
    assert "positions={'IO': [2, 4, 2, 4, 2, 4]" in code
    namespace: dict[str, Any] = {"print": lambda *a: None}
    exec(compile(code, "<widget code>", "exec"), namespace)
    np.testing.assert_allclose(namespace["res"].readouts, w.result.readouts, atol=1e-5)

    components = [{"site": "head_by_pos", "layer": 1, "head": 3, "pos": 2}]
    send(w, {"type": "circuit", "id": 3, "components": components})
    assert final(w, 3)["type"] == "circuit_result"
    circuit = w.circuit_checks.results[("noising", "circuit")]
    np.testing.assert_allclose(circuit.readouts[0], w.result.readouts[0, 3, 0], atol=1e-5)


def test_edited_prompts_with_marks_name_their_positions() -> None:
    w = make_widget()
    text = {
        "clean": "When [IO:Mary] and John went to the store , [S2:John] gave a drink to\n"
        "When [IO:Anna] and Tom went to the park , [S2:Tom] gave drink to",
        "corrupted": "When Mary and John went to the store , Mary gave a drink to\n"
        "When Anna and Tom went to the park , Anna gave drink to",
        "answers": " Mary| John\n Anna| Tom",
    }
    send(w, {"type": "set_prompts", "id": 1, **text})
    assert final(w, 1)["type"] == "prompts_set"
    assert w.prompts["clean"][1] == "When Anna and Tom went to the park , Tom gave drink to"
    assert w.prompts["named_positions"] == {"IO": [2, 2], "S2": [10, 10]}
    plain = "\n".join(strip_marks(p)[0] for p in text["clean"].split("\n"))
    send(w, {"type": "set_prompts", "id": 2, **text, "clean": plain})
    bad = final(w, 2)
    assert bad["type"] == "error" and "different numbers of tokens" in bad["message"]
