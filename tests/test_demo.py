"""The bundled demo model and its prompts (plain transformers, no patching engine)."""

from __future__ import annotations

import json

import pytest
import torch

from patchwidget.demo import DEMO_CORRUPTIONS, MODEL_DIR, demo_prompts, load_demo_hf
from patchwidget.demo.prompts import (
    FIRST_NAME_POS,
    NAMES,
    PROMPT_LEN,
    S2_POS,
    SECOND_NAME_POS,
    TEMPLATES,
    heldout_eval_prompts,
    name_pair_split,
)

EXPECTED_DIFF = {
    "flip_s2": {S2_POS},
    "abc": {FIRST_NAME_POS, SECOND_NAME_POS, S2_POS},
}


@pytest.fixture(scope="module")
def demo():
    return load_demo_hf()


def tokens(tokenizer, texts: list[str]) -> list[list[str]]:
    return [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(texts).input_ids]


def test_shipped_files_are_small_and_configured(demo):
    model, _ = demo
    assert (MODEL_DIR / "model.safetensors").stat().st_size < 2_000_000
    cfg = model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions) == (3, 4, 64, 32)
    assert cfg._attn_implementation == "eager"
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert not model.training


def test_heldout_accuracy_and_logit_diff_match_report(demo):
    model, tok = demo
    prompts = heldout_eval_prompts()
    ids = tok([p.text() for p in prompts], return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, -1]
    io = torch.tensor(tok.convert_tokens_to_ids([p.io for p in prompts]))
    s = torch.tensor(tok.convert_tokens_to_ids([p.s for p in prompts]))
    rows = torch.arange(len(prompts))
    accuracy = (logits.argmax(-1) == io).float().mean().item()
    diff = logits[rows, io] - logits[rows, s]
    assert len(prompts) == 2088
    assert accuracy >= 0.99
    assert diff.mean().item() > 5.0
    report = json.loads((MODEL_DIR / "training_report.json").read_text())["heldout"]
    assert report["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert report["logit_diff_mean"] == pytest.approx(diff.mean().item(), abs=1e-3)


def test_tokenizer_round_trips_and_answers_are_single_tokens(demo):
    _, tok = demo
    text = "When Mary and John went to the store , John gave a drink to"
    ids = tok(text).input_ids
    assert len(ids) == PROMPT_LEN
    assert tok.convert_ids_to_tokens(ids)[0] == tok.bos_token
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.unk_token_id not in ids
    for name in NAMES:
        assert tok(f" {name}", add_special_tokens=False).input_ids == [
            tok.convert_tokens_to_ids(name)
        ]


@pytest.mark.parametrize("corruption", list(DEMO_CORRUPTIONS))
def test_demo_prompts_align_and_differ_where_expected(demo, corruption):
    _, tok = demo
    data = demo_prompts(corruption, n=24, seed=3)
    clean, corrupted = tokens(tok, data["clean"]), tokens(tok, data["corrupted"])
    assert len(clean) == len(corrupted) == len(data["answers"]) == 24
    heldout = {frozenset(p) for p in name_pair_split()[1]}
    for c, k, (correct, incorrect) in zip(clean, corrupted, data["answers"], strict=True):
        assert len(c) == len(k) == PROMPT_LEN
        io_pos = FIRST_NAME_POS if c[FIRST_NAME_POS] == correct.strip() else SECOND_NAME_POS
        assert c[io_pos] == correct.strip() and c[S2_POS] == incorrect.strip()
        assert frozenset((correct.strip(), incorrect.strip())) in heldout
        diff = {i for i, (a, b) in enumerate(zip(c, k, strict=True)) if a != b}
        assert diff == EXPECTED_DIFF.get(corruption, {io_pos})
        if corruption == "flip_s2":
            assert k[S2_POS] == correct.strip()
        if corruption == "abc":
            names = {k[FIRST_NAME_POS], k[SECOND_NAME_POS], k[S2_POS]}
            assert len(names) == 3 and not names & {c[FIRST_NAME_POS], c[SECOND_NAME_POS]}
    assert {c[1] for c in clean} == {t.split()[0] for t in TEMPLATES}
    io_first = [
        c[FIRST_NAME_POS] == a.strip() for c, (a, _) in zip(clean, data["answers"], strict=True)
    ]
    assert set(io_first) == {True, False}  # both ABBA and BABA


def test_demo_prompts_are_deterministic_by_seed_and_template():
    assert demo_prompts("abc", n=8, seed=1) == demo_prompts("abc", n=8, seed=1)
    assert demo_prompts("abc", n=8, seed=1) != demo_prompts("abc", n=8, seed=2)
    only = demo_prompts("new_io", n=6, template=2)
    assert all(t.startswith(TEMPLATES[2].split()[0] + " ") for t in only["clean"])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="flip_s2, new_io, abc"):
        demo_prompts("swap")
    with pytest.raises(ValueError, match="template"):
        demo_prompts(template=len(TEMPLATES))
    with pytest.raises(ValueError, match="n must"):
        demo_prompts(n=0)
