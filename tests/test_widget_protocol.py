"""PatchingWidget's kernel side without a browser: front-end messages go in through the widget's
comm, replies are recorded; the engine is the real one on the demo model."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import comm
import numpy as np
import pytest
from comm.base_comm import BaseComm

from patchwidget.demo import demo_model, demo_prompts
from patchwidget.experiment import Experiment
from patchwidget.metrics import compute
from patchwidget.models import load_model
from patchwidget.widget import PatchingWidget

N_PAIRS = 4


class RecordingComm(BaseComm):
    """A comm that keeps what the kernel would publish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.published: list[tuple[dict, list]] = []
        self.lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        with self.lock:
            self.published.append((data or {}, list(buffers or [])))


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))


WHERE = {"now": "here"}  # where the running test's demo model runs: "here" or "remote"
# nnsight's local simulation of remote execution removes every non-server module from
# sys.modules while it deserialises a request, process-wide: the test thread must not import
# or handle a message meanwhile (a widget's job thread may be deserialising). NDIF itself
# deserialises on the server, so this lock belongs to the simulation, not to patchwidget.
SIMULATION = threading.RLock()
WIDGETS: list[weakref.ref[PatchingWidget]] = []  # made by the running test


@pytest.fixture(autouse=True, params=["here", "remote"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every protocol test runs on the demo model here and once through nnsight's local
    simulation of remote execution, in requests of 4 patches (so progress and cancel apply)."""
    with SIMULATION:
        from nnsight.intervention.backends.local import LocalSimulationBackend

        from patchwidget import remote

    hide, restore = LocalSimulationBackend._hide_local_modules, LocalSimulationBackend._restore

    def hide_locked(self: Any) -> Any:
        SIMULATION.acquire()
        return hide(self)

    def restore_locked(self: Any, hidden: Any) -> None:
        try:
            restore(self, hidden)
        finally:
            SIMULATION.release()

    monkeypatch.setattr(LocalSimulationBackend, "_hide_local_modules", hide_locked)
    monkeypatch.setattr(LocalSimulationBackend, "_restore", restore_locked)
    monkeypatch.setattr(remote, "ROWS_PER_REQUEST", 4 * N_PAIRS)
    monkeypatch.setitem(WHERE, "now", request.param)
    yield
    while WIDGETS:  # no job thread of this test may still run into the next one
        w = WIDGETS.pop()()
        if w is not None:
            w.wait(120)


@functools.cache
def _demo_model(where: str) -> Any:
    return load_model(demo_model(), remote="local") if where == "remote" else demo_model()


def _model() -> Any:
    return _demo_model(WHERE["now"])


def make_widget(**kwargs: Any) -> PatchingWidget:
    exp = Experiment(_model(), **demo_prompts("flip_s2", n=N_PAIRS), **kwargs)
    w = PatchingWidget(exp, model_expr="pw.demo_model()")
    WIDGETS.append(weakref.ref(w))
    return w


def send(w: PatchingWidget, content: Any, buffers: list | None = None) -> None:
    """Deliver a custom message as the front end's comm would."""
    with SIMULATION:
        message = {"method": "custom", "content": content}
        w.comm.handle_msg({"content": {"data": message}, "buffers": buffers or []})


def replies(w: PatchingWidget, request_id: Any = ..., kind: str | None = None) -> list[tuple]:
    """Custom messages the kernel sent, optionally for one request id and of one type."""
    with w.comm.lock:
        out = [(d["content"], b) for d, b in w.comm.published if d.get("method") == "custom"]
    if request_id is not ...:
        out = [(c, b) for c, b in out if c.get("id") == request_id]
    if kind is not None:
        out = [(c, b) for c, b in out if c["type"] == kind]
    return out


def final(w: PatchingWidget, request_id: int) -> dict:
    assert w.wait(120)
    kinds = {
        "result",
        "circuit_result",
        "prompts_set",
        "code",
        "saved",
        "ack",
        "superseded",
        "error",
    }
    finals = [c for c, _ in replies(w, request_id) if c["type"] in kinds]
    assert len(finals) == 1, finals
    return finals[0]


def decode(meta: dict, buffer: Any) -> dict[str, dict[str, np.ndarray]]:
    data = np.frombuffer(bytes(buffer), dtype="<f4")
    n_cells, n_pairs = int(np.prod(meta["shape"])), meta["n_pairs"]
    size, base = n_cells * n_pairs * 6, n_pairs * 6
    assert data.size == len(meta["directions"]) * (size + 2 * base)
    panels, offset = {}, 0
    for direction in meta["directions"]:
        readouts = data[offset : offset + size].reshape(*meta["shape"], n_pairs, 6)
        clean = data[offset + size : offset + size + base].reshape(n_pairs, 6)
        corrupted = data[offset + size + base : offset + size + 2 * base].reshape(n_pairs, 6)
        panels[direction] = {"readouts": readouts, "clean": clean, "corrupted": corrupted}
        offset += size + 2 * base
    return panels


def slow_down(w: PatchingWidget, seconds: float = 0.01) -> None:
    """Make each batch of the widget's sweeps take a while (test instrumentation only)."""
    sweep = w.experiment.sweep

    def slow_sweep(*args: Any, on_progress: Any = None, **kwargs: Any) -> Any:
        def progress(done: int, total: int, partial: Any) -> None:
            time.sleep(seconds)
            on_progress(done, total, partial)

        return sweep(*args, on_progress=progress, **kwargs)

    w.experiment.sweep = slow_sweep


def test_sweep_replies_with_binary_readouts_that_match_the_engine() -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "resid_pre", "direction": "denoising"})
    reply = final(w, 1)
    assert reply["type"] == "result" and reply["status"] == "done"
    ((content, buffers),) = replies(w, 1, "result")
    meta = content["meta"]
    assert meta["axes"] == ["layer", "pos"] and meta["directions"] == ["denoising"]
    assert len(buffers) == 1 and "readouts" not in json.dumps(meta)
    panel = decode(meta, buffers[0])["denoising"]
    np.testing.assert_array_equal(panel["readouts"], w.result.readouts)
    shown = compute("logit_diff", panel["readouts"], panel["clean"], panel["corrupted"], True)
    np.testing.assert_allclose(shown, np.asarray(w.result.values("logit_diff", normalized=True)))
    # the last result is saved with the notebook: meta dict + bytes traitlets
    assert w.result_meta["id"] == 1 and isinstance(w.result_bytes, bytes)
    assert bytes(buffers[0]) == w.result_bytes
    assert replies(w, 1, "started") and w.status == "idle"
    assert w.history[-1] | {"time": None} == {
        "id": 1,
        "kind": "sweep",
        "site": "resid_pre",
        "direction": "denoising",
        "layers": None,
        "heads": None,
        "positions": None,
        "status": "done",
        "error": None,
        "time": None,
    }


