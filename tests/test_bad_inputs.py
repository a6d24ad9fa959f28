"""Bad or misleading input to the API and the command line: one clear message each, before any
work starts; inputs that run but mislead get a ``PatchingWarning``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, engine_model, make_model, make_tokenizer

import patchwidget as pw
from patchwidget import checks
from patchwidget.checks import PatchingWarning
from patchwidget.cli import commands as cli


def _experiment(**kw):
    args = {"clean": CLEAN, "corrupted": CORRUPTED, "answers": ANSWERS, **kw}
    return pw.Experiment(engine_model("gpt2"), **args)


@pytest.fixture(scope="module")
def exp() -> pw.Experiment:
    return _experiment()


def test_clean_none_is_refused() -> None:
    with pytest.raises(ValueError, match="clean prompts are required"):
        _experiment(clean=None)


def test_prompt_longer_than_the_context_is_refused() -> None:
    long = " ".join(f"w{i % 90}" for i in range(70))  # 71 tokens; the model reads 64
    with pytest.raises(ValueError, match="have 71 tokens but this model reads at most 64"):
        _experiment(clean=[long], corrupted=[long.replace("w5", "w6")], answers=ANSWERS[:1])


@pytest.mark.parametrize(
    ("device", "message"),
    [("tpu9", "unknown device 'tpu9'"), ("cuda:99", "cuda:99")],
)
def test_bad_devices_are_refused(device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer(), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(ValueError, match="'cuda' is not available on this machine"):
        pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer(), device="cuda")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layers": 1.0}, TypeError, "layers must be a list of integers"),
        ({"layers": "01"}, TypeError, "layers must be a list of integers"),
        ({"layers": [1, 1]}, ValueError, "layers lists 1 twice"),
        ({"neurons": [0]}, ValueError, "site 'resid_pre' has no neurons"),
        ({"heads": [0]}, ValueError, "site 'resid_pre' has no heads"),
        ({"positions": [15]}, ValueError, "the prompts have 10 tokens"),
    ],
)
def test_bad_sweep_restrictions(
    exp: pw.Experiment, kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        exp.sweep("resid_pre", progress=False, **kwargs)


def test_batch_size_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="batch_size must be a positive integer"):
        _experiment(batch_size="8")


def test_patch_takes_a_list_and_a_circuit_is_not_empty(exp: pw.Experiment) -> None:
    with pytest.raises(TypeError, match=r"exp.patch\(\[component\]\)"):
        exp.patch(pw.Component("head", 0, head=1))
    with pytest.raises(ValueError, match="the circuit is empty"):
        exp.circuit([])


def test_model_folder_without_tokenizer_files(tmp_path: Path) -> None:
    make_model("gpt2").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no tokenizer files"):
        pw.load_model(str(tmp_path))


@pytest.mark.parametrize("std", [float("inf"), float("nan"), -1.0, 0])
def test_gaussian_noise_needs_a_finite_positive_std(std: float) -> None:
    with pytest.raises(ValueError, match="finite positive number"):
        pw.GaussianNoise(std=std)


def test_damaged_or_foreign_result_files(exp: pw.Experiment, tmp_path: Path) -> None:
    good = exp.sweep("attn_out", progress=False).save(tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("not numpy")
    np.savez(tmp_path / "other.npz", readouts=np.zeros(3))
    header = json.loads(str(np.load(good)["header"]))
    header["readout_fields"] = ["logit_diff"]
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(tmp_path / "older.npz", **{**arrays, "header": np.array(json.dumps(header))})
    for name in ("truncated", "text", "other"):
        with pytest.raises(ValueError, match="not a PatchResult file saved by this patchwidget"):
            pw.PatchResult.load(tmp_path / f"{name}.npz")
    with pytest.raises(ValueError, match="saved by another patchwidget version"):
        pw.PatchResult.load(tmp_path / "older.npz")


def test_unknown_words_warn_and_unknown_answers_are_refused() -> None:
    with pytest.warns(PatchingWarning, match=r"clean prompt of pair 2 .* become '<unk>'"):
        _experiment(clean=[CLEAN[0], CLEAN[1].replace("w11", "w500"), CLEAN[2]])
    with pytest.raises(ValueError, match="answer ' w500' is not in the tokenizer's vocabulary"):
        _experiment(answers=[(" w500", " w9"), *ANSWERS[1:]])


def test_identical_clean_and_corrupted_prompts_warn_at_once() -> None:
    with pytest.warns(PatchingWarning, match="the same in pair 2"):
        _experiment(corrupted=[CORRUPTED[0], CLEAN[1], CORRUPTED[2]])


def test_clean_prompts_give_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PatchingWarning)
        _experiment()


def test_a_long_sweep_warns_with_an_estimate_before_it_starts(
    exp: pw.Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "LONG_SWEEP_S", 1e-6)
    ran = []
    monkeypatch.setattr(exp.engine, "forward", lambda *a, **k: ran.append(1) or pytest.fail())
    long = r"runs 384 patched forward passes: about \d"  # 2 layers x 64 neurons x 3 pairs
    with pytest.warns(PatchingWarning, match=long), pytest.raises(pytest.fail.Exception):
        exp.sweep("neuron", progress=False)
    assert len(ran) == 1


def test_nan_in_one_batch_keeps_every_other_patch(exp: pw.Experiment) -> None:
    clean = exp.sweep("attn_out", progress=False)
    forward = exp.engine.forward
    calls = []

    def poisoned(ids, noise=None, plan=None, **kwargs):
        logits, saved = forward(ids, noise, plan, **kwargs)
        if plan is not None:
            calls.append(1)  # patched passes only (base runs and cost timing pass no plan)
        if plan is not None and len(calls) == 2:
            logits = logits.clone()
            logits[1] = float("nan")  # the batch's first patch, pair 2
        return logits, saved

    exp.engine.forward = poisoned
    try:
        with pytest.warns(PatchingWarning, match=r"that cell is NaN"):
            res = _sweep_in_batches(exp)
    finally:
        del exp.engine.forward
    bad = ~np.isfinite(res.readouts).all(axis=-1)
    assert bad.sum() == 1 and len(res.metadata["nonfinite"]) == 1
    assert "pair 2" in res.metadata["nonfinite"][0]
    # other groupings of the same patches: equal up to float32 rounding
    np.testing.assert_allclose(res.readouts[~bad], clean.readouts[~bad], atol=1e-5)
    assert res.complete


def _sweep_in_batches(exp: pw.Experiment) -> pw.PatchResult:
    saved = exp.batch_size
    exp.batch_size = exp.n_pairs * 2
    try:
        return exp.sweep("attn_out", progress=False)
    finally:
        exp.batch_size = saved


# ---- command line ---------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_cli_prompts_file_with_bad_answers(capsys, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"clean": ["When Mary"], "corrupted": ["When John"], "answers": 5}))
    code, err = _cli(capsys, "sweep", "--prompts", str(path), "--out", str(tmp_path / "x.png"))
    assert code == 2 and '"answers" must be a list of [correct, incorrect] pairs' in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_json_into_a_folder_fails_before_the_figure(capsys, tmp_path: Path) -> None:
    figure = tmp_path / "x.png"
    code, err = _cli(capsys, "sweep", "--out", str(figure), "--json", str(tmp_path))
    assert code == 2 and "it is a folder" in err and not figure.exists()


def test_cli_notes_unknown_words_in_one_line_each(capsys, tmp_path: Path) -> None:
    code = cli.main(
        [
            "sweep",
            "--clean",
            "When Mary and John went to the store, John gave a drink to",
            "--corrupted",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answers",
            " Mary| John",
            "--layers",
            "0",
            "--quiet",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    notes = err.strip().splitlines()
    assert len(notes) == 2 and all(n.startswith("patchwidget sweep: note: ") for n in notes)
    assert "'<unk>' (at position 8)" in notes[0]
