// Metrics from readouts; mirrors patchwidget/metrics.py exactly (keep the two identical).
import { type Metric, N_FIELDS } from "./protocol";

export const NORMALIZATION_EPS = 1e-6;
const LOGIT_CORRECT = 0;
const LOGIT_INCORRECT = 1;
const LSE = 2;
const KL_CLEAN = 3;
const RANK = 5;

/** The metric of one readout vector starting at `o` in `r`. */
export function perPair(metric: Metric, r: ArrayLike<number>, o: number): number {
  switch (metric) {
    case "logit_diff":
      return r[o + LOGIT_CORRECT] - r[o + LOGIT_INCORRECT];
    case "logprob":
      return r[o + LOGIT_CORRECT] - r[o + LSE];
    case "prob":
      return Math.exp(r[o + LOGIT_CORRECT] - r[o + LSE]);
    case "kl":
      return r[o + KL_CLEAN];
    case "rank":
      return r[o + RANK];
    case "accuracy": {
      const rank = r[o + RANK];
      return Number.isNaN(rank) ? NaN : rank === 0 ? 1 : 0;
    }
  }
}

/** Mean over pairs of the metric for the cell whose readouts start at `offset`. */
export function meanOverPairs(
  metric: Metric,
  r: ArrayLike<number>,
  offset: number,
  nPairs: number,
): number {
  let sum = 0;
  for (let p = 0; p < nPairs; p++) sum += perPair(metric, r, offset + p * N_FIELDS);
  return sum / nPairs;
}

/** (value - corrupted) / (clean - corrupted); NaN when the baselines nearly coincide. */
export function normalize(value: number, clean: number, corrupted: number): number {
  const denom = clean - corrupted;
  return Math.abs(denom) < NORMALIZATION_EPS ? NaN : (value - corrupted) / denom;
}

export interface Baselines {
  clean: number;
  corrupted: number;
}

/** Unpatched metric values, averaged over pairs. */
export function baselines(
  metric: Metric,
  clean: ArrayLike<number>,
  corrupted: ArrayLike<number>,
  nPairs: number,
): Baselines {
  return {
    clean: meanOverPairs(metric, clean, 0, nPairs),
    corrupted: meanOverPairs(metric, corrupted, 0, nPairs),
  };
}

/** The metric for every cell (NaN where a patch has not run yet). */
export function computeCells(
  metric: Metric,
  normalized: boolean,
  readouts: ArrayLike<number>,
  clean: ArrayLike<number>,
  corrupted: ArrayLike<number>,
  nPairs: number,
): Float64Array {
  const stride = nPairs * N_FIELDS;
  const n = Math.floor(readouts.length / stride);
  const out = new Float64Array(n);
  const b = baselines(metric, clean, corrupted, nPairs);
  for (let i = 0; i < n; i++) {
    const v = meanOverPairs(metric, readouts, i * stride, nPairs);
    out[i] = normalized ? normalize(v, b.clean, b.corrupted) : v;
  }
  return out;
}