def test_both_directions_and_restricted_drill_down() -> None:
    w = make_widget()
    send(
        w,
        {
            "type": "sweep",
            "id": 3,
            "site": "head_by_pos",
            "direction": "both",
            "layers": [1],
            "positions": [10],
        },
    )
    assert final(w, 3)["status"] == "done"
    meta = w.result_meta
    assert meta["directions"] == ["denoising", "noising"]
    assert meta["shape"] == [1, 4, 1] and meta["coords"]["layer"] == [1]
    panels = decode(meta, w.result_bytes)
    for direction in ("denoising", "noising"):
        want = w.experiment.sweep(
            "head_by_pos", direction, layers=[1], positions=[10], progress=False
        )
        np.testing.assert_allclose(panels[direction]["readouts"], want.readouts, atol=1e-5)
    assert w.history[-1]["layers"] == [1] and w.history[-1]["positions"] == [10]


def test_head_parts_view_stacks_q_k_v_pattern() -> None:
    w = make_widget()
    send(
        w,
        {
            "type": "sweep",
            "id": 4,
            "kind": "head_parts",
            "site": "head",
            "direction": "noising",
            "layers": [2],
            "heads": [1],
        },
    )
    assert final(w, 4)["status"] == "done"
    meta = w.result_meta
    assert meta["axes"] == ["site", "pos"]
    assert meta["coords"]["site"] == ["head_q", "head_k", "head_v", "head_pattern"]
    assert meta["fixed"] == {"layer": 2, "head": 1, "kv_head": 1}
    assert meta["shape"] == [4, len(w.experiment.position_labels)]
    readouts = decode(meta, w.result_bytes)["noising"]["readouts"]
    kv = w.experiment.dims.n_heads // w.experiment.dims.n_kv_heads
    for row, site in enumerate(meta["coords"]["site"]):
        head = 1 // kv if site in ("head_k", "head_v") else 1
        want = w.experiment.sweep(
            site, "noising", layers=[2], heads=[head], by_pos=True, progress=False
        )
        np.testing.assert_allclose(
            readouts[row], want.readouts.reshape(readouts[row].shape), atol=1e-5
        )
    assert len(w.results) == 4


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("not a dict", None),
        ({"type": "sweep"}, "id"),
        ({"type": "sweep", "id": True}, "id"),
        ({"type": "launch_missiles", "id": 5}, "type"),
        ({"id": 6, "site": "resid_pre"}, "type"),
        ({"type": "sweep", "id": 7, "site": "nope", "direction": "denoising"}, "site"),
        ({"type": "sweep", "id": 8, "site": "resid_pre", "direction": "sideways"}, "direction"),
        (
            {
                "type": "sweep",
                "id": 9,
                "site": "resid_pre",
                "direction": "noising",
                "layers": [0, 99],
            },
            "layers",
        ),
        (
            {
                "type": "sweep",
                "id": 10,
                "site": "resid_pre",
                "direction": "noising",
                "layers": "all",
            },
            "layers",
        ),
        (
            {
                "type": "sweep",
                "id": 11,
                "site": "resid_pre",
                "direction": "noising",
                "positions": [1.5],
            },
            "positions",
        ),
        (
            {
                "type": "sweep",
                "id": 12,
                "kind": "head_parts",
                "site": "head",
                "direction": "noising",
                "layers": [0],
            },
            "heads",
        ),
        ({"type": "circuit", "id": 13, "components": []}, "components"),
        (
            {"type": "circuit", "id": 14, "components": [{"site": "head", "layer": -1}]},
            "components[0].layer",
        ),
        ({"type": "save_figure", "id": 15, "view_id": 999}, "view_id"),
        (
            {
                "type": "copy_code",
                "id": 16,
                "view": {"site": "resid_pre", "direction": "noising"},
                "metric": "vibes",
            },
            "metric",
        ),
        (
            {"type": "set_prompts", "id": 17, "clean": "a", "corrupted": "b", "answers": "x"},
            "answers",
        ),
        (
            {"type": "set_prompts", "id": 18, "clean": 3, "corrupted": "b", "answers": "x|y"},
            "clean",
        ),
    ],
)
def test_malformed_messages_get_an_error_reply_and_the_kernel_carries_on(
    content: Any, field: str | None
) -> None:
    w = make_widget()
    send(w, content)
    w.wait(30)
    errors = [c for c, _ in replies(w, kind="error")]
    assert len(errors) == 1, replies(w)
    assert errors[0]["field"] == field and errors[0]["message"]
    expected_id = content.get("id") if isinstance(content, dict) else None
    assert errors[0]["id"] == (
        expected_id if isinstance(expected_id, int) and not isinstance(expected_id, bool) else None
    )
    assert w.history[-1]["status"] == "error"
    send(w, {"type": "sweep", "id": 100, "site": "attn_out", "direction": "noising", "layers": [0]})
    assert final(w, 100)["status"] == "done"


