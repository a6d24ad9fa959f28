"""Models over several devices (device maps) and in half precision."""

from __future__ import annotations

import copy
import types
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ANSWERS, CLEAN, CORRUPTED, _cached_model, engine_model, make_tokenizer

import patchwidget as pw
from patchwidget.models import model_device

SITES = ("resid_pre", "resid_mid", "head", "head_v", "head_pattern", "neuron")
# Largest change of a normalised logit difference against float32 on the tiny test models, whose
# large random weights make patch effects (and rounding) larger than in trained models. Measured
# at most 0.25 (bfloat16) and 0.04 (float16); see README, "Large models".
HALF_TOLERANCE = {"bfloat16": 0.3, "float16": 0.05}


def _experiment(model: Any) -> pw.Experiment:
    return pw.Experiment(model, CLEAN, corrupted=CORRUPTED, answers=ANSWERS)


def test_a_device_map_placing_each_layer_on_the_cpu_patches_like_one_device(
    tmp_path: Any,
) -> None:
    _cached_model("llama_gqa").save_pretrained(tmp_path)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    mapped = pw.load_model(str(tmp_path), tokenizer=make_tokenizer(), device_map=device_map)
    assert {p.device.type for p in mapped._module.parameters()} == {"cpu"}
    got, want = _experiment(mapped), _experiment(engine_model("llama_gqa"))
    for site in SITES:
        for direction in ("denoising", "noising"):
            np.testing.assert_allclose(
                got.sweep(site, direction, progress=False).readouts,
                want.sweep(site, direction, progress=False).readouts,
                atol=1e-5,
                err_msg=f"{site} {direction}",
            )


def _fake_model(devices: list[str], device_map: dict[str, str] | None) -> Any:
    params = [types.SimpleNamespace(device=torch.device(d)) for d in devices]
    return types.SimpleNamespace(parameters=lambda: iter(params), hf_device_map=device_map)


def test_a_model_split_over_devices_needs_a_device_map() -> None:
    with pytest.raises(ValueError) as e:
        model_device(_fake_model(["cuda:0", "cuda:1"], None))
    assert "spread over ['cuda:0', 'cuda:1']" in str(e.value), str(e.value)
    mapped = _fake_model(["cuda:1", "cpu", "cuda:0"], {"model.layers.0": 0})
    assert model_device(mapped) == torch.device("cpu")


def test_device_map_is_refused_where_it_cannot_apply() -> None:
    with pytest.raises(ValueError, match="stay on NDIF"):
        pw.load_model("some/model", remote=True, device_map="auto")
    with pytest.raises(ValueError, match="loading by name"):
        pw.load_model(_cached_model("gpt2"), tokenizer=make_tokenizer(), device_map="auto")


@pytest.mark.parametrize("dtype", list(HALF_TOLERANCE))
@pytest.mark.parametrize("family", ["gpt2", "llama_gqa"])
def test_half_precision_patches_are_finite_and_near_float32(family: str, dtype: str) -> None:
    half = pw.load_model(
        copy.deepcopy(_cached_model(family)), tokenizer=make_tokenizer(), dtype=dtype
    )
    got, want = _experiment(half), _experiment(engine_model(family))
    assert got.info["dtype"] == dtype
    for site in SITES:
        for direction in ("denoising", "noising"):
            a = np.asarray(got.sweep(site, direction, progress=False).values("logit_diff", True))
            b = np.asarray(want.sweep(site, direction, progress=False).values("logit_diff", True))
            assert np.isfinite(a).all(), (site, direction)
            assert np.abs(a - b).max() <= HALF_TOLERANCE[dtype], (site, direction)
