"""Confirmatory patching of a hypothesised circuit and of its complement."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .architectures import ModelDims
from .components import Component
from .result import PatchResult
from .sites import n_heads_of


@dataclass(frozen=True, eq=False)
class CircuitResult:
    """Results of patching a circuit and its complement, keyed by (direction, which)."""

    components: tuple[Component, ...]
    complement_size: int
    results: dict[tuple[str, str], PatchResult]
    complement_note: str | None = None  # why the complement was not patched (mixed kinds)

    @property
    def size(self) -> int:
        return len(self.components)

    def recovery(self, metric: str = "logit_diff", normalized: bool = True) -> dict[str, float]:
        """The metric per ``"direction/which"``, e.g. ``"denoising/circuit"``."""
        return {
            f"{d}/{which}": float(r.values(metric, normalized).data[0])
            for (d, which), r in self.results.items()
        }

    def to_pandas(self) -> Any:
        """A row per (direction, circuit or complement), a column per metric."""
        import pandas as pd

        frames = []
        for (direction, which), r in self.results.items():
            df = r.to_pandas()
            df.insert(0, "which", which)
            df.insert(0, "direction", direction)
            df["size"] = self.size if which == "circuit" else self.complement_size
            frames.append(df)
        return pd.concat(frames, ignore_index=True)


def site_kind(c: Component) -> tuple[str, bool, bool, bool]:
    """A component's granularity: its site, and whether it names a position, head and neuron."""
    return (c.site, c.pos is not None, c.head is not None, c.neuron is not None)


def mixed_kinds_note(components: Sequence[Component]) -> str | None:
    """Why a circuit mixing granularities gets no complement; None when it has one kind.

    The complement is defined per kind (every other component of that kind). Patching every
    other component of every kind at once is no complement: a residual-stream cell carries all
    that was written before it, so the union overwrites nearly the whole run and reads ~100 %.
    """
    kinds = list(dict.fromkeys(site_kind(c) for c in components))
    if len(kinds) <= 1:
        return None
    names = ", ".join(
        site + (" by position" if pos and site.startswith("head") and site != "head_by_pos" else "")
        for site, pos, *_ in kinds
    )
    return (
        f"the circuit mixes component kinds ({names}): a complement is defined per kind "
        "(every other component of that kind), and all kinds' complements at once would "
        "overwrite nearly the whole run, so none was patched; check one kind at a time for "
        "its complement"
    )


def complement_of(components: Sequence[Component], dims: ModelDims, length: int) -> list[Component]:
    """Every component at the circuit's granularity that the circuit leaves out.

    The granularity of a component is its site, whether it names a position, and its head or
    neuron axis; the complement spans all layers, heads/neurons and positions of it.
    """
    chosen = set(components)
    universe: dict[Component, None] = {}
    for c in components:
        heads = range(n_heads_of(c.site, dims)) if c.head is not None else [None]
        neurons = range(dims.d_mlp) if c.neuron is not None else [None]
        positions = range(length) if c.pos is not None else [None]
        for layer, head, neuron, pos in itertools.product(
            range(dims.n_layers), heads, neurons, positions
        ):
            universe[Component(c.site, layer, head=head, pos=pos, neuron=neuron)] = None
    return [c for c in universe if c not in chosen]
