"""How much a patching effect varies between prompt pairs: standard errors and bootstrap intervals.

Values are per pair with the pair axis last. A normalised mean is
``(mean(v) - mean(corrupted)) / (mean(clean) - mean(corrupted))``. Its standard error is that of
the pairs' own effects ``v - corrupted`` (paired: a pair's baseline does not count as spread),
over the fixed denominator; its bootstrap resamples values and baselines together.
``js/src/spread.ts`` computes the same standard error for the widget.
"""

from __future__ import annotations

import numpy as np

from . import metrics

Z95 = 1.959963984540054  # two-sided 95% normal quantile (the widget's dimming rule)


def standard_error(values: np.ndarray) -> np.ndarray:
    """Standard error of the mean over the last axis (sample std / sqrt(n)); NaN for n < 2."""
    n = values.shape[-1]
    if n < 2:
        return np.full(values.shape[:-1], np.nan)
    return values.std(axis=-1, ddof=1) / np.sqrt(n)


def normalized_standard_error(
    values: np.ndarray, clean: np.ndarray, corrupted: np.ndarray
) -> np.ndarray:
    """Standard error of the normalised mean: of the pairs' effects ``values - corrupted`` over
    ``|mean(clean) - mean(corrupted)|`` (per-pair baselines, pair axis last)."""
    denom = float(np.mean(clean) - np.mean(corrupted))
    if abs(denom) < metrics.NORMALIZATION_EPS:
        return np.full(values.shape[:-1], np.nan)
    return standard_error(values - corrupted) / abs(denom)


def bootstrap_interval(
    values: np.ndarray,
    clean: np.ndarray | None = None,
    corrupted: np.ndarray | None = None,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over pairs (last axis), normalised when the
    per-pair baselines are given. Resamples pairs with replacement, seeded."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    n = values.shape[-1]
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    weights = np.zeros((n, n_resamples))  # weights[p, b]: share of pair p in resample b
    np.add.at(weights, (draws, np.arange(n_resamples)[:, None]), 1 / n)
    means = values @ weights  # (..., resamples)
    if clean is not None and corrupted is not None:
        means = metrics.normalize(
            means, np.asarray(clean) @ weights, np.asarray(corrupted) @ weights
        )
    tail = (1 - level) / 2
    low = np.quantile(means, tail, axis=-1)
    high = np.quantile(means, 1 - tail, axis=-1)
    return low, high
