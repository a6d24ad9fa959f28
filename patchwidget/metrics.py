"""Metrics as pure functions of readouts, so switching metric never reruns the model.

``js/src/metrics.ts`` mirrors this module; keep them identical.
"""

from __future__ import annotations

import numpy as np

from .readouts import READOUT_FIELDS

METRICS: dict[str, str] = {
    "logit_diff": "logit difference, correct minus incorrect answer",
    "logprob": "log-probability of the correct answer",
    "prob": "probability of the correct answer",
    "kl": "KL divergence from the clean run's next-token distribution",
    "rank": "rank of the correct answer (0 = top)",
    "accuracy": "1 when the correct answer is the top guess",
}

NORMALIZATION_EPS = 1e-6
_F = {name: i for i, name in enumerate(READOUT_FIELDS)}


def per_pair(metric: str, readouts: np.ndarray) -> np.ndarray:
    """The metric for each readout vector (last axis = readout fields)."""
    r = np.asarray(readouts, dtype=np.float64)
    lc, li, lse = r[..., _F["logit_correct"]], r[..., _F["logit_incorrect"]], r[..., _F["lse"]]
    if metric == "logit_diff":
        return lc - li
    if metric == "logprob":
        return lc - lse
    if metric == "prob":
        return np.exp(lc - lse)
    if metric == "kl":
        return r[..., _F["kl_clean"]]
    if metric == "rank":
        return r[..., _F["rank"]]
    if metric == "accuracy":
        rank = r[..., _F["rank"]]
        return np.where(np.isnan(rank), np.nan, (rank == 0).astype(np.float64))
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def normalize(value: np.ndarray, clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """(value - corrupted) / (clean - corrupted); NaN where the baselines nearly coincide."""
    denom = np.asarray(clean - corrupted, dtype=np.float64)
    safe = np.where(np.abs(denom) < NORMALIZATION_EPS, np.nan, denom)
    return (value - corrupted) / safe


def compute(
    metric: str,
    readouts: np.ndarray,
    clean: np.ndarray,
    corrupted: np.ndarray,
    normalized: bool = False,
    per_pair_values: bool = False,
) -> np.ndarray:
    """The metric over patches: readouts (..., pairs, fields), baselines (pairs, fields).

    Averages over pairs unless ``per_pair_values``; then the pair axis stays last and each pair
    is normalised by its own baselines.
    """
    values = per_pair(metric, readouts)
    clean_m, corrupted_m = per_pair(metric, clean), per_pair(metric, corrupted)
    if not per_pair_values:
        values = values.mean(axis=-1)
        clean_m, corrupted_m = clean_m.mean(), corrupted_m.mean()
    return normalize(values, clean_m, corrupted_m) if normalized else values


def baselines(metric: str, clean: np.ndarray, corrupted: np.ndarray) -> dict[str, float]:
    """Unpatched metric values, averaged over pairs."""
    return {
        "clean": float(per_pair(metric, clean).mean()),
        "corrupted": float(per_pair(metric, corrupted).mean()),
    }