def test_unavailable_site_is_refused_with_its_reason() -> None:
    w = make_widget()
    w.sites = [
        dict(s, reason="not in this model") if s["name"] == "resid_mid" else s for s in w.sites
    ]
    send(w, {"type": "sweep", "id": 1, "site": "resid_mid", "direction": "denoising"})
    reply = final(w, 1)
    assert reply["type"] == "error" and "not in this model" in reply["message"]


def test_engine_errors_become_error_replies() -> None:
    exp = Experiment(
        _model(),
        clean=demo_prompts(n=2)["clean"],
        answers=demo_prompts(n=2)["answers"],
        corruption=_zero_ablation(),
    )
    w = PatchingWidget(exp)
    assert w.directions["denoising"] and w.directions["noising"] is None
    assert w.direction == "noising"  # the first view runs in the direction that applies
    send(w, {"type": "sweep", "id": 1, "site": "resid_pre", "direction": "denoising"})
    reply = final(w, 1)
    assert reply["type"] == "error" and "noising" in reply["message"]
    assert w.history[-1]["status"] == "error" and w.status == "idle"


def test_the_model_line_says_where_the_model_runs_and_what_requests_cost() -> None:
    w = make_widget()
    prefix = "model (gpt2) · 3 layers × 4 heads · float32 · runs on "  # the demo's folder: model
    assert w.model_line.startswith(prefix), w.model_line
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "denoising"})
    assert final(w, 1)["type"] == "result"
    if WHERE["now"] == "here":
        assert w.model_line.endswith("runs on cpu") and "request" not in w.model_line
    else:
        requests = w.experiment._remote.stats.requests
        assert "runs on nnsight's local simulation of NDIF" in w.model_line, w.model_line
        assert re.search(rf"last request \d+\.\d\d s on the server \({requests} so far\)$",
                         w.model_line), w.model_line  # fmt: skip


