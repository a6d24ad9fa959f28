"""Checks of the public API's arguments that the engine would otherwise trip over later, with
messages that say how to fix them; and warnings about inputs that run but mislead."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

LONG_SWEEP_S = 600.0  # warn before sweeps estimated to take longer
_AXIS_ARGUMENT = {"layer": "layers", "head": "heads", "pos": "positions", "neuron": "neurons"}


class PatchingWarning(UserWarning):
    """An input that patchwidget accepts but that is likely not what you meant."""


_thread = threading.local()


def warn(message: str) -> None:
    if not getattr(_thread, "quiet", False):
        warnings.warn(message, PatchingWarning, stacklevel=3)


@contextmanager
def shown_elsewhere() -> Iterator[None]:
    """No ``PatchingWarning`` from this thread inside the block: the caller (the widget) shows
    the same facts itself (prompt notes, cells marked NaN)."""
    _thread.quiet = True
    try:
        yield
    finally:
        _thread.quiet = False


def positive_int(value: Any, name: str) -> int | None:
    """None or a positive integer (``batch_size``, ``memory_budget``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TypeError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def restriction(value: Any, name: str) -> Any:
    """A sweep restriction (``layers=`` ...): None, an int or a list of distinct ints."""
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
        return value
    if isinstance(value, (str, bytes, float, bool)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{name} must be a list of integers (or one integer, or None), got {value!r}"
        )
    items = list(value)
    seen: set[int] = set()
    for v in items:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if int(v) in seen:
                raise ValueError(f"{name} lists {int(v)} twice: give each index once")
            seen.add(int(v))
    return items


def restrictions_fit_site(site: str, axes: Sequence[str], given: dict[str, Any]) -> None:
    """``heads=``/``neurons=`` only on sites that have that axis (positions always apply)."""
    for axis, argument in (("head", "heads"), ("neuron", "neurons")):
        if given.get(argument) is not None and axis not in axes:
            raise ValueError(
                f"site {site!r} has no {argument} (its axes: {', '.join(axes)}); "
                f"drop {argument}=..."
            )


def context_fits(config: Any, length: int) -> None:
    """Prompts no longer than the model's context."""
    limit = next(
        (
            getattr(config, name)
            for name in ("max_position_embeddings", "n_positions", "n_ctx")
            if isinstance(getattr(config, name, None), int)
        ),
        None,
    )
    if limit is not None and length > limit:
        raise ValueError(
            f"the prompts have {length} tokens but this model reads at most {limit}: "
            "shorten the prompts"
        )


def prompt_notes(tokenizer: Any, prompts: Any) -> list[str]:
    """Refuse answers that are the unknown token; return notes about prompts that contain it
    and about pairs whose clean and corrupted prompts are the same."""
    notes = []
    unk = unknown_id(tokenizer)
    if unk is not None:
        for pair, ids in enumerate(prompts.answer_ids):
            for text, token in zip(prompts.answers[pair], ids, strict=True):
                if token == unk:
                    raise ValueError(
                        f"answer {text!r} is not in the tokenizer's vocabulary (it becomes "
                        f"{tokenizer.unk_token!r}): choose a word the model knows"
                    )
        rows = [("clean", prompts.clean, prompts.clean_ids)]
        if prompts.corrupted_ids is not None:
            rows.append(("corrupted", prompts.corrupted, prompts.corrupted_ids))
        for name, texts, all_ids in rows:
            for pair, ids in enumerate(all_ids):
                if unk in ids:
                    where = ", ".join(str(p) for p, i in enumerate(ids) if i == unk)
                    notes.append(
                        f"{name} prompt of pair {pair + 1} ({texts[pair]!r}) has words the "
                        f"tokenizer does not know: they become {tokenizer.unk_token!r} "
                        f"(at position {where}). Check the spelling and punctuation."
                    )
    if prompts.corrupted_ids is not None:
        same = [
            str(p + 1)
            for p, (c, k) in enumerate(zip(prompts.clean_ids, prompts.corrupted_ids, strict=True))
            if c == k
        ]
        if same:
            notes.append(
                f"clean and corrupted prompts are the same in pair {', '.join(same)}: patching "
                "can show nothing there. Change the corrupted prompt."
            )
    return notes


def unknown_id(tokenizer: Any) -> int | None:
    """The tokenizer's unknown-token id, unless it doubles as a special token (GPT-2)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    specials = {getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad")}
    return None if unk is None or unk in specials else int(unk)


def patch_count(sizes: dict[str, int], axes: Sequence[str], given: dict[str, Any]) -> int:
    """How many patch sets a sweep over ``axes`` visits (``given``: its restrictions)."""
    count = 1
    for axis in axes:
        chosen = given.get(_AXIS_ARGUMENT[axis])
        count *= sizes[axis] if chosen is None else len(chosen)
    return count


def duration(seconds: float) -> str:
    """A duration in words: "40 s", "12 min", "2.3 h"."""
    return _duration(seconds)


def long_sweep(n_rows: int, seconds_per_row: float, what: str) -> float:
    """Warn when ``n_rows`` patched runs are estimated to take longer than ``LONG_SWEEP_S``."""
    estimate = n_rows * seconds_per_row
    if estimate > LONG_SWEEP_S:
        warn(
            f"{what} runs {n_rows:,} patched forward passes: about {_duration(estimate)} here "
            "(estimated from the baseline runs). Restrict it (layers=, heads=, positions=, "
            "neurons=) or use fewer prompt pairs for a first look."
        )
    return estimate


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
