// How much a cell's effect varies between prompt pairs; mirrors patchwidget/spread.py (stderr)
// and `values(per_pair=True)` (one pair's values, normalised by that pair's own baselines).
import { cellNormalizer, mapCells, normalize, perPair } from "./metrics";
import { type Metric, N_FIELDS } from "./protocol";

/** z of a two-sided 95% normal interval: a cell is "consistent" when mean ± Z95·se excludes 0. */
export const Z95 = 1.959963984540054;

/** Standard error of the mean over pairs of the cell at `offset` (sample std / sqrt(n)); with
 * `minus`, of each pair's value minus that pair's value in `minus` (paired differences). */
export function cellStderr(
  metric: Metric,
  r: ArrayLike<number>,
  offset: number,
  nPairs: number,
  minus?: ArrayLike<number>,
): number {
  if (nPairs < 2) return NaN;
  const value = (p: number) =>
    perPair(metric, r, offset + p * N_FIELDS) - (minus ? perPair(metric, minus, p * N_FIELDS) : 0);
  let sum = 0;
  for (let p = 0; p < nPairs; p++) sum += value(p);
  const mean = sum / nPairs;
  let squares = 0;
  for (let p = 0; p < nPairs; p++) squares += (value(p) - mean) ** 2;
  return Math.sqrt(squares / (nPairs - 1)) / Math.sqrt(nPairs);
}

/** Every cell's standard error; normalised: of the pairs' effects (value minus the pair's own
 * corrupted value) over |clean − corrupted| of the mean baselines. */
export function stderrCells(
  metric: Metric,
  normalized: boolean,
  readouts: ArrayLike<number>,
  clean: ArrayLike<number>,
  corrupted: ArrayLike<number>,
  nPairs: number,
): Float64Array {
  const norm = cellNormalizer(metric, normalized, clean, corrupted, nPairs);
  const minus = normalized ? corrupted : undefined;
  return mapCells(readouts, nPairs, (o) =>
    norm.spread(cellStderr(metric, readouts, o, nPairs, minus)),
  );
}

/** One pair's value in every cell, normalised by that pair's own clean and corrupted values. */
export function pairCells(
  metric: Metric,
  normalized: boolean,
  readouts: ArrayLike<number>,
  clean: ArrayLike<number>,
  corrupted: ArrayLike<number>,
  nPairs: number,
  pair: number,
): Float64Array {
  const own = pair * N_FIELDS;
  const c = perPair(metric, clean, own);
  const k = perPair(metric, corrupted, own);
  return mapCells(readouts, nPairs, (o) => {
    const v = perPair(metric, readouts, o + own);
    return normalized ? normalize(v, c, k) : v;
  });
}

/** Whether mean ± Z95·se includes 0 (false when either is unknown). */
export function includesZero(mean: number, se: number): boolean {
  return Number.isFinite(mean) && Number.isFinite(se) && Math.abs(mean) <= Z95 * se;
}
