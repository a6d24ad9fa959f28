"""Tokenising and validating prompt pairs and answers, with errors that say how to fix them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptSet:
    """Tokenised, validated prompt pairs. ``corrupted_ids`` is None without counterfactuals."""

    clean: tuple[str, ...]
    corrupted: tuple[str, ...] | None
    clean_ids: tuple[tuple[int, ...], ...]
    corrupted_ids: tuple[tuple[int, ...], ...] | None
    answers: tuple[tuple[str, str], ...]
    answer_ids: tuple[tuple[int, int], ...]

    @property
    def n_pairs(self) -> int:
        return len(self.clean)

    @property
    def length(self) -> int:
        """Tokens of the longest prompt (every prompt when they all have one length)."""
        return max(self.lengths)

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.clean_ids)


def as_list(prompts: str | Sequence[str] | None, name: str) -> list[str] | None:
    """A prompt or prompts as a list of non-empty strings."""
    if prompts is None:
        return None
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items:
        raise ValueError(f"{name} is empty: give at least one prompt")
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}] is {type(p).__name__}, expected a string")
        if not p.strip():
            raise ValueError(
                f"{name}[{i}] is an empty prompt: write the text the model should read"
            )
    return items


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token id as readable text."""
    return [tokenizer.decode([i]) for i in ids]


def tokenize(tokenizer: Any, prompts: Sequence[str]) -> list[tuple[int, ...]]:
    """Token ids of each prompt, with the tokenizer's own special tokens."""
    return [tuple(tokenizer(p)["input_ids"]) for p in prompts]


def build_prompt_set(
    tokenizer: Any,
    clean: Sequence[str],
    corrupted: Sequence[str] | None,
    answers: Sequence[tuple[str, str]] | tuple[str, str],
    named_positions: bool = False,
) -> PromptSet:
    """Tokenise and check prompts and answers; raise ValueError with a fix on bad input.

    Pairs may differ in length only with ``named_positions`` (then positions are named, not
    counted); the clean and corrupted prompt of one pair always have the same length.
    """
    clean_ids = tokenize(tokenizer, clean)
    corrupted_ids = None
    if corrupted is not None:
        if len(corrupted) != len(clean):
            raise ValueError(
                f"{len(clean)} clean prompts but {len(corrupted)} corrupted prompts: give one "
                "corrupted prompt per clean prompt"
            )
        corrupted_ids = tokenize(tokenizer, corrupted)
        for i, (c, k) in enumerate(zip(clean_ids, corrupted_ids, strict=True)):
            if len(c) != len(k):
                raise ValueError(_length_mismatch(tokenizer, i, c, k))
    lengths = {len(c) for c in clean_ids}
    if len(lengths) > 1 and not named_positions:
        detail = ", ".join(f"pair {i}: {len(c)}" for i, c in enumerate(clean_ids[:8], 1))
        raise ValueError(
            f"prompt pairs have different numbers of tokens ({detail}{', ...' * (len(clean) > 8)})"
            ", so token positions don't line up across pairs. Name the positions you care "
            "about instead: positions={'S2': [index per pair], 'END': -1} (indices, or words "
            "to find such as 'John' or pw.Word('John', occurrence=1)), or mark them in the text "
            "('When [IO:Mary] and [S1:John] ...') with positions='marked'. Sweeps then run over "
            "the names, and each prompt is padded and read at its own last token."
        )
    pairs = _answer_pairs(answers, len(clean))
    answer_ids = tuple(_answer_ids(tokenizer, pair) for pair in pairs)
    return PromptSet(
        clean=tuple(clean),
        corrupted=tuple(corrupted) if corrupted is not None else None,
        clean_ids=tuple(clean_ids),
        corrupted_ids=tuple(corrupted_ids) if corrupted_ids is not None else None,
        answers=pairs,
        answer_ids=answer_ids,
    )


def _length_mismatch(tokenizer: Any, i: int, clean: Sequence[int], corrupted: Sequence[int]) -> str:
    first = next(
        (p for p, (a, b) in enumerate(zip(clean, corrupted, strict=False)) if a != b),
        min(len(clean), len(corrupted)),
    )

    def show(ids: Sequence[int]) -> str:
        toks = token_strings(tokenizer, ids)
        return " ".join(f">>{t!r}<<" if p == first else repr(t) for p, t in enumerate(toks))

    return (
        f"pair {i + 1}: the clean prompt has {len(clean)} tokens but the corrupted one has "
        f"{len(corrupted)}; positions must line up token by token. First difference at position "
        f"{first} (marked >> <<):\n  clean:     {show(clean)}\n  corrupted: {show(corrupted)}\n"
        "Replace words with words of the same token length (e.g. one name for another)."
    )


def _answer_pairs(answers: Any, n_pairs: int) -> tuple[tuple[str, str], ...]:
    if (
        isinstance(answers, (tuple, list))
        and len(answers) == 2
        and all(isinstance(a, str) for a in answers)
    ):
        answers = [tuple(answers)]
    try:
        pairs = [(str(a), str(b)) for a, b in answers]
    except (TypeError, ValueError):
        raise ValueError(
            "answers must be (correct, incorrect) pairs, e.g. answers=[(' Mary', ' John')]"
        ) from None
    if len(pairs) == 1:
        pairs = pairs * n_pairs
    if len(pairs) != n_pairs:
        raise ValueError(
            f"{len(pairs)} answer pairs for {n_pairs} prompt pairs: give one (correct, incorrect) "
            "pair per prompt, or a single pair for all"
        )
    return tuple(pairs)


def _answer_ids(tokenizer: Any, pair: tuple[str, str]) -> tuple[int, int]:
    ids = []
    for text in pair:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            split = " + ".join(repr(t) for t in token_strings(tokenizer, tokens)) or "nothing"
            raise ValueError(
                f"answer {text!r} is not a single token: it splits into {split}. Use a word that "
                "is one token (with its leading space, e.g. ' Mary')."
            )
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise ValueError(
            f"correct answer {pair[0]!r} and incorrect answer {pair[1]!r} are the same token "
            f"({ids[0]}); the metric compares two different answers"
        )
    return ids[0], ids[1]