def test_remote_server_errors_reach_the_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchwidget.remote import RemoteExecutionError

    w = make_widget()

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RemoteExecutionError("NDIF's queue is full right now: try again in a few minutes")

    monkeypatch.setattr(w.experiment, "sweep", refused)
    send(w, {"type": "sweep", "id": 1, "site": "head", "direction": "denoising"})
    reply = final(w, 1)
    assert reply["type"] == "error" and "queue is full" in reply["message"], reply
    assert w.status == "idle"


def _zero_ablation() -> Any:
    from patchwidget.corruptions import ZeroAblation

    return ZeroAblation()


def test_cancel_keeps_the_finished_part() -> None:
    w = make_widget(batch_size=N_PAIRS)
    slow_down(w)
    send(w, {"type": "sweep", "id": 1, "site": "neuron", "direction": "denoising"})
    _wait_until(lambda: replies(w, 1, "progress"))
    send(w, {"type": "cancel", "id": 2})
    assert final(w, 2)["type"] == "ack"
    reply = final(w, 1)
    assert reply["type"] == "result" and reply["status"] == "cancelled"
    assert w.history[0]["status"] == "cancelled"
    assert not w.result.complete
    readouts = decode(w.result_meta, w.result_bytes)["denoising"]["readouts"]
    done = np.isfinite(readouts).all(axis=(-1, -2))
    assert done.any() and not done.all()
    np.testing.assert_array_equal(readouts, w.result.readouts)
    progress = replies(w, 1, "progress")[-1][0]["meta"]
    assert 0 < progress["done"] < progress["total"] and progress["eta_s"] is not None


def test_a_new_request_supersedes_the_running_sweep() -> None:
    w = make_widget(batch_size=N_PAIRS)
    slow_down(w)
    send(w, {"type": "sweep", "id": 1, "site": "neuron", "direction": "denoising"})
    _wait_until(lambda: replies(w, 1, "progress"))
    send(w, {"type": "sweep", "id": 2, "site": "resid_pre", "direction": "noising"})
    assert final(w, 1)["type"] == "superseded"
    assert final(w, 2)["status"] == "done"
    assert [h["status"] for h in w.history] == ["superseded", "done"]
    assert not replies(w, 1, "result")
    assert w.result_meta["id"] == 2 and w.result.site == "resid_pre"


