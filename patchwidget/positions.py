"""Named positions: one token index per prompt pair for each name (IO, S1, S2, END, ...).

A pair's position can be given as a token index (negative counts from the end of that pair's
prompt), as a word to find in the clean prompt (``"Mary"`` or ``pw.Word("John", occurrence=1)``),
or by marking words in the prompt text: ``"When [IO:Mary] and [S1:John] went ..."`` with
``positions="marked"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .prompts import token_strings

MARK = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*):([^\[\]]+)\]")


@dataclass(frozen=True)
class Word:
    """A word to find in a clean prompt, by the tokenizer's character offsets.

    ``occurrence`` picks one of several matches (0 = first); without it a word found twice is an
    error. ``token`` picks one of the word's tokens when it splits into several (-1 = last).
    """

    text: str
    occurrence: int | None = None
    token: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"Word needs a non-empty text, got {self.text!r}")


PositionSpec = int | str | Word


def strip_marks(prompt: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """The prompt without ``[NAME:word]`` marks, and each name's character span in it."""
    spans: dict[str, tuple[int, int]] = {}
    out, last = [], 0
    for m in MARK.finditer(prompt):
        out.append(prompt[last : m.start()])
        start = sum(len(s) for s in out)
        name, word = m.group(1), m.group(2)
        if name in spans:
            raise ValueError(f"position {name!r} is marked twice in the prompt {prompt!r}")
        spans[name] = (start, start + len(word))
        out.append(word)
        last = m.end()
    out.append(prompt[last:])
    return "".join(out), spans


def unmark(prompts: Sequence[str]) -> tuple[list[str], list[dict[str, tuple[int, int]]]]:
    """Prompts without their marks, and each prompt's marked spans (every prompt marks the same
    names)."""
    texts, spans = zip(*(strip_marks(p) for p in prompts), strict=True)
    names = set(spans[0])
    if not names:
        raise ValueError(
            f"positions='marked' but the prompt {prompts[0]!r} has no marks: write each named "
            "word as [NAME:word], e.g. 'When [IO:Mary] and [S1:John] went to the store'"
        )
    for prompt, s in zip(prompts, spans, strict=True):
        if set(s) != names:
            raise ValueError(
                f"every prompt must mark the same names ({', '.join(sorted(names))}); the prompt "
                f"{prompt!r} marks {', '.join(sorted(s)) or 'none'}"
            )
    return list(texts), list(spans)


def resolve(
    tokenizer: Any,
    clean: Sequence[str],
    clean_ids: Sequence[Sequence[int]],
    positions: Mapping[str, Any],
) -> dict[str, tuple[int, ...]]:
    """Each name's token index (from the start) in every pair."""
    if not isinstance(positions, Mapping) or not positions:
        raise TypeError(
            "positions must be a dict of name -> one index, word or pw.Word per pair, e.g. "
            "positions={'S2': [10, 12], 'END': -1}, or positions='marked'"
        )
    n = len(clean)
    out: dict[str, tuple[int, ...]] = {}
    for name, specs in positions.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"position names must be non-empty strings, got {name!r}")
        if isinstance(specs, (int, np.integer, str, Word)) and not isinstance(specs, bool):
            specs = [specs] * n
        specs = list(specs)
        if len(specs) != n:
            raise ValueError(
                f"position {name!r} has {len(specs)} entries for {n} prompt pairs: give one per "
                "pair, or a single index or word for all"
            )
        out[name] = tuple(
            _index(tokenizer, clean[i], clean_ids[i], name, spec) for i, spec in enumerate(specs)
        )
    return out


def from_spans(
    tokenizer: Any,
    clean: Sequence[str],
    spans: Sequence[Mapping[str, tuple[int, int]]],
) -> dict[str, tuple[int, ...]]:
    """Token positions of marked character spans (the last token of each marked word)."""
    names = list(spans[0])
    return {
        name: tuple(
            _token_of_span(tokenizer, prompt, s[name], -1, name)
            for prompt, s in zip(clean, spans, strict=True)
        )
        for name in names
    }


def _index(tokenizer: Any, prompt: str, ids: Sequence[int], name: str, spec: Any) -> int:
    if isinstance(spec, str):
        spec = Word(spec)
    if isinstance(spec, Word):
        return _find_word(tokenizer, prompt, spec, name)
    if isinstance(spec, bool) or not isinstance(spec, (int, np.integer)):
        raise TypeError(
            f"position {name!r}: expected a token index, a word or pw.Word, got {spec!r}"
        )
    if not -len(ids) <= spec < len(ids):
        raise ValueError(
            f"position {name!r} = {spec} is outside the prompt {prompt!r}, which has {len(ids)} "
            f"tokens ({_numbered(tokenizer, ids)})"
        )
    return int(spec) % len(ids)


def _find_word(tokenizer: Any, prompt: str, word: Word, name: str) -> int:
    text = word.text.strip()
    starts = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(text)}(?!\w)", prompt)]
    if not starts:
        raise ValueError(
            f"position {name!r}: the word {word.text!r} is not in the prompt {prompt!r}"
        )
    if word.occurrence is None and len(starts) > 1:
        raise ValueError(
            f"position {name!r}: the word {word.text!r} occurs {len(starts)} times in the prompt "
            f"{prompt!r}; say which with pw.Word({word.text!r}, occurrence=0..{len(starts) - 1}), "
            "or mark it in the text with positions='marked'"
        )
    k = word.occurrence or 0
    if not -len(starts) <= k < len(starts):
        raise ValueError(
            f"position {name!r}: occurrence {k} of {word.text!r}, but it occurs {len(starts)} "
            f"time(s) in the prompt {prompt!r}"
        )
    start = starts[k]
    return _token_of_span(tokenizer, prompt, (start, start + len(text)), word.token, name)


def _token_of_span(
    tokenizer: Any, prompt: str, span: tuple[int, int], which: int, name: str
) -> int:
    """The token covering characters ``span`` of ``prompt`` (``which`` of several)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "finding words needs a fast tokenizer (character offsets); give token indices instead"
        )
    offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    start, end = span
    tokens = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if not tokens:
        raise ValueError(
            f"position {name!r}: no token covers {prompt[start:end]!r} in the prompt {prompt!r}"
        )
    if not -len(tokens) <= which < len(tokens):
        raise ValueError(
            f"position {name!r}: {prompt[start:end]!r} has {len(tokens)} token(s); token={which} "
            "is out of range"
        )
    return tokens[which]


def _numbered(tokenizer: Any, ids: Sequence[int]) -> str:
    return " ".join(f"{i}:{t!r}" for i, t in enumerate(token_strings(tokenizer, ids)))
