"""Prompts of different lengths in one batch: every padded row equals its pair run alone.

Padding has a history of silent errors (left padding without position ids flips GPT-2's
predictions), so each family's batched, padded readouts are compared with one-pair experiments
on the unpadded prompt, and those with the plain Hugging Face model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, engine_model, make_model, make_tokenizer

import patchwidget as pw

ATOL = 1e-4
# Three pairs of 7, 11 and 13 tokens (with <bos>); clean and corrupted differ at named words.
CLEAN = [
    "w5 w17 w3 w40 w8 w61",
    "w11 w2 w33 w40 w7 w50 w61 w19 w14 w3",
    "w90 w17 w3 w44 w8 w22 w6 w9 w70 w12 w2 w61",
]
CORRUPTED = [
    "w5 w18 w3 w41 w8 w61",
    "w11 w2 w34 w40 w7 w51 w61 w19 w14 w3",
    "w90 w17 w3 w45 w8 w22 w6 w9 w71 w12 w2 w61",
]
ANSWERS = [(" w7", " w9"), (" w12", " w30"), (" w55", " w1")]
POSITIONS = {"X": [4, 3, 4], "Y": [1, 6, 9], "END": -1}
SWEEPS = (
    ("resid_pre", {}),
    ("head", {"positions": ["X", "END"]}),
    ("head_by_pos", {"layers": [1]}),
    ("head_pattern", {"layers": [0]}),
    ("mlp_out", {}),
)


def _experiment(family: str, pairs: list[int], **kwargs) -> pw.Experiment:
    return pw.Experiment(
        engine_model(family),
        clean=[CLEAN[p] for p in pairs],
        corrupted=[CORRUPTED[p] for p in pairs],
        answers=[ANSWERS[p] for p in pairs],
        positions={
            k: [v[p] for p in pairs] if isinstance(v, list) else v for k, v in POSITIONS.items()
        },
        **kwargs,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_rows_equal_each_pair_run_alone(family: str) -> None:
    # batch_size=2 with 3 pairs also splits every patch set's pairs over two forward passes.
    batched = _experiment(family, [0, 1, 2], batch_size=2)
    assert batched.length == 13 and batched.prompts.lengths == (7, 11, 13)
    alone = [_experiment(family, [p]) for p in range(3)]
    for p, one in enumerate(alone):
        np.testing.assert_allclose(batched.clean_readouts[p], one.clean_readouts[0], atol=ATOL)
        np.testing.assert_allclose(
            batched.corrupted_readouts[p], one.corrupted_readouts[0], atol=ATOL
        )
    for site, kwargs in SWEEPS:
        for direction in ("denoising", "noising"):
            got = batched.sweep(site, direction, progress=False, **kwargs)
            assert got.labels.get("pos", ("X", "Y", "END"))[-1] == "END"
            for p, one in enumerate(alone):
                want = one.sweep(site, direction, progress=False, **kwargs)
                np.testing.assert_allclose(
                    got.readouts[..., p, :],
                    want.readouts[..., 0, :],
                    atol=ATOL,
                    err_msg=f"{family} {site} {direction} pair {p}",
                )


@pytest.mark.parametrize("family", FAMILIES)
def test_each_pair_is_read_at_its_own_last_token(family: str) -> None:
    """The clean baseline's logit of the correct answer equals the plain model's at the end."""
    exp = _experiment(family, [0, 1, 2], batch_size=2)
    model, tok = make_model(family), make_tokenizer()
    for p, prompt in enumerate(CLEAN):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1]
        correct = tok(ANSWERS[p][0], add_special_tokens=False)["input_ids"][0]
        assert abs(float(logits[correct]) - exp.clean_readouts[p, 0]) < ATOL


def test_patch_at_a_named_position_patches_each_pairs_own_token() -> None:
    """Patching the residual stream at X everywhere from layer 0 equals running the corrupted
    prompt with the clean token at X, pair by pair (an independent construction)."""
    family = "gpt2"
    exp = _experiment(family, [0, 1, 2], batch_size=2)
    res = exp.patch([pw.Component("resid_pre", 0, pos="X")], "noising")
    model, tok = make_model(family), make_tokenizer()
    for p in range(3):
        ids = tok(CLEAN[p])["input_ids"]
        ids[POSITIONS["X"][p]] = tok(CORRUPTED[p])["input_ids"][POSITIONS["X"][p]]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        correct = tok(ANSWERS[p][0], add_special_tokens=False)["input_ids"][0]
        assert abs(float(logits[correct]) - res.readouts[0, p, 0]) < ATOL
