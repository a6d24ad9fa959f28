"""Named positions from token indices, from words found through offsets, and from marked text."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import transformers
from conftest import engine_model, make_tokenizer
from tokenizers import Tokenizer, models, pre_tokenizers

import patchwidget as pw
from patchwidget.positions import Word, resolve, strip_marks, unmark

CLEAN = ["w1 w2 w3 w4 w5", "w6 w7 w8 w9 w2 w10 w11 w12"]


def _resolve(positions, clean=CLEAN, tokenizer=None):
    tok = tokenizer or make_tokenizer()
    return resolve(tok, clean, [tok(p)["input_ids"] for p in clean], positions)


@functools.cache
def char_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """One token per character (so a word is several tokens), with character offsets."""
    chars = " abcdefghijklmnopqrstuvwxyzJMW"
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok)


def test_indices_count_from_the_start_or_the_end_of_each_prompt() -> None:
    got = _resolve({"A": [1, 2], "END": -1, "PEN": [-2, -2]})
    # <bos> is token 0, so the prompts have 6 and 9 tokens.
    assert got == {"A": (1, 2), "END": (5, 8), "PEN": (4, 7)}


def test_words_are_found_by_offsets() -> None:
    got = _resolve({"W": ["w3", "w10"], "TWO": "w2"})
    assert got == {"W": (3, 6), "TWO": (2, 5)}


def test_words_match_whole_words_only() -> None:
    # "w1" is a prefix of "w10"/"w11"/"w12" in the second prompt but only a whole word counts.
    with pytest.raises(ValueError, match=r"'w1' is not in the prompt 'w6 w7"):
        _resolve({"A": "w1"})


def test_a_word_found_twice_needs_an_occurrence() -> None:
    clean = ["w1 w2 w1 w3"]
    with pytest.raises(ValueError, match=r"occurs 2 times in the prompt 'w1 w2 w1 w3'.*occurrence"):
        _resolve({"S": "w1"}, clean)
    got = _resolve({"S1": Word("w1", occurrence=0), "S2": Word("w1", occurrence=1)}, clean)
    assert got == {"S1": (1,), "S2": (3,)}


def test_multi_token_word_uses_its_last_token_unless_told() -> None:
    tok = char_tokenizer()
    clean = ["When Mary and John"]
    assert tok(clean[0])["input_ids"][5:9] == [tok.convert_tokens_to_ids(c) for c in "Mary"]
    got = _resolve({"IO": "Mary", "IO_first": Word("Mary", token=0)}, clean, tok)
    assert got == {"IO": (8,), "IO_first": (5,)}


def test_bad_specs_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match=r"'A' = 6 is outside the prompt 'w1 w2 w3 w4 w5'.*6 tokens"
    ):
        _resolve({"A": [6, 0]})
    with pytest.raises(ValueError, match=r"3 entries for 2 prompt pairs"):
        _resolve({"A": [1, 2, 3]})
    with pytest.raises(TypeError, match=r"expected a token index, a word or pw.Word"):
        _resolve({"A": [1.5, 2]})
    with pytest.raises(ValueError, match=r"occurrence 2 of 'w2'"):
        _resolve({"A": Word("w2", occurrence=2)})


def test_marks_are_stripped_and_give_spans() -> None:
    text, spans = strip_marks("When [IO:Mary] and [S1:John] went, [S2:John] gave")
    assert text == "When Mary and John went, John gave"
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {
        "IO": "Mary",
        "S1": "John",
        "S2": "John",
    }
    assert spans["S1"] != spans["S2"]


def test_marks_must_name_the_same_positions_in_every_prompt() -> None:
    with pytest.raises(ValueError, match=r"must mark the same names.*'w1 \[A:w2\] w3' marks A$"):
        unmark(["[A:w1] [B:w2]", "w1 [A:w2] w3"])
    with pytest.raises(ValueError, match=r"has no marks"):
        unmark(["w1 w2"])
    with pytest.raises(ValueError, match=r"marked twice"):
        strip_marks("[A:w1] [A:w2]")


# ---- on an experiment ---------------------------------------------------------------------------
def _exp(**kwargs) -> pw.Experiment:
    args = {
        "clean": ["w5 w17 w3 w40 w8", "w11 w2 w33 w40 w7 w50 w61"],
        "corrupted": ["w5 w17 w4 w40 w8", "w11 w2 w34 w40 w7 w50 w61"],
        "answers": [(" w7", " w9"), (" w12", " w30")],
    }
    return pw.Experiment(engine_model("gpt2"), **{**args, **kwargs})


def test_unequal_lengths_without_names_explain_named_positions() -> None:
    with pytest.raises(ValueError, match=r"pair 1: 6, pair 2: 8.*positions=\{'S2'.*'marked'"):
        _exp()


def test_the_three_ways_of_naming_give_the_same_experiment() -> None:
    by_index = _exp(positions={"X": [3, 3], "END": -1})
    by_word = _exp(positions={"X": ["w3", "w33"], "END": [-1, -1]})
    marked = _exp(
        clean=["w5 w17 [X:w3] w40 w8", "w11 w2 [X:w33] w40 w7 w50 w61"],
        corrupted=["w5 w17 [X:w4] w40 w8", "w11 w2 w34 w40 w7 w50 w61"],
        positions="marked",
    )
    assert marked.prompts.clean == by_index.prompts.clean
    assert marked.prompts.corrupted == by_index.prompts.corrupted
    assert marked.named_positions == {"X": (3, 3)}
    assert by_word.named_positions == by_index.named_positions == {"X": (3, 3), "END": (5, 7)}
    assert by_index.position_labels == ["X", "END"]
    assert by_index.diff_positions == [0]  # X differs in both pairs, END in neither
    a = by_index.sweep("resid_pre", progress=False)
    b = by_word.sweep("resid_pre", progress=False)
    np.testing.assert_array_equal(a.readouts, b.readouts)
    assert a.labels["pos"] == ("X", "END")


def test_sweeps_and_components_take_names() -> None:
    exp = _exp(positions={"X": [3, 3], "END": -1})
    full = exp.sweep("resid_pre", progress=False)
    only = exp.sweep("resid_pre", positions=["END"], progress=False)
    assert only.labels["pos"] == ("END",)
    np.testing.assert_array_equal(only.readouts[:, 0], full.readouts[:, 1])
    by_name = exp.patch([pw.Component("resid_pre", 1, pos="X")])
    by_index = exp.patch([pw.Component("resid_pre", 1, pos=0)])
    np.testing.assert_array_equal(by_name.readouts, by_index.readouts)
    np.testing.assert_allclose(by_name.readouts[0], full.readouts[1, 0], atol=1e-5)
    with pytest.raises(ValueError, match=r"unknown position name 'S2'; named positions: X, END"):
        exp.sweep("resid_pre", positions=["S2"], progress=False)


def test_ablations_that_need_one_length_refuse_several() -> None:
    with pytest.raises(ValueError, match=r"MeanAblation .* needs prompts of one length"):
        _exp(corrupted=None, corruption=pw.MeanAblation(), positions={"END": -1})


def test_features_that_read_token_positions_refuse_named_positions() -> None:
    exp = _exp(positions={"X": [3, 3], "END": -1})
    with pytest.raises(ValueError, match="attention patterns doesn't support named positions"):
        exp.attention(0, 0)
    with pytest.raises(ValueError, match="attribution estimates don't support named positions"):
        exp.sweep("resid_pre", method="attribution", progress=False)