def test_requests_in_a_burst_run_only_the_last() -> None:
    w = make_widget()
    for i in range(1, 6):
        send(w, {"type": "sweep", "id": i, "site": "mlp_out", "direction": "denoising"})
    for i in range(1, 5):
        assert final(w, i)["type"] == "superseded"
    assert final(w, 5)["status"] == "done"
    assert w.result_meta["id"] == 5


def test_circuit_checks_circuit_and_complement_in_both_directions() -> None:
    w = make_widget()
    components = [
        {"site": "head", "layer": 2, "head": 1},
        {"site": "head", "layer": 1, "head": 0},
    ]
    send(w, {"type": "circuit", "id": 1, "components": components})
    assert final(w, 1)["type"] == "circuit_result"
    meta = w.circuit_meta
    assert meta["components"] == components
    assert {(e["direction"], e["which"]) for e in meta["entries"]} == {
        (d, which) for d in ("denoising", "noising") for which in ("circuit", "complement")
    }
    data = np.frombuffer(w.circuit_bytes, dtype="<f4").reshape(4, 3, N_PAIRS, 6)
    for i, entry in enumerate(meta["entries"]):
        result = w.circuit_checks.results[(entry["direction"], entry["which"])]
        np.testing.assert_array_equal(data[i, 0], np.asarray(result.readouts).reshape(-1, 6))


def test_set_prompts_retokenises_or_reports_the_problem() -> None:
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "resid_pre", "direction": "denoising"})
    final(w, 1)
    prompts = demo_prompts("flip_s2", n=2, seed=5)
    text = {
        "clean": "\n".join(prompts["clean"]),
        "corrupted": "\n".join(prompts["corrupted"]),
        "answers": "\n".join(f"{a}|{b}" for a, b in prompts["answers"]),
    }
    send(w, {"type": "set_prompts", "id": 2, **text, "corrupted": "When Mary"})
    bad = final(w, 2)
    assert bad["type"] == "error" and bad["field"] == "corrupted"
    assert w.experiment.n_pairs == N_PAIRS and w.result_meta["id"] == 1

    send(w, {"type": "set_prompts", "id": 3, **text})
    assert final(w, 3)["type"] == "prompts_set"
    assert w.prompts["clean"] == prompts["clean"]
    assert w.prompts["answers"] == [list(a) for a in prompts["answers"]]
    assert w.prompts["diff_positions"] == w.experiment.diff_positions
    assert w.result_meta == {} and w.experiment.n_pairs == 2


def test_copy_code_reproduces_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    w = make_widget()
    view = {
        "kind": "sweep",
        "site": "attn_out",
        "direction": "noising",
        "layers": [1],
        "positions": None,
        "heads": None,
        "neurons": None,
        "label": "x",
    }
    send(w, {"type": "sweep", "id": 1, **view})
    final(w, 1)
    send(w, {"type": "copy_code", "id": 2, "view": view, "metric": "prob", "normalized": False})
    code = final(w, 2)["code"]
    assert "exp.sweep('attn_out', direction='noising', layers=[1])" in code
    namespace: dict[str, Any] = {"print": lambda *a: None}
    exec(compile(code, "<widget code>", "exec"), namespace)
    np.testing.assert_allclose(
        np.asarray(namespace["res"].values("prob")),
        np.asarray(w.result.values("prob")),
        rtol=1e-5,
    )


def test_save_figure_writes_a_png_in_the_kernel_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    w = make_widget()
    send(w, {"type": "sweep", "id": 1, "site": "resid_pre", "direction": "both"})
    final(w, 1)
    send(
        w,
        {"type": "save_figure", "id": 2, "view_id": 1, "metric": "logit_diff", "normalized": True},
    )
    path = Path(final(w, 2)["path"])
    assert path.parent == tmp_path and path.suffix == ".png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
