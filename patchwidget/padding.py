"""Prompts of different lengths in one batch: right padding, and forward passes split by rows.

Right padding keeps every real token at the position it has when its prompt runs alone, and
causal attention keeps it from seeing the padding that follows; each row's answer is read at
its own last token (``Engine.forward(..., last=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def pad_right(ids: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Token ids (rows, longest) with shorter rows filled with ``pad_id`` on the right."""
    width = max(len(r) for r in ids)
    return torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in ids], dtype=torch.long)


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad token, else its end-of-text token, else 0 (padding is never read)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def by_rows(
    run: Callable[[torch.Tensor], tuple[torch.Tensor, dict[Any, Any]]],
    n_rows: int,
    size: int,
) -> tuple[torch.Tensor, dict[Any, Any]]:
    """``run(rows)`` on slices of at most ``size`` rows, outputs joined along rows."""
    if n_rows <= size:
        return run(torch.arange(n_rows))
    parts = [run(torch.arange(n_rows)[i : i + size]) for i in range(0, n_rows, size)]
    logits = torch.cat([p[0] for p in parts])
    saved = {k: _cat([p[1][k] for p in parts]) for k in parts[0][1]}
    return logits, saved


def _cat(values: list[Any]) -> Any:
    if isinstance(values[0], tuple):
        return (torch.cat([v[0] for v in values]), *values[0][1:])
    return torch.cat(values)
