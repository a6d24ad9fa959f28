"""Corruptions: what the corrupted run is, and which values a patch writes into the clean run.

Each corruption is a small strategy object: ``directions`` it allows, its ``corrupted_run``
(the base run of denoising), and its ``noising_recipe`` (how the values patched into the clean
run are made).
Counterfactual prompts (preferred) and Gaussian noise define a corrupted *run*, so both
directions apply. Zero, mean and resample ablation only define the value patched into the clean
run, so they support noising only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .ablations import INDEX, MEAN, TOKEN_MEAN, ZEROS, SourceRecipe
from .hookpoints import Key
from .sites import indices

DIRECTIONS = ("denoising", "noising")


@dataclass(frozen=True)
class RunInput:
    """The input of one forward pass: token ids (pairs, pos) and noise added to the embeddings."""

    ids: torch.Tensor
    noise: torch.Tensor | None = None


@dataclass(frozen=True)
class Inputs:
    """What a corruption builds on: the experiment's token ids, noise and reference prompts."""

    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor | None
    noise: torch.Tensor | None
    clean_prompts: tuple[str, ...]
    tokenize: Callable[[list[str]], list[tuple[int, ...]]]

    @property
    def n_pairs(self) -> int:
        return int(self.clean_ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.clean_ids.shape[1])


class _Strategy:
    """Defaults shared by every corruption: a corrupted run, patched in both directions."""

    directions: ClassVar[tuple[str, ...]] = DIRECTIONS

    def make_noise(
        self, n_pairs: int, length: int, d_model: int, embed_std: Callable[[], float]
    ) -> torch.Tensor | None:
        """Noise (pairs, pos, d_model) added to the token embeddings of the corrupted run."""
        return None

    def changed_positions(self, inputs: Inputs) -> list[int]:
        """Positions where the corrupted input differs from the clean one."""
        return []

    def corrupted_run(self, inputs: Inputs) -> RunInput | None:
        """The corrupted run, or None where the corruption only defines patched-in values (then
        the corrupted baseline is the clean run with those values patched into the embeddings)."""
        return None

    def noising_recipe(self, inputs: Inputs, keys: frozenset[Key]) -> SourceRecipe:
        """How the values (pairs, pos, unit, width) that noising patches into the clean run are
        made: by default, the corrupted run's activations."""
        run = self.corrupted_run(inputs)
        assert run is not None, "a corruption without a corrupted run defines noising_recipe"
        return SourceRecipe((run,))


@dataclass(frozen=True)
class CounterfactualPrompts(_Strategy):
    """The corrupted prompts given to the experiment (``corruption=None``)."""

    def changed_positions(self, inputs: Inputs) -> list[int]:
        if inputs.corrupted_ids is None:
            return []
        changed = (inputs.clean_ids != inputs.corrupted_ids).any(0)
        return torch.nonzero(changed).flatten().tolist()

    def corrupted_run(self, inputs: Inputs) -> RunInput | None:
        assert inputs.corrupted_ids is not None, "counterfactual prompts need corrupted ids"
        return RunInput(inputs.corrupted_ids)


@dataclass(frozen=True)
class GaussianNoise(_Strategy):
    """Noise added to the token embeddings at ``positions`` (all when None), as in causal tracing.

    ``std=None`` uses 3x the standard deviation of the token-embedding matrix. Noise pushes the
    model off-distribution: prefer counterfactual prompts where you can.
    """

    std: float | None = None
    positions: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positions is not None:
            object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))
        if self.std is not None and not self.std > 0:
            raise ValueError(f"GaussianNoise std must be positive, got {self.std}")

    def make_noise(
        self, n_pairs: int, length: int, d_model: int, embed_std: Callable[[], float]
    ) -> torch.Tensor | None:
        std = self.std if self.std is not None else 3 * embed_std()
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(n_pairs, length, d_model, generator=gen) * std
        if self.positions is not None:
            keep = torch.zeros(length, dtype=torch.bool)
            keep[list(indices(self.positions, length, "noise position"))] = True
            noise[:, ~keep] = 0
        return noise

    def changed_positions(self, inputs: Inputs) -> list[int]:
        return list(self.positions or range(inputs.length))

    def corrupted_run(self, inputs: Inputs) -> RunInput | None:
        return RunInput(inputs.clean_ids, inputs.noise)


