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

/** One value per cell of `readouts` (`nPairs` readout vectors a cell): `cell` gets the offset of
 * the cell's first readout. */
export function mapCells(
  readouts: ArrayLike<number>,
  nPairs: number,
  cell: (offset: number) => number,
): Float64Array {
  const stride = nPairs * N_FIELDS;
  const out = new Float64Array(Math.floor(readouts.length / stride));
  for (let i = 0; i < out.length; i++) out[i] = cell(i * stride);
  return out;
}

/** Normalises the values (`mean`) and standard errors (`spread`) of a view's cells. */
export interface CellNormalizer {
  mean(value: number): number;
  spread(value: number): number;
}

/** By the mean baselines when `normalized`: a value to (value − corrupted) / (clean − corrupted),
 * a spread to spread / |clean − corrupted|, both NaN when the baselines nearly coincide;
 * otherwise unchanged. */
export function cellNormalizer(
  metric: Metric,
  normalized: boolean,
  clean: ArrayLike<number>,
  corrupted: ArrayLike<number>,
  nPairs: number,
): CellNormalizer {
  if (!normalized) return { mean: (v) => v, spread: (v) => v };
  const b = baselines(metric, clean, corrupted, nPairs);
  const gap = Math.abs(b.clean - b.corrupted);
  const scale = gap < NORMALIZATION_EPS ? NaN : 1 / gap;
  return { mean: (v) => normalize(v, b.clean, b.corrupted), spread: (v) => v * scale };
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
  const norm = cellNormalizer(metric, normalized, clean, corrupted, nPairs);
  return mapCells(readouts, nPairs, (o) => norm.mean(meanOverPairs(metric, readouts, o, nPairs)));
}
