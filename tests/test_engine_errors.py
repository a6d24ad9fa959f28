"""Bad input is refused with a message that says what is wrong and how to fix it."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, engine_model, make_model, make_tokenizer

import patchwidget as pw


def _experiment(family: str = "gpt2", **kw):
    args = {"clean": CLEAN, "corrupted": CORRUPTED, "answers": ANSWERS, **kw}
    return pw.Experiment(engine_model(family), **args)


def _message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_token_length_mismatch_shows_both_tokenisations() -> None:
    with pytest.raises(ValueError) as e:
        _experiment(clean=["w1 w2 w3 w5"], corrupted=["w1 w2 w3 w4 w5"], answers=[(" w7", " w9")])
    msg = _message(e)
    assert "5" in msg and "6" in msg, msg  # both token counts (with <bos>)
    for token in ("w1", "w2", "w3", "w4", "w5"):
        assert token in msg, msg
    assert re.search(r"position 4", msg, re.IGNORECASE), msg
    # the first difference (clean 'w5' vs corrupted 'w4' at position 4) is marked
    marked = re.findall(r">>\s*'?(w\d+)'?\s*<<", msg)
    assert set(marked) == {"w5", "w4"}, msg


def test_answer_that_is_not_a_single_token_shows_the_split() -> None:
    with pytest.raises(ValueError) as e:
        _experiment(answers=[(" w7 w9", " w1"), *ANSWERS[1:]])
    msg = _message(e)
    assert "w7 w9" in msg and "single token" in msg, msg
    assert re.search(r"w7'?\s*[,+]\s*'?w9", msg), f"split not shown: {msg}"


def test_same_correct_and_incorrect_answer_is_refused() -> None:
    with pytest.raises(ValueError) as e:
        _experiment(answers=[(" w7", " w7"), *ANSWERS[1:]])
    msg = _message(e)
    assert "w7" in msg and "same" in msg, msg


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_refused(prompt: str) -> None:
    with pytest.raises(ValueError) as e:
        _experiment(clean=[prompt, *CLEAN[1:]])
    assert "empty" in _message(e), _message(e)


def test_unknown_site_lists_the_valid_sites() -> None:
    exp = _experiment()
    with pytest.raises(ValueError) as e:
        exp.sweep("residual", progress=False)
    msg = _message(e)
    assert "residual" in msg
    for site in pw.SITES:
        assert site in msg, msg
    with pytest.raises(ValueError, match="valid sites"):
        pw.Component("attn", 0)


@pytest.mark.parametrize(
    ("site", "kw", "words"),
    [
        ("resid_pre", {"layers": [2]}, ("layer", "2")),
        ("resid_pre", {"layers": [-3]}, ("layer", "-3")),
        ("head", {"heads": [4]}, ("head", "4")),
        ("resid_post", {"positions": [10]}, ("position", "10")),
        ("neuron", {"neurons": [64]}, ("neuron", "64")),
        ("head_by_pos", {"positions": [0, 12]}, ("position", "12")),
    ],
)
def test_sweep_index_out_of_range(site: str, kw: dict, words: tuple[str, ...]) -> None:
    exp = _experiment()
    with pytest.raises(ValueError) as e:
        exp.sweep(site, progress=False, **kw)
    msg = _message(e)
    assert "range" in msg, msg
    for w in words:
        assert w in msg, msg


def test_kv_head_out_of_range_under_grouped_query_attention() -> None:
    exp = _experiment("llama_gqa")
    assert len(exp.sweep("head_k", progress=False).coords["head"]) == 2
    with pytest.raises(ValueError) as e:
        exp.sweep("head_v", heads=[2], progress=False)
    assert "head" in _message(e) and "2" in _message(e), _message(e)


@pytest.mark.parametrize(
    ("component", "word"),
    [
        (dict(site="head", layer=2, head=0), "layer"),
        (dict(site="head", layer=0, head=7), "head"),
        (dict(site="mlp_out", layer=1, pos=11), "position"),
        (dict(site="neuron", layer=0, neuron=100), "neuron"),
    ],
)
def test_patch_component_out_of_range(component: dict, word: str) -> None:
    exp = _experiment()
    with pytest.raises(ValueError) as e:
        exp.patch([pw.Component(**component)])
    assert word in _message(e) and "range" in _message(e), _message(e)


@pytest.mark.parametrize("family", ["neox_parallel", "gptj"])
def test_resid_mid_is_refused_on_parallel_blocks(family: str) -> None:
    exp = _experiment(family)
    reason = exp.available_sites()["resid_mid"]
    assert reason and "parallel" in reason, reason
    assert all(r is None for s, r in exp.available_sites().items() if s != "resid_mid")
    for call in (
        lambda: exp.sweep("resid_mid", progress=False),
        lambda: exp.patch([pw.Component("resid_mid", 0)]),
    ):
        with pytest.raises(ValueError) as e:
            call()
        assert "resid_mid" in _message(e) and "parallel" in _message(e), _message(e)


@pytest.mark.parametrize("family", ["neox_sequential", "gemma2"])
def test_resid_mid_is_available_on_sequential_blocks(family: str) -> None:
    assert _experiment(family).available_sites()["resid_mid"] is None


@pytest.mark.parametrize("corruption", [pw.ZeroAblation(), pw.ResampleAblation(CLEAN[:1])])
def test_denoising_with_an_ablation_is_refused(corruption) -> None:
    exp = pw.Experiment(engine_model("gpt2"), clean=CLEAN, answers=ANSWERS, corruption=corruption)
    with pytest.raises(ValueError) as e:
        exp.sweep("head", direction="denoising", progress=False)
    msg = _message(e)
    assert "noising" in msg and type(corruption).__name__ in msg, msg
    with pytest.raises(ValueError):
        exp.patch([pw.Component("head", 0, head=0)], direction="denoising")
    exp.patch([pw.Component("head", 0, head=0)], direction="noising")  # the supported one works


def test_unknown_direction_is_refused() -> None:
    with pytest.raises(ValueError) as e:
        _experiment().sweep("head", direction="sideways", progress=False)
    msg = _message(e)
    assert "sideways" in msg and "denoising" in msg and "noising" in msg, msg


def test_corrupted_prompts_and_a_corruption_together_are_refused() -> None:
    with pytest.raises(ValueError) as e:
        _experiment(corruption=pw.GaussianNoise())
    assert "corrupted" in _message(e) and "not both" in _message(e), _message(e)


def test_model_on_the_meta_device_is_refused() -> None:
    model = make_model("gpt2").to("meta")
    with pytest.raises(ValueError) as e:
        pw.Experiment(pw.load_model(model, tokenizer=make_tokenizer()), clean=CLEAN,
                      corrupted=CORRUPTED, answers=ANSWERS)  # fmt: skip
    assert "meta" in _message(e), _message(e)


def test_nan_in_the_model_outputs_is_reported() -> None:
    model = make_model("gpt2")
    with torch.no_grad():
        model.transformer.ln_f.weight[3] = float("nan")
    with pytest.raises(FloatingPointError) as e:
        pw.Experiment(pw.load_model(model, tokenizer=make_tokenizer()), clean=CLEAN,
                      corrupted=CORRUPTED, answers=ANSWERS)  # fmt: skip
    msg = _message(e)
    assert "NaN" in msg and "clean" in msg, msg


def test_mean_ablation_of_patterns_needs_reference_prompts_of_the_prompt_length() -> None:
    corruption = pw.MeanAblation(["w1 w2"])
    exp = pw.Experiment(
        engine_model("llama_gqa"), clean=CLEAN, answers=ANSWERS, corruption=corruption
    )
    with pytest.raises(ValueError) as e:
        exp.sweep("head_pattern", direction="noising", progress=False)
    assert "pattern" in _message(e) and "length" in _message(e), _message(e)


def test_mismatched_counts_are_refused() -> None:
    with pytest.raises(ValueError) as e:
        _experiment(corrupted=CORRUPTED[:2])
    assert "3 clean" in _message(e) and "2 corrupted" in _message(e), _message(e)
    with pytest.raises(ValueError) as e:
        _experiment(answers=ANSWERS[:2])
    assert "2 answer" in _message(e) and "3 prompt" in _message(e), _message(e)
