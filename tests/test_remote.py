"""Remote execution: every request of a ``remote="local"`` model goes through nnsight's local
simulation of NDIF (serialised, deserialised without local modules, run in-process) and must give
the local engine's readouts; the request bodies must not need ``patchwidget`` on the server."""

from __future__ import annotations

import copy
import functools
import importlib.abc
import sys
from typing import Any

import nnsight
import numpy as np
import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, REFERENCE_PROMPTS, _cached_model, make_tokenizer

import patchwidget as pw
from patchwidget.remote import RemoteExecutionError

FAMILIES = ("gpt2", "llama_gqa")
# Local sweeps compute only the positions after each pass's first patch (other matrix shapes than
# a remote run's full passes), so the two agree to float32 rounding: the reference tests' 1e-4.
ATOL = 1e-4
CORRUPTIONS = {
    "counterfactual": {"corrupted": CORRUPTED},
    "gaussian": {"corruption": pw.GaussianNoise(seed=3)},
    "zero": {"corruption": pw.ZeroAblation()},
    "mean": {"corruption": pw.MeanAblation(tuple(REFERENCE_PROMPTS))},
    "resample": {"corruption": pw.ResampleAblation(tuple(REFERENCE_PROMPTS), seed=2)},
}


class _NoPatchwidget(importlib.abc.MetaPathFinder):
    """Makes ``import patchwidget`` fail, as on an NDIF server without it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "patchwidget" or name.startswith("patchwidget."):
            raise ModuleNotFoundError(f"No module named {name!r} (not on the server)")


@pytest.fixture(autouse=True)
def server_without_patchwidget(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Every request is deserialised with ``patchwidget`` unimportable and not shipped whole
    (as NDIF sees a pip-installed patchwidget); records each request's payload size."""
    from cloudpickle import cloudpickle as cp
    from nnsight import ndif
    from nnsight.schema.request import RequestModel

    monkeypatch.setattr(ndif, "pull_env", lambda: None)
    monkeypatch.setattr(
        cp,
        "_PICKLE_BY_VALUE_MODULES",
        {m for m in cp._PICKLE_BY_VALUE_MODULES if m != "patchwidget"},
    )
    sent: list[int] = []
    serialize, deserialize = RequestModel.serialize.__func__, RequestModel.deserialize

    def counting_serialize(cls: Any, tracer: Any, compress: bool = False) -> bytes:
        blob = serialize(cls, tracer, compress)
        sent.append(len(blob))
        return blob

    def blocked_deserialize(blob: bytes, *args: Any, **kwargs: Any) -> Any:
        hidden = {
            n: sys.modules.pop(n)
            for n in list(sys.modules)
            if n == "patchwidget" or n.startswith("patchwidget.")
        }
        blocker = _NoPatchwidget()
        sys.meta_path.insert(0, blocker)
        try:
            return deserialize(blob, *args, **kwargs)
        finally:
            sys.meta_path.remove(blocker)
            sys.modules.update(hidden)

    monkeypatch.setattr(RequestModel, "serialize", classmethod(counting_serialize))
    monkeypatch.setattr(RequestModel, "deserialize", staticmethod(blocked_deserialize))
    return {"sent": sent}


@functools.cache
def _models(family: str) -> tuple[Any, Any]:
    tok = make_tokenizer()
    local = pw.load_model(copy.deepcopy(_cached_model(family)), tokenizer=tok)
    remote = pw.load_model(copy.deepcopy(_cached_model(family)), tokenizer=tok, remote="local")
    return local, remote


def _pair(family: str, corruption: str) -> tuple[pw.Experiment, pw.Experiment]:
    local, remote = _models(family)
    kwargs = CORRUPTIONS[corruption]
    return (
        pw.Experiment(local, CLEAN, answers=ANSWERS, **kwargs),
        pw.Experiment(remote, CLEAN, answers=ANSWERS, **kwargs),
    )


def test_the_fixture_refuses_a_request_that_needs_patchwidget() -> None:
    from patchwidget import hookpoints

    _, model = _models("gpt2")
    with pytest.raises(ModuleNotFoundError, match="patchwidget"):  # noqa: SIM117
        with model.trace(torch.tensor([[0, 5, 6]]), remote="local"):
            block = hookpoints._path(model, "transformer.h")[0]
            out = nnsight.save(block.output)
    assert "out" not in locals()


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_and_direction_equals_the_local_run(family: str, corruption: str) -> None:
    local, remote = _pair(family, corruption)
    assert remote.remote == "local" and not local.remote
    np.testing.assert_allclose(remote.clean_readouts, local.clean_readouts, atol=ATOL)
    np.testing.assert_allclose(remote.corrupted_readouts, local.corrupted_readouts, atol=ATOL)
    if corruption == "gaussian":
        torch.testing.assert_close(remote.noise, local.noise, atol=ATOL, rtol=0)
    assert remote.directions == local.directions
    checked = 0
    for site, reason in local.available_sites().items():
        if reason:
            continue
        for direction in local.directions:
            want = local.sweep(site, direction, progress=False)
            got = remote.sweep(site, direction, progress=False)
            assert got.axes == want.axes and got.labels == want.labels, site
            np.testing.assert_allclose(
                got.readouts, want.readouts, atol=ATOL, err_msg=f"{site} {direction}"
            )
            checked += 1
    assert checked == 12 * len(local.directions)