class _Ablation(_Strategy):
    directions: ClassVar[tuple[str, ...]] = ("noising",)

    def noising_recipe(self, inputs: Inputs, keys: frozenset[Key]) -> SourceRecipe:
        raise NotImplementedError

    def reference_ids(
        self, inputs: Inputs, reference: tuple[str, ...] | None
    ) -> list[tuple[int, ...]]:
        return inputs.tokenize(list(reference) if reference else list(inputs.clean_prompts))


@dataclass(frozen=True)
class ZeroAblation(_Ablation):
    """Patch in zeros (noising only)."""

    def noising_recipe(self, inputs: Inputs, keys: frozenset[Key]) -> SourceRecipe:
        return SourceRecipe((RunInput(inputs.clean_ids),), ZEROS)


@dataclass(frozen=True)
class MeanAblation(_Ablation):
    """Patch in the mean activation over ``reference`` prompts (noising only).

    The mean is taken per position when every reference prompt has the experiment's token
    length, else over all tokens. ``reference=None`` uses the experiment's clean prompts.
    """

    reference: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.reference is not None:
            object.__setattr__(self, "reference", _prompts(self.reference))

    def noising_recipe(self, inputs: Inputs, keys: frozenset[Key]) -> SourceRecipe:
        """The mean per position when every reference prompt has the experiment's length."""
        ref_ids = self.reference_ids(inputs, self.reference)
        if all(len(r) == inputs.length for r in ref_ids):
            return SourceRecipe((RunInput(torch.tensor(ref_ids)),), MEAN)
        if any(k[0] == "pattern" for k in keys):
            raise ValueError(
                "mean ablation of attention patterns needs reference prompts of the "
                f"experiment's token length ({inputs.length})"
            )
        runs = tuple(RunInput(torch.tensor([ids])) for ids in ref_ids)
        return SourceRecipe(runs, TOKEN_MEAN)


@dataclass(frozen=True)
class ResampleAblation(_Ablation):
    """Patch in the activation of a randomly chosen ``reference`` prompt (noising only).

    Reference prompts must have the experiment's token length. ``reference=None`` resamples from
    the other clean prompts of the experiment.
    """

    reference: tuple[str, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference is not None:
            object.__setattr__(self, "reference", _prompts(self.reference))

    def noising_recipe(self, inputs: Inputs, keys: frozenset[Key]) -> SourceRecipe:
        """Each pair gets the activations of one randomly chosen reference prompt."""
        ref_ids = self.reference_ids(inputs, self.reference)
        bad = [i for i, r in enumerate(ref_ids) if len(r) != inputs.length]
        if bad:
            raise ValueError(
                f"resample ablation needs reference prompts of {inputs.length} tokens; "
                f"reference prompts {bad} have other lengths"
            )
        n_pairs = inputs.n_pairs
        rng = np.random.default_rng(self.seed)
        if self.reference is None:
            if n_pairs < 2:
                raise ValueError(
                    "ResampleAblation without reference= resamples from the other clean "
                    "prompts, so it needs at least two; pass reference=[...] prompts"
                )
            index = (np.arange(n_pairs) + rng.integers(1, n_pairs)) % n_pairs
        else:
            index = rng.integers(0, len(ref_ids), size=n_pairs)
        return SourceRecipe((RunInput(torch.tensor(ref_ids)),), INDEX, torch.as_tensor(index))


Ablation = ZeroAblation | MeanAblation | ResampleAblation
Corruption = GaussianNoise | Ablation
Strategy = CounterfactualPrompts | Corruption


def strategy_for(corruption: Corruption | None) -> Strategy:
    """The strategy of an experiment's corruption (None: its counterfactual prompts)."""
    return CounterfactualPrompts() if corruption is None else corruption


def _prompts(reference: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(reference, str):
        reference = [reference]
    if not reference:
        raise ValueError("reference prompts are empty; give at least one prompt or None")
    return tuple(reference)
