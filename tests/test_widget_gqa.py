"""The widget protocol on a grouped-query model (tiny Llama: 4 query heads, 2 key/value heads):
every component names the head index space it uses, and the kernel patches exactly that head."""

from __future__ import annotations

import numpy as np
import pytest

from patchwidget.components import Component
from patchwidget.experiment import Experiment
from patchwidget.widget import PatchingWidget
from tests.conftest import ANSWERS, CLEAN, CORRUPTED, engine_model
from tests.test_widget_protocol import decode, final, recording_comm, send  # noqa: F401


def make_widget() -> PatchingWidget:
    exp = Experiment(engine_model("llama_gqa"), clean=CLEAN, corrupted=CORRUPTED, answers=ANSWERS)
    assert exp.info["n_heads"] == 4 and exp.info["n_kv_heads"] == 2
    return PatchingWidget(exp, model_expr="model")


@pytest.mark.parametrize("site", ["head_k", "head_v"])
def test_kv_sweep_names_key_value_heads_and_a_circuit_patches_the_one_clicked(site: str) -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": site, "direction": "denoising"})
    assert final(w, 1)["status"] == "done"
    meta = w.result_meta
    assert meta["axes"] == ["layer", "kv_head"]
    assert meta["coords"]["kv_head"] == [0, 1] and meta["labels"]["kv_head"] == ["KV0", "KV1"]
    cell = decode(meta, w.result_bytes)["denoising"]["readouts"][0, 1]  # L0 KV1
    send(w, {"type": "circuit", "id": 2, "components": [{"site": site, "layer": 0, "kv_head": 1}]})
    assert final(w, 2)["type"] == "circuit_result"
    assert w.circuit_meta["components"] == [{"site": site, "layer": 0, "kv_head": 1}]
    patched = w.circuit_checks.results[("denoising", "circuit")].readouts.reshape(cell.shape)
    np.testing.assert_allclose(patched, cell, rtol=1e-5, atol=1e-5)
    direct = w.experiment.patch([Component(site, 0, head=1)], "denoising").readouts
    np.testing.assert_allclose(patched, direct.reshape(cell.shape), rtol=1e-5, atol=1e-5)
    other = w.experiment.patch([Component(site, 0, head=0)], "denoising").readouts
    assert not np.allclose(patched, other.reshape(cell.shape), atol=1e-3)


def test_head_drill_down_fixes_the_query_head_and_its_key_value_head() -> None:
    w = make_widget()
    request = {"kind": "head_parts", "site": "head", "direction": "noising"}
    send(w, {"type": "sweep", "id": 1, **request, "layers": [1], "heads": [3]})
    assert final(w, 1)["status"] == "done"
    assert w.result_meta["fixed"] == {"layer": 1, "head": 3, "kv_head": 1}
    k_row = decode(w.result_meta, w.result_bytes)["noising"]["readouts"][1]
    engine = w.experiment.sweep("head_k", "noising", layers=[1], heads=[1], by_pos=True)
    np.testing.assert_allclose(k_row, engine.readouts.reshape(k_row.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ({"site": "head_k", "layer": 0, "head": 1}, "components[0].kv_head"),
        ({"site": "head_v", "layer": 0, "kv_head": 2}, "components[0].kv_head"),
        ({"site": "head_q", "layer": 0, "head": 1, "kv_head": 0}, "components[0].kv_head"),
    ],
)
def test_a_head_in_the_wrong_index_space_is_refused(component: dict, field: str) -> None:
    w = make_widget()
    send(w, {"type": "circuit", "id": 1, "components": [component]})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == field, reply


def test_kv_sweep_restriction_counts_key_value_heads() -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "head_v", "direction": "noising", "heads": [2]})
    assert final(w, 1)["field"] == "heads"
    send(w, {"type": "sweep", "id": 2, "site": "head_v", "direction": "noising", "heads": [1]})
    assert final(w, 2)["status"] == "done" and w.result_meta["coords"]["kv_head"] == [1]