def _components() -> list[pw.Component]:
    return [
        pw.Component("head", 1, head=2),
        pw.Component("head_k", 0, head=1, pos=4),
        pw.Component("mlp_out", 0, pos=6),
        pw.Component("neuron", 1, neuron=7),
        pw.Component("head_pattern", 1, head=0),
    ]


@pytest.mark.parametrize("corruption", ["counterfactual", "mean"])
@pytest.mark.parametrize("family", FAMILIES)
def test_confirmatory_patches_and_circuits_equal_the_local_run(
    family: str, corruption: str
) -> None:
    local, remote = _pair(family, corruption)
    for direction in local.directions:
        want = local.patch(_components(), direction)
        got = remote.patch(_components(), direction)
        np.testing.assert_allclose(got.readouts, want.readouts, atol=ATOL)
    restricted = {"layers": [1], "heads": [0, 3], "positions": [2, 5]}  # positions patched together
    np.testing.assert_allclose(
        remote.sweep("head", local.directions[-1], progress=False, **restricted).readouts,
        local.sweep("head", local.directions[-1], progress=False, **restricted).readouts,
        atol=ATOL,
    )
    with pytest.warns(pw.PatchingWarning, match="no complement"):  # a head and a head_k cell
        want_c = local.circuit(_components()[:2])
    with pytest.warns(pw.PatchingWarning, match="no complement"):
        got_c = remote.circuit(_components()[:2])
    assert got_c.results.keys() == want_c.results.keys()
    for key, result in want_c.results.items():
        np.testing.assert_allclose(got_c.results[key].readouts, result.readouts, atol=ATOL)


def test_a_sweep_is_one_request_and_only_readouts_come_back(
    server_without_patchwidget: dict[str, list[int]],
) -> None:
    prompts = pw.demo_prompts("flip_s2", n=2)
    exp = pw.Experiment(pw.load_model(pw.demo_model(), remote="local"), **prompts)
    sent = server_without_patchwidget["sent"]
    assert len(sent) == exp._remote.stats.requests == 1  # the baselines
    before = exp._remote.stats.returned_bytes
    res = exp.sweep("head_by_pos", "denoising", progress=False)
    assert len(sent) == exp._remote.stats.requests == 2
    back = exp._remote.stats.returned_bytes - before
    d = exp.dims
    readout_bytes = res.readouts.size * 4
    assert res.readouts.shape == (d.n_layers, d.n_heads, exp.length, 2, 6)
    # What comes back is the readouts (plus torch.save's framing), not the patched runs' logits
    # (or activations, which the sources stay as on the server).
    logits_bytes = res.readouts[..., 0].size * d.vocab_size * 4
    assert readout_bytes <= back < readout_bytes + 2048, back
    assert back * 10 < logits_bytes
    # Masks travel as patched cells and sources never travel: the request is small.
    assert sent[-1] < 200_000, sent[-1]


def test_cancel_and_progress_between_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchwidget import remote as remote_module

    _, remote = _pair("gpt2", "counterfactual")
    monkeypatch.setattr(remote_module, "ROWS_PER_REQUEST", 3 * 6)  # 6 patch sets a request
    seen: list[tuple[int, int, bool]] = []
    statuses: list[str] = []
    remote._remote.on_status = statuses.append

    def on_progress(done: int, total: int, partial: Any) -> None:
        seen.append((done, total, partial.complete))

    remote.batch_size = 6  # rows: 2 patch sets of 3 pairs per forward pass
    res = remote.sweep("resid_pre", on_progress=on_progress, progress=False)
    assert res.complete
    assert seen == [(6, 20, False), (12, 20, False), (18, 20, False), (20, 20, True)]
    assert statuses[-2:] == ["RUNNING", "COMPLETED"]
    requests = remote._remote.stats.requests
    res = remote.sweep("resid_pre", cancel=lambda: remote._remote.stats.requests > requests,
                       progress=False)  # fmt: skip
    assert not res.complete
    flat = res.readouts.reshape(20, 3, 6)  # (layer × position, pairs, fields)
    assert np.isfinite(flat[:6]).all() and np.isnan(flat[6:]).all()
    assert remote._remote.stats.requests == requests + 1


