"""Loading models and teaching patchwidget a new architecture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import ANSWERS, CLEAN, CORRUPTED, make_model, make_tokenizer

import patchwidget as pw
from patchwidget.architectures import ARCHITECTURES

DEMO_DIR = Path(pw.__file__).parent / "demo" / "model"


def test_a_local_folder_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = pw.load_model(str(DEMO_DIR))
    assert model._module.config._attn_implementation == "eager"
    exp = pw.Experiment(model, **pw.demo_prompts("flip_s2", n=4))
    assert exp.clean_readouts.shape == (4, len(pw.READOUT_FIELDS))
    assert pw.load_model(model) is model  # an nnsight model passes through


def test_load_model_casts_dtype() -> None:
    model = pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer(), dtype="bfloat16")
    assert next(model._module.parameters()).dtype == torch.bfloat16


def test_a_transformers_model_needs_its_tokenizer() -> None:
    with pytest.raises(ValueError, match="tokenizer=tok"):
        pw.load_model(make_model("gpt2"))


def test_unknown_dtype_and_unknown_object_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown dtype"):
        pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer(), dtype="float13")
    with pytest.raises(TypeError, match="hub name or folder"):
        pw.load_model(42)


def test_unknown_architecture_says_how_to_register_and_registering_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hf = make_model("gpt2")
    hf.config.model_type = "my_gpt"
    with pytest.raises(ValueError) as e:
        pw.Experiment(
            pw.load_model(hf, tokenizer=make_tokenizer()),
            clean=CLEAN,
            corrupted=CORRUPTED,
            answers=ANSWERS,
        )
    assert "my_gpt" in str(e.value) and "pw.register_architecture" in str(e.value)

    monkeypatch.setitem(ARCHITECTURES, "my_gpt", dataclasses.replace(ARCHITECTURES["gpt2"]))
    exp = pw.Experiment(
        pw.load_model(hf, tokenizer=make_tokenizer()),
        clean=CLEAN,
        corrupted=CORRUPTED,
        answers=ANSWERS,
    )
    hf.config.model_type = "gpt2"
    reference = pw.Experiment(
        pw.load_model(make_model("gpt2"), tokenizer=make_tokenizer()),
        clean=CLEAN,
        corrupted=CORRUPTED,
        answers=ANSWERS,
    )
    assert np.array_equal(
        exp.sweep("head", progress=False).readouts,
        reference.sweep("head", progress=False).readouts,
    )


def test_register_architecture_adds_a_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("patchwidget.architectures.ARCHITECTURES", dict(ARCHITECTURES))
    arch = pw.Architecture(**{f.name: getattr(ARCHITECTURES["llama"], f.name)
                              for f in dataclasses.fields(pw.Architecture)})  # fmt: skip
    pw.register_architecture("llama_copy", arch)
    from patchwidget import architectures

    config = transformers.LlamaConfig()
    config.model_type = "llama_copy"
    assert architectures.architecture_for(config) == arch
