"""Values that zero, mean and resample ablation patch into the clean run."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .hookpoints import Key

# capture(ids, keys, noise): the unit views of the ``keys`` hook points on one run.
Capture = Callable[[torch.Tensor, frozenset[Key], "torch.Tensor | None"], dict[Key, torch.Tensor]]


def mean_values(
    capture: Capture,
    ref_ids: list[tuple[int, ...]],
    keys: frozenset[Key],
    n_pairs: int,
    length: int,
) -> dict[Key, torch.Tensor]:
    """Mean over reference prompts, per position when they all have ``length`` tokens."""
    if all(len(r) == length for r in ref_ids):
        captured = capture(torch.tensor(ref_ids), keys, None)
        return {
            k: v.mean(0, keepdim=True).expand(n_pairs, *v.shape[1:]) for k, v in captured.items()
        }
    if any(k[0] == "pattern" for k in keys):
        raise ValueError(
            "mean ablation of attention patterns needs reference prompts of the experiment's "
            f"token length ({length})"
        )
    sums: dict[Key, torch.Tensor] = {}
    count = 0
    for ids in ref_ids:
        for k, v in capture(torch.tensor([ids]), keys, None).items():
            sums[k] = sums.get(k, 0) + v.sum(dim=(0, 1), keepdim=True)
        count += len(ids)
    return {k: (v / count).expand(n_pairs, length, *v.shape[2:]) for k, v in sums.items()}


def resample_values(
    capture: Capture,
    seed: int,
    given_reference: bool,
    ref_ids: list[tuple[int, ...]],
    keys: frozenset[Key],
    n_pairs: int,
    length: int,
) -> dict[Key, torch.Tensor]:
    """Each pair gets the activations of one randomly chosen reference prompt."""
    bad = [i for i, r in enumerate(ref_ids) if len(r) != length]
    if bad:
        raise ValueError(
            f"resample ablation needs reference prompts of {length} tokens; "
            f"reference prompts {bad} have other lengths"
        )
    rng = np.random.default_rng(seed)
    if not given_reference:
        if n_pairs < 2:
            raise ValueError(
                "ResampleAblation without reference= resamples from the other clean prompts, "
                "so it needs at least two; pass reference=[...] prompts"
            )
        index = (np.arange(n_pairs) + rng.integers(1, n_pairs)) % n_pairs
    else:
        index = rng.integers(0, len(ref_ids), size=n_pairs)
    captured = capture(torch.tensor(ref_ids), keys, None)
    return {k: v[torch.as_tensor(index)] for k, v in captured.items()}