def test_remote_true_needs_a_served_model_name() -> None:
    with pytest.raises(ValueError, match="hub id"):
        pw.load_model(_cached_model("gpt2"), tokenizer=make_tokenizer(), remote=True)
    with pytest.raises(ValueError, match="remote must be"):
        pw.load_model(_cached_model("gpt2"), tokenizer=make_tokenizer(), remote="yes")


def _served_model(folder: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A remote=True model of the tiny GPT-2 (built on the meta device from its folder), keyed
    as if NDIF served it under a hub id."""
    from nnsight import TransformersModel
    from nnsight.modeling import huggingface

    _cached_model("gpt2").save_pretrained(folder)
    meta = TransformersModel(
        str(folder),
        dispatch=False,
        tokenizer=make_tokenizer(),
        task="text-generation",
        attn_implementation="eager",
    )
    monkeypatch.setitem(huggingface._ID_CACHE, str(folder), "openai-community/gpt2")
    return pw.load_model(meta, remote=True)


def test_a_remote_model_is_built_without_weights_and_server_errors_are_explained(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnsight.intervention.backends.remote import RemoteBackend, RemoteError

    with pytest.raises(ValueError, match="local folder"):
        pw.load_model(str(tmp_path), remote=True)
    model = _served_model(tmp_path, monkeypatch)
    assert {p.device.type for p in model._module.parameters()} == {"meta"}
    sent: list[str] = []

    def refuse(self: Any, request: Any, tracer: Any) -> None:
        sent.append(request.model_key)
        raise RemoteError("Model key not found: the model is not deployed")

    monkeypatch.setattr(RemoteBackend, "request", refuse)
    with pytest.raises(RemoteExecutionError, match="does not serve this model"):
        pw.Experiment(model, CLEAN, corrupted=CORRUPTED, answers=ANSWERS)
    assert len(sent) == 1 and "openai-community/gpt2" in sent[0], sent

    def queue_full(self: Any, request: Any, tracer: Any) -> None:
        raise RemoteError("Queue is full, please try again later")

    monkeypatch.setattr(RemoteBackend, "request", queue_full)
    with pytest.raises(RemoteExecutionError, match="queue is full"):
        pw.Experiment(model, CLEAN, corrupted=CORRUPTED, answers=ANSWERS)


def test_the_command_line_runs_remotely_and_reports_server_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnsight.intervention.backends.remote import RemoteBackend, RemoteError

    from patchwidget import cli

    out = tmp_path / "head.png"
    args = ["sweep", "--site", "head", "--quiet", "--out", str(out)]
    assert cli.main([*args, "--pairs", "2", "--remote", "local"]) == 0
    assert out.exists() and "L" in capsys.readouterr().out

    def failed(self: Any, request: Any, tracer: Any) -> None:
        raise RemoteError("CUDA out of memory while running the request")

    monkeypatch.setattr(RemoteBackend, "request", failed)
    from patchwidget import models

    served = _served_model(tmp_path / "model", monkeypatch)
    monkeypatch.setattr(models, "load_model", lambda name, **kw: served)
    own = ["--clean", CLEAN[0], "--corrupted", CORRUPTED[0], "--answers", "|".join(ANSWERS[0])]
    code = cli.main([*args, "--model", str(tmp_path / "model"), *own, "--remote", "ndif"])
    err = capsys.readouterr().err
    assert code == 2 and "remote job failed on NDIF" in err and "out of memory" in err, err


def test_the_progress_bar_shows_the_job_status(monkeypatch: pytest.MonkeyPatch) -> None:
    from patchwidget import remote as remote_module

    class Bar:
        def __init__(self) -> None:
            self.postfixes: list[str] = []
            self.n = 0
            self.closed = False

        def set_postfix_str(self, text: str) -> None:
            self.postfixes.append(text)

        def update(self, n: int) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    bars: list[Bar] = []
    monkeypatch.setattr(
        remote_module, "_progress_bar", lambda total, request: bars.append(Bar()) or bars[-1]
    )
    _, remote = _pair("gpt2", "counterfactual")
    remote.sweep("head", "denoising")  # one request, and still a bar
    (bar,) = bars
    assert bar.postfixes == ["running", "completed"] and bar.n == 8 and bar.closed


def test_attribution_estimates_are_refused_on_a_remote_model() -> None:
    _, remote = _pair("gpt2", "counterfactual")
    with pytest.raises(ValueError, match="method='exact'"):
        remote.sweep("head", method="attribution", progress=False)
