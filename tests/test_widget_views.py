"""Widget views beyond one site: the writers of a residual-stream cell, drill views as code,
code that reuses the notebook's experiment, and unknown tokens flagged for the prompt chips."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from patchwidget.demo import demo_model, demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.widget import PatchingWidget
from tests.test_widget_protocol import decode, final, recording_comm, send  # noqa: F401


@functools.cache
def _model() -> Any:
    return demo_model()


def _exp(**prompts: Any) -> Experiment:
    return Experiment(_model(), **(prompts or demo_prompts("flip_s2", n=2)))


def test_writers_of_a_residual_cell_are_earlier_heads_and_mlps_at_its_position() -> None:
    exp = _exp()
    w = PatchingWidget(exp, model_expr="pw.demo_model()")
    request = {"kind": "writers", "site": "resid_pre", "layers": [2], "positions": [10]}
    send(w, {"type": "sweep", "id": 1, "direction": "denoising", **request})
    assert final(w, 1)["status"] == "done"
    meta = w.result_meta
    assert meta["axes"] == ["layer", "writer"] and meta["shape"] == [2, 5]
    assert meta["labels"]["writer"] == ["H0", "H1", "H2", "H3", "MLP"]
    assert meta["coords"]["writer"][1] == {"site": "head_by_pos", "head": 1}
    assert meta["fixed"] == {"pos": 10}
    grid = decode(meta, w.result_bytes)["denoising"]["readouts"]
    heads = exp.sweep("head_by_pos", "denoising", layers=[0, 1], positions=[10], progress=False)
    mlps = exp.sweep("mlp_out", "denoising", layers=[0, 1], positions=[10], progress=False)
    np.testing.assert_allclose(grid[:, :4], heads.readouts[:, :, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grid[:, 4], mlps.readouts[:, 0], rtol=1e-5, atol=1e-5)
    components = w._views[1].components()
    assert components[4] == {"site": "mlp_out", "layer": 0, "pos": 10}
    assert components[6] == {"site": "head_by_pos", "layer": 1, "head": 1, "pos": 10}


def test_writers_of_resid_mid_include_the_layers_own_attention() -> None:
    w = PatchingWidget(_exp(), model_expr="pw.demo_model()")
    request = {"kind": "writers", "site": "resid_mid", "layers": [1], "positions": [3]}
    send(w, {"type": "sweep", "id": 1, "direction": "noising", **request})
    assert final(w, 1)["status"] == "done"
    grid = decode(w.result_meta, w.result_bytes)["noising"]["readouts"]
    assert w.result_meta["coords"]["layer"] == [0, 1]
    assert np.isfinite(grid[1, :4]).all() and np.isnan(grid[1, 4]).all()  # MLP 1 comes later
    send(w, {"type": "sweep", "id": 2, "direction": "noising", **request, "layers": [0]})
    assert final(w, 2)["status"] == "done"
    send(w, {"type": "sweep", "id": 3, "direction": "noising", **request, "site": "resid_pre",
             "layers": [0]})  # fmt: skip
    reply = final(w, 3)
    assert reply["type"] == "error" and "embeddings" in reply["message"]


@pytest.mark.parametrize(
    "request_fields",
    [
        {"kind": "writers", "site": "resid_post", "layers": [1], "positions": [10]},
        {"kind": "head_parts", "site": "head", "layers": [2], "heads": [1], "positions": None},
    ],
)
def test_copy_code_of_a_drill_view_rebuilds_its_grid(
    request_fields: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    w = PatchingWidget(_exp(), model_expr="pw.demo_model()")
    view = {"direction": "both", "heads": None, "neurons": None, "label": "x", **request_fields}
    send(w, {"type": "sweep", "id": 1, **view})
    final(w, 1)
    send(
        w, {"type": "copy_code", "id": 2, "view": view, "metric": "logit_diff", "normalized": True}
    )
    code = final(w, 2)["code"]
    assert "pw.demo_model()" in code and "/model" not in code
    assert "        'When Henry and Kate went to the garden , Kate gave a flower to'," in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "<widget code>", "exec"), namespace)
    from patchwidget.widget.exports import view_panels

    shown = view_panels(w._views[1], "logit_diff", True, drop=False)
    for panel, rebuilt in zip(shown, namespace["panels"], strict=True):
        np.testing.assert_allclose(rebuilt.values, panel.values, rtol=1e-5, atol=1e-6)
        assert tuple(rebuilt.cols) == panel.cols


def test_code_reuses_the_notebooks_experiment_until_the_prompts_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook: dict[str, Any] = {"make": _exp}  # a notebook's namespace: its globals
    exec("lesson = make()\nw = lesson.widget()", notebook)
    lesson, w = notebook["lesson"], notebook["w"]
    view = {"kind": "sweep", "site": "head", "direction": "noising"}
    send(w, {"type": "copy_code", "id": 1, "view": view, "metric": "kl", "normalized": False})
    code = final(w, 1)["code"]
    assert "exp = lesson  # the notebook's experiment" in code
    assert "pw.Experiment(" not in code and "load_model" not in code
    namespace: dict[str, Any] = {"lesson": lesson, "print": lambda *a: None}
    exec(compile(code, "<code>", "exec"), namespace)
    np.testing.assert_allclose(
        np.asarray(namespace["res"].values("kl")),
        np.asarray(lesson.sweep("head", "noising").values("kl")),
        rtol=1e-5,
    )
    components = [{"site": "head", "layer": 2, "head": 1}]
    send(w, {"type": "copy_code", "id": 2, "what": "circuit", "components": components})
    circuit = final(w, 2)["code"]
    assert "pw.Component('head', layer=2, head=1)" in circuit and "exp.circuit(" in circuit
    prompts = demo_prompts("flip_s2", n=1, seed=3)
    text = {
        "clean": prompts["clean"][0],
        "corrupted": prompts["corrupted"][0],
        "answers": "|".join(prompts["answers"][0]),
    }
    send(w, {"type": "set_prompts", "id": 3, **text})
    assert final(w, 3)["type"] == "prompts_set"
    send(w, {"type": "copy_code", "id": 4, "view": view, "metric": "kl", "normalized": False})
    rebuilt = final(w, 4)["code"]
    assert "lesson" not in rebuilt and "model = pw.demo_model()" in rebuilt


def test_unknown_tokens_are_flagged_per_pair_for_the_chips() -> None:
    prompts = demo_prompts("flip_s2", n=2)
    prompts["clean"][1] = prompts["clean"][1].replace("office", "Zebulon")
    prompts["corrupted"][1] = prompts["corrupted"][1].replace("office", "Zebulon")
    w = PatchingWidget(_exp(**prompts), model_expr="pw.demo_model()")
    unknown = w.prompts["unknown"]
    assert not any(unknown["clean"][0]) and not any(unknown["answers"][0])
    position = w.prompts["clean_tokens"][1].index("<unk>")
    assert [i for i, u in enumerate(unknown["clean"][1]) if u] == [position]
    assert unknown["corrupted"][1] == unknown["clean"][1]


def test_a_circuit_mixing_kinds_gets_no_complement_and_says_why() -> None:
    from patchwidget.components import Component

    exp = _exp()
    mixed = [Component("head", 2, head=1), Component("resid_pre", 1, pos=10)]
    with pytest.warns(UserWarning, match="mixes component kinds"):
        checks = exp.circuit(mixed)
    assert set(checks.results) == {("denoising", "circuit"), ("noising", "circuit")}
    assert "head, resid_pre" in (checks.complement_note or "")
    assert exp.circuit(mixed[:1]).complement_note is None
    w = PatchingWidget(exp, model_expr="pw.demo_model()")
    components = [
        {"site": "head", "layer": 2, "head": 1},
        {"site": "resid_pre", "layer": 1, "pos": 10},
    ]
    send(w, {"type": "circuit", "id": 1, "components": components})
    assert final(w, 1)["type"] == "circuit_result"
    assert [e["which"] for e in w.circuit_meta["entries"]] == ["circuit", "circuit"]
    assert "one kind at a time" in w.circuit_meta["complement_note"]
