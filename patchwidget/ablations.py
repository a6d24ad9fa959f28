"""How ablations and corrupted runs turn captured activations into the values patched in.

A :class:`SourceRecipe` names the runs to capture and how to combine their captures. The
combination (:func:`combine_sources`) is plain torch: remote requests ship this module by value
(``nnsight.register``), so the server combines captures exactly as a local run does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .corruptions import RunInput

FIRST = "first"  # the first run's capture as is (a corrupted run)
ZEROS = "zeros"
MEAN = "mean"  # mean over the rows of one run, per position
TOKEN_MEAN = "token_mean"  # mean over every token of several runs
INDEX = "index"  # the rows ``index`` of one run


@dataclass(frozen=True)
class SourceRecipe:
    """Runs to capture (in order) and how :func:`combine_sources` combines their captures."""

    runs: tuple[RunInput, ...]
    combine: str = FIRST
    index: torch.Tensor | None = None


def combine_sources(
    combine: str,
    captures: list[dict[Any, torch.Tensor]],
    n_pairs: int,
    length: int,
    index: torch.Tensor | None = None,
) -> dict[Any, torch.Tensor]:
    """Values (pairs, pos, unit, width) per hook point from the captures of a recipe's runs."""
    first = captures[0]
    if combine == ZEROS:
        return {k: torch.zeros_like(v) for k, v in first.items()}
    if combine == MEAN:
        return {k: v.mean(0, keepdim=True).expand(n_pairs, *v.shape[1:]) for k, v in first.items()}
    if combine == TOKEN_MEAN:
        sums: dict[Any, torch.Tensor] = {}
        count = 0
        for captured in captures:
            for k, v in captured.items():
                total = v.sum(dim=(0, 1), keepdim=True)
                sums[k] = sums[k] + total if k in sums else total
            count += int(next(iter(captured.values())).shape[1])
        return {k: (v / count).expand(n_pairs, length, *v.shape[2:]) for k, v in sums.items()}
    if combine == INDEX:
        assert index is not None, "an index recipe carries its rows"
        return {k: v[index.to(v.device)] for k, v in first.items()}
    return dict(first)
