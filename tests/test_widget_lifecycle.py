"""Widgets over time: several on one model, closing and freeing them, prompt edits racing
sweeps, and a fuzz of malformed messages (each request id gets exactly one final reply)."""

from __future__ import annotations

import gc
import random
import threading
import weakref
from typing import Any

import numpy as np
import pytest
import torch

from patchwidget.demo import demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.widget import PatchingWidget
from tests.test_widget_protocol import (
    N_PAIRS,
    _model,
    _wait_until,
    final,
    make_widget,
    recording_comm,  # noqa: F401  (autouse fixture: replies are recorded)
    replies,
    send,
    slow_down,
)


def test_closed_widgets_are_freed() -> None:
    refs = []
    for _ in range(30):
        w = make_widget()
        send(
            w, {"type": "sweep", "id": 1, "site": "attn_out", "direction": "noising", "layers": [0]}
        )
        assert final(w, 1)["status"] == "done"
        w.close()
        refs.append((weakref.ref(w), weakref.ref(w.experiment)))
        del w
    gc.collect()
    alive = [i for i, (w, e) in enumerate(refs) if w() is not None or e() is not None]
    assert alive == []


def test_close_stops_the_running_sweep() -> None:
    w = make_widget(batch_size=N_PAIRS)
    slow_down(w, 0.05)
    send(w, {"type": "sweep", "id": 1, "site": "neuron", "direction": "denoising"})
    _wait_until(lambda: replies(w, 1, "progress"))
    w.close()
    assert w.wait(30)
    assert w.history[0]["status"] == "superseded"
    assert w.result is None  # the sweep stopped after its batch and published nothing


def _prompt_text(n: int, seed: int) -> dict[str, str]:
    prompts = demo_prompts("flip_s2", n=n, seed=seed)
    return {
        "clean": "\n".join(prompts["clean"]),
        "corrupted": "\n".join(prompts["corrupted"]),
        "answers": "\n".join(f"{a}|{b}" for a, b in prompts["answers"]),
    }


def test_a_sweep_right_after_a_prompt_edit_runs_on_the_new_prompts() -> None:
    w = make_widget()
    for trial in range(3):
        base = 10 * trial
        send(w, {"type": "set_prompts", "id": base + 1, **_prompt_text(2 + trial, seed=trial)})
        send(w, {"type": "sweep", "id": base + 2, "site": "attn_out", "direction": "noising"})
        send(w, {"type": "sweep", "id": base + 3, "site": "mlp_out", "direction": "noising"})
        assert final(w, base + 1)["type"] == "prompts_set"
        assert final(w, base + 2)["type"] == "superseded"
        assert final(w, base + 3)["status"] == "done"
        assert w.experiment.n_pairs == 2 + trial
        assert w.result_meta["n_pairs"] == 2 + trial and w.result.site == "mlp_out"


def test_cancel_says_a_circuit_check_or_a_prompt_change_cannot_be_stopped() -> None:
    w = make_widget()
    slow_down(w, 0.05)
    send(w, {"type": "sweep", "id": 1, "site": "neuron", "direction": "denoising"})
    send(w, {"type": "set_prompts", "id": 2, **_prompt_text(2, seed=4)})
    send(w, {"type": "cancel", "id": 3})
    ack = final(w, 3)
    assert ack["type"] == "ack" and "can't be cancelled" in ack["message"]
    assert final(w, 2)["type"] == "prompts_set" and w.experiment.n_pairs == 2


def test_several_widgets_and_experiments_share_one_model() -> None:
    import patchwidget as pw

    model = _model()
    widgets = [make_widget(), make_widget()]
    other = Experiment(model, **demo_prompts("flip_s2", n=N_PAIRS, seed=7))
    expected = other.sweep("resid_pre", progress=False)
    found: dict[str, Any] = {}
    errors: list[BaseException] = []

    def cell() -> None:  # another cell's work while the widgets sweep
        try:
            for _ in range(3):
                found["sweep"] = other.sweep("resid_pre", progress=False)
                with pw.model_lock(model), model.trace("When Mary and John went"):
                    found["trace"] = model.output.logits.save()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    for i, w in enumerate(widgets):
        for j, site in enumerate(("attn_out", "mlp_out", "head")):
            send(w, {"type": "sweep", "id": 10 * j + i, "site": site, "direction": "both"})
    thread = threading.Thread(target=cell)
    thread.start()
    thread.join(120)
    assert errors == []
    for i, w in enumerate(widgets):
        assert final(w, 20 + i)["status"] == "done"
        assert np.isfinite(w.result.readouts).all()
    np.testing.assert_array_equal(found["sweep"].readouts, expected.readouts)
    assert found["trace"].shape[0] == 1
    np.testing.assert_array_equal(widgets[0].results[0].readouts, widgets[1].results[0].readouts)


