"""Corruptions other than counterfactual prompts.

Gaussian noise defines a corrupted *run* (so both directions apply). Zero, mean and resample
ablation only define the value patched into the clean run, so they support noising only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GaussianNoise:
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


@dataclass(frozen=True)
class ZeroAblation:
    """Patch in zeros (noising only)."""


@dataclass(frozen=True)
class MeanAblation:
    """Patch in the mean activation over ``reference`` prompts (noising only).

    The mean is taken per position when every reference prompt has the experiment's token
    length, else over all tokens. ``reference=None`` uses the experiment's clean prompts.
    """

    reference: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.reference is not None:
            object.__setattr__(self, "reference", _prompts(self.reference))


@dataclass(frozen=True)
class ResampleAblation:
    """Patch in the activation of a randomly chosen ``reference`` prompt (noising only).

    Reference prompts must have the experiment's token length. ``reference=None`` resamples from
    the other clean prompts of the experiment.
    """

    reference: tuple[str, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference is not None:
            object.__setattr__(self, "reference", _prompts(self.reference))


Ablation = ZeroAblation | MeanAblation | ResampleAblation
Corruption = GaussianNoise | Ablation


def _prompts(reference: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(reference, str):
        reference = [reference]
    if not reference:
        raise ValueError("reference prompts are empty; give at least one prompt or None")
    return tuple(reference)
