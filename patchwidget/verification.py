"""Exact patching of the cells an attribution estimate ranks highest, and how well they agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import metrics
from .attribution import NOT_ESTIMABLE, grad_drop_scores
from .hookpoints import Target
from .result import PatchResult
from .runner import Cancel, RunRequest, done_count, run
from .sites import indices, target

if TYPE_CHECKING:
    from .experiment import Experiment

VerifyProgress = Callable[[int, int, "Verification"], None]


@dataclass(frozen=True)
class Agreement:
    """How an estimate compares with exact patching over the verified cells of one metric.

    ``top_k_hits``: of the ``k`` verified cells with the largest exact effect, how many the
    estimate also had among its ``k`` largest (over all cells). ``disagreements``: (cell label,
    estimate, exact), largest absolute difference first.
    """

    metric: str
    n_verified: int
    rank_correlation: float
    k: int
    top_k_hits: int
    disagreements: tuple[tuple[str, float, float], ...]

    def __str__(self) -> str:
        lines = [
            f"{self.metric}: {self.n_verified} cells verified, rank correlation "
            f"{self.rank_correlation:.3f}, {self.top_k_hits} of the exact top {self.k} in the "
            "estimate's top "
            f"{self.k}",
            *(f"  {label}: estimate {e:.3f}, exact {x:.3f}" for label, e, x in self.disagreements),
        ]
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Verification:
    """An attribution estimate, exact values of the cells verified so far, and their order.

    ``exact`` has the estimate's shape with NaN in cells not verified; ``order`` lists flat
    cell indices, largest estimated effect first; the first ``n_verified`` of them are exact.
    """

    estimate: PatchResult
    exact: PatchResult
    order: np.ndarray
    n_verified: int

    @property
    def verified(self) -> np.ndarray:
        """Flat indices of the verified cells, in verification order."""
        return self.order[: self.n_verified]

    def agreement(self, metric: str = "logit_diff", k: int = 10, n: int = 5) -> Agreement:
        """Rank correlation, top-k overlap and the ``n`` largest disagreements for ``metric``."""
        if metric in NOT_ESTIMABLE:
            raise ValueError(
                f"{metric} cannot be estimated to first order; compare logit_diff, logprob or prob"
            )
        est = np.asarray(self.estimate.values(metric)).reshape(-1)
        exact = np.asarray(self.exact.values(metric)).reshape(-1)
        cells = self.verified
        base = _base(self.estimate, metric)
        k = max(1, min(k, len(cells)))
        exact_top = cells[np.argsort(-np.abs(exact[cells] - base), kind="stable")[:k]]
        est_top = np.argsort(-np.abs(est - base), kind="stable")[:k]
        worst = cells[np.argsort(-np.abs(est[cells] - exact[cells]), kind="stable")[:n]]
        return Agreement(
            metric=metric,
            n_verified=len(cells),
            rank_correlation=rank_correlation(est[cells], exact[cells]),
            k=k,
            top_k_hits=len(set(exact_top.tolist()) & set(est_top.tolist())),
            disagreements=tuple(
                (cell_label(self.estimate, int(c)), float(est[c]), float(exact[c])) for c in worst
            ),
        )

    def __repr__(self) -> str:
        total = int(np.prod(self.estimate.shape))
        head = f"Verification({self.estimate.site}, {self.n_verified} of {total} cells exact)"
        return f"{head}\n{self.agreement()}" if self.n_verified else head


def verify(
    exp: Experiment,
    estimate: PatchResult,
    top: int | None = None,
    metric: str = "logit_diff",
    on_progress: VerifyProgress | None = None,
    cancel: Cancel | None = None,
    progress: bool = True,
) -> Verification:
    """Exact patching of the ``top`` cells with the largest estimated ``metric`` effect (all
    cells when None), largest first."""
    if estimate.method != "attribution":
        raise ValueError("verify() checks an attribution estimate: sweep with method='attribution'")
    if estimate.site not in exp.available_sites() or estimate.axes == ("patch",):
        raise ValueError(f"cannot verify a result of site {estimate.site!r}")
    order = verification_order(estimate, metric)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top must be a positive int (or None for every cell), not {top!r}")
        order = order[:top]
    shape = estimate.shape
    patch_sets = [_targets(exp, estimate, int(c)) for c in order]
    labels = tuple(cell_label(estimate, int(c)) for c in order)
    meta = {k: estimate.metadata.get(k) for k in ("layers", "heads", "positions", "neurons")}
    readouts = np.full_like(estimate.readouts, np.nan).reshape(-1, *estimate.readouts.shape[-2:])

    def verification(part: PatchResult, done: int) -> Verification:
        readouts[order[:done]] = part.readouts[:done]
        exact = PatchResult(
            site=estimate.site,
            direction=estimate.direction,
            axes=estimate.axes,
            coords=estimate.coords,
            labels=estimate.labels,
            readouts=readouts.reshape(*shape, *readouts.shape[-2:]).copy(),
            clean_readouts=part.clean_readouts,
            corrupted_readouts=part.corrupted_readouts,
            metadata={**part.metadata, "method": "exact", "verified_cells": order[:done].tolist()},
            complete=done == int(np.prod(shape)),
        )
        return Verification(estimate, exact, verification_order(estimate, metric), done)

    def report(done: int, total: int, part: PatchResult) -> None:
        if on_progress is not None:
            on_progress(done, total, verification(part, done))

    request = RunRequest(
        patch_sets=patch_sets,
        site=estimate.site,
        direction=estimate.direction,
        axes=("cell",),
        coords={"cell": tuple(range(len(order)))},
        labels={"cell": labels},
        meta=meta,
        on_progress=report,
        cancel=cancel,
        progress=progress,
        ordered=True,
    )
    part = run(exp, request)
    done = done_count(np.isfinite(part.readouts[:, 0, 0]), ordered=True)  # cancelled: a prefix
    return verification(part, done)


def verification_order(estimate: PatchResult, metric: str = "logit_diff") -> np.ndarray:
    """Flat cell indices by estimated |effect| on ``metric`` (or GradDrop's score, if larger)."""
    effect = np.abs(np.asarray(estimate.values(metric)).reshape(-1) - _base(estimate, metric))
    scores = grad_drop_scores(estimate, metric)
    if scores is not None:
        effect = np.maximum(effect, scores.reshape(-1))
    return np.argsort(-np.nan_to_num(effect, nan=-1.0), kind="stable")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN under two points."""
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def cell_label(result: PatchResult, flat: int) -> str:
    index = np.unravel_index(flat, result.shape)
    return " ".join(result.labels[a][i] for a, i in zip(result.axes, index, strict=True))


def _ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts + 1) / 2)[inverse]


def _base(result: PatchResult, metric: str) -> float:
    which = "corrupted" if result.direction == "denoising" else "clean"
    return metrics.baselines(metric, result.clean_readouts, result.corrupted_readouts)[which]


def _targets(exp: Experiment, result: PatchResult, flat: int) -> list[Target]:
    index = np.unravel_index(flat, result.shape)
    values = {a: result.coords[a][i] for a, i in zip(result.axes, index, strict=True)}
    positions = result.metadata.get("positions")
    together = (
        None
        if positions is None or "pos" in result.axes
        else indices(positions, exp.length, "position")
    )
    return [target(exp.hooks, result.site, **values, together=together)]