def test_the_gathered_vocabulary_projection_waits_for_the_models_lock() -> None:
    """nnsight hands any call of a module to a trace running in another thread, so the one
    module call outside a trace (the projection of many passes' answers) holds the lock too."""
    import patchwidget as pw

    exp = Experiment(_model(), **demo_prompts("flip_s2", n=N_PAIRS, seed=7))
    hidden = torch.randn(3, exp.dims.d_model)
    got: list[torch.Tensor] = []
    other = threading.Thread(target=lambda: got.append(exp.engine.unembed(hidden)))
    with pw.model_lock(exp.model):  # as a user's trace in another cell holds it
        other.start()
        other.join(0.5)
        assert other.is_alive() and not got, "the projection ran while the model was held"
    other.join(10)
    assert got and got[0].shape == (3, exp.dims.vocab_size)


def test_history_and_kept_views_are_bounded() -> None:
    from patchwidget.widget.requests import MAX_HISTORY

    w = make_widget()
    for i in range(MAX_HISTORY + 20):
        send(w, {"type": "cancel", "id": i})
    assert len(w.history) == MAX_HISTORY and w.history[-1]["id"] == MAX_HISTORY + 19
    views = w._handlers.views
    views.max_bytes = 1
    for i in (1, 2):
        send(w, {"type": "sweep", "id": 1000 + i, "site": "attn_out", "direction": "noising"})
        final(w, 1000 + i)
    assert views.get(1001) is None and views.get(1002) is not None  # the newest always stays


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-like value, sometimes huge or deeply nested."""
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2, 7, 99, 2**60, -(2**60)])
    if choice == 3:
        return rng.choice([0.5, float("nan"), float("inf"), -0.0, 1e300])
    if choice == 4:
        return rng.choice(["", "x", "resid_pre", "head", "both", "noising", "a|b", "\n" * 3])
    if choice == 5:
        return "z" * rng.choice([1_000, 200_000])
    if choice == 6:
        nested: Any = 1
        for _ in range(rng.choice([10, 1_000])):
            nested = [nested]
        return nested
    if choice == 7:
        return {"site": "head", "layer": rng.randrange(-2, 5), "head": _junk(rng, depth + 1)}
    if depth > 2:
        return []
    if choice in (8, 9):
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["id", "type", "site", "x"]): _junk(rng, depth + 1) for _ in range(3)}


FIELDS = {
    "sweep": ["kind", "site", "direction", "layers", "heads", "positions", "neurons", "label"],
    "circuit": ["components"],
    "set_prompts": ["clean", "corrupted", "answers"],
    "cancel": [],
    "copy_code": ["what", "view", "components", "metric", "normalized"],
    "save_figure": ["view_id", "metric", "normalized"],
    "export_csv": ["view_id"],
    "ping": [],
}


def _malformed(rng: random.Random, request_id: Any) -> Any:
    kind = rng.choice([*FIELDS, "nope", None, 3])
    msg: dict[str, Any] = {"type": kind, "id": request_id}
    for name in FIELDS.get(kind, ["site"]) if isinstance(kind, str) else ["site"]:
        if rng.random() < 0.7:
            msg[name] = _junk(rng)
    if kind == "sweep" and rng.random() < 0.5:  # mostly valid, one bad field: reaches deeper
        msg.update(site="attn_out", direction="noising", layers=[0])
        msg[rng.choice(FIELDS["sweep"])] = _junk(rng)
    if rng.random() < 0.05:
        return rng.choice([[msg], "text", 5, None])
    return msg


def test_fuzzed_messages_get_exactly_one_final_reply_each() -> None:
    from patchwidget.corruptions import ZeroAblation

    rng = random.Random(8)
    exp = Experiment(
        _model(),
        clean=demo_prompts(n=2)["clean"],
        answers=demo_prompts(n=2)["answers"],
        corruption=ZeroAblation(),
    )
    w = PatchingWidget(exp)
    # Engine work is replaced by a stand-in: the fuzz is about validation and replies.
    w.experiment.sweep = lambda *a, **k: pytest.fail("a malformed sweep reached the engine")
    finals = (
        "result",
        "circuit_result",
        "prompts_set",
        "code",
        "saved",
        "ack",
        "superseded",
        "pong",
    )
    sent_ids = []
    for i in range(1_200):
        request_id = 10_000 + i
        message = _malformed(rng, request_id)
        if rng.random() < 0.03:
            message = {"type": "sweep", "id": _junk(rng)}
        send(w, message)
        if isinstance(message, dict) and message.get("id") == request_id:
            sent_ids.append(request_id)
    assert w.wait(60)
    counts: dict[Any, int] = {}
    for content, _ in replies(w):
        if content["type"] in (*finals, "error"):
            counts[content["id"]] = counts.get(content["id"], 0) + 1
    assert all(counts.get(i) == 1 for i in sent_ids), {i: counts.get(i) for i in sent_ids[:50]}
    assert all(len(c.get("message") or "") <= 2_000 for c, _ in replies(w, kind="error"))


def _zero_ablation_widget() -> PatchingWidget:
    from patchwidget.corruptions import ZeroAblation

    prompts = demo_prompts(n=2)
    exp = Experiment(
        _model(), clean=prompts["clean"], answers=prompts["answers"], corruption=ZeroAblation()
    )
    return PatchingWidget(exp)


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        ({"type": "copy_code", "view": [1], "metric": "prob"}, "view", "must be an object"),
        (
            {"type": "circuit", "components": [{"site": "head", "layer": 0}]},
            "components[0].head",
            "needs a 'head'",
        ),
        (
            {"type": "circuit", "components": [{"site": "neuron", "layer": 0}]},
            "components[0].neuron",
            "needs a 'neuron'",
        ),
        (
            {"type": "circuit", "components": [{"site": "mlp_out", "layer": 0, "head": 1}]},
            "components[0].head",
            "has no heads",
        ),
        ({"type": "sweep", "site": "x" * 1_000_000, "direction": "noising"}, "site", "..."),
        (
            {
                "type": "set_prompts",
                "clean": "Mary " * 40,
                "corrupted": "John " * 40,
                "answers": " Mary| John",
            },
            "clean",
            "reads at most",
        ),
    ],
)
def test_messages_that_used_to_fail_late_are_refused_with_a_field(
    content: dict, field: str, words: str
) -> None:
    w = make_widget()
    send(w, {**content, "id": 1})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == field, reply
    assert words in reply["message"] and len(reply["message"]) < 2_000


def test_both_directions_under_an_ablation_are_refused_before_running() -> None:
    w = _zero_ablation_widget()
    send(w, {"type": "sweep", "id": 1, "site": "attn_out", "direction": "both"})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == "direction"
    assert not replies(w, 1, "started")


def test_a_deeply_nested_id_gets_one_reply() -> None:
    w = make_widget()
    nested: Any = 1
    for _ in range(1_000):
        nested = [nested]
    send(w, {"type": "sweep", "id": nested})
    errors = [c for c, _ in replies(w, kind="error")]
    assert len(errors) == 1 and errors[0]["id"] is None and errors[0]["field"] == "id"
    assert len(errors[0]["message"]) < 200


def test_ping_is_answered_and_prompt_notes_come_back() -> None:
    w = make_widget()
    send(w, {"type": "ping", "id": 1})
    assert [c["type"] for c, _ in replies(w, 1)] == ["pong"] and w.history == []
    text = _prompt_text(2, seed=1)
    text["clean"] = text["clean"].replace(" to", " to,", 1)  # "to," is not a word it knows
    send(w, {"type": "set_prompts", "id": 2, **text})
    reply = final(w, 2)
    assert (
        reply["type"] == "prompts_set"
        and len(reply["notes"]) == 1
        and "clean prompt of pair 1" in reply["notes"][0]
    )
    assert w.prompts["notes"] == reply["notes"]


def test_a_long_sweep_waits_for_run_it_anyway(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchwidget import checks

    w = make_widget()
    monkeypatch.setattr(checks, "LONG_SWEEP_S", 0.0)
    sweep = {"type": "sweep", "site": "neuron", "direction": "denoising", "layers": [0]}
    send(w, {**sweep, "id": 1})
    reply = final(w, 1)
    assert reply["type"] == "error" and reply["field"] == "confirm"
    n = w.experiment.dims.d_mlp * N_PAIRS
    assert f"runs {n:,} patched passes: about" in reply["message"]
    assert not replies(w, 1, "started")
    send(w, {**sweep, "id": 2, "confirmed": True})
    assert final(w, 2)["status"] == "done"


def test_a_kernel_side_failure_is_logged_with_its_stack_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = make_widget()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine on fire")

    w.experiment.sweep = broken
    with caplog.at_level("ERROR", logger="patchwidget"):
        send(w, {"type": "sweep", "id": 1, "site": "attn_out", "direction": "noising"})
        reply = final(w, 1)
    assert reply["message"] == "sweep failed: RuntimeError: engine on fire"
    assert reply["field"] is None
    (record,) = [r for r in caplog.records if r.name == "patchwidget.widget.requests"]
    assert record.exc_info is not None and "broken" in caplog.text  # the frame that raised
    assert sum("engine on fire" in c.get("message", "") for c, _ in replies(w, 1)) == 1
