"""Where a head looks: its attention pattern on the clean and the corrupted prompts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .result import LabeledArray
from .sites import indices

if TYPE_CHECKING:
    from .experiment import Experiment

WHICH = ("clean", "corrupted", "difference")


@dataclass(frozen=True, eq=False)
class AttentionPatterns:
    """One head's attention (``pair, dest, src``: how much each destination position attends
    to each source position) on the clean and the corrupted prompts.

    ``corrupted`` is the pattern that noising patches in: the corrupted prompts' run, or the
    ablation's value. ``difference`` is clean − corrupted.
    """

    layer: int
    head: int
    clean: LabeledArray
    corrupted: LabeledArray
    clean_tokens: tuple[tuple[str, ...], ...]
    corrupted_tokens: tuple[tuple[str, ...], ...]

    @property
    def difference(self) -> LabeledArray:
        c = self.clean
        return LabeledArray(c.data - self.corrupted.data, c.axes, c.coords, c.labels)

    def pattern(self, which: str = "clean", pair: int | None = None) -> LabeledArray:
        """``dest × src`` of one pair, or averaged over pairs (``pair=None``)."""
        if which not in WHICH:
            raise ValueError(f"which must be one of {', '.join(WHICH)}, not {which!r}")
        full = getattr(self, which)
        n_pairs = full.data.shape[0]
        if pair is None:
            data = full.data.mean(0)
        elif isinstance(pair, int) and -n_pairs <= pair < n_pairs:
            data = full.data[pair]
        else:
            raise ValueError(f"pair must be None (mean) or an int in 0..{n_pairs - 1}: {pair!r}")
        coords = {a: full.coords[a] for a in ("dest", "src")}
        labels = {a: full.labels[a] for a in ("dest", "src")}
        return LabeledArray(data, ("dest", "src"), coords, labels)


def attention_patterns(exp: Experiment, layer: int, head: int) -> AttentionPatterns:
    """The patterns of query head ``head`` of ``layer`` (needs eager attention)."""
    reason = exp.available_sites()["head_pattern"]
    if reason:
        raise ValueError(f"attention patterns are not available: {reason}")
    layer = indices([layer], exp.dims.n_layers, "layer")[0]
    head = indices([head], exp.dims.n_heads, "head")[0]
    key = ("pattern", layer)
    with exp._lock:
        # units (pairs, dest, head, src)
        clean = exp._source_values("denoising", {key})[key][:, :, head].float().cpu().numpy()
        corrupted = exp._source_values("noising", {key})[key][:, :, head].float().cpu().numpy()
    positions = tuple(range(exp.length))
    labels = tuple(exp.position_labels)
    coords = {"pair": tuple(range(exp.n_pairs)), "dest": positions, "src": positions}
    names = {"pair": tuple(f"pair {i}" for i in range(exp.n_pairs)), "dest": labels, "src": labels}
    axes = ("pair", "dest", "src")
    clean_tokens = tuple(tuple(t) for t in exp.clean_tokens)
    return AttentionPatterns(
        layer=layer,
        head=head,
        clean=LabeledArray(clean.astype(np.float32), axes, coords, names),
        corrupted=LabeledArray(corrupted.astype(np.float32), axes, coords, names),
        clean_tokens=clean_tokens,
        corrupted_tokens=tuple(tuple(t) for t in exp.corrupted_tokens or clean_tokens),
    )
