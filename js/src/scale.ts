// What a view's colours mean: the colour scale's end, values beyond it, the largest effect in words,
// which colour says "this component matters", and noising shown as the drop from clean.
import { formatValue, scaleMax } from "./colors";
import type { Baselines } from "./metrics";
import type { Direction } from "./protocol";

/** `gap`: ±1 = the whole clean–corrupted gap (normalised only); `fit`: the largest |value| on
 * screen, shared by all panels; `locked`: a scale kept fixed while the data change. */
export type ScaleMode = "gap" | "fit" | "locked";

export interface ScaleChoice {
  mode: ScaleMode;
  locked: number | null;
}

export interface Scale {
  max: number;
  /** What the scale's end means, for the colour bar. */
  label: string;
}

/** The colour scale shared by every panel of a view. Raw values have no gap: `gap` fits them. */
export function scaleFor(choice: ScaleChoice, normalized: boolean, values: ArrayLike<number>[]): Scale {
  if (choice.mode === "locked" && choice.locked !== null && choice.locked > 0) {
    return { max: choice.locked, label: `locked at ±${formatValue(choice.locked, 3)}` };
  }
  if (choice.mode === "gap" && normalized) return { max: 1, label: "±1 = the whole clean–corrupted gap" };
  return { max: scaleMax(values), label: "fitted to the largest |value| on screen" };
}

/** Whether a value lies beyond the scale (it keeps the end colour and gets a mark). */
export function beyondScale(v: number, max: number): boolean {
  return Math.abs(v) > max * (1 + 1e-9);
}

/** Panel values as shown: normalised noising as the drop from clean (1 − value) when asked. */
export function displayValues(values: Float64Array, direction: Direction, normalized: boolean, drop: boolean): Float64Array {
  if (!(drop && normalized && direction === "noising")) return values;
  return values.map((v) => 1 - v);
}

/** The value of the run a patch starts from, in the units shown (0 or 1 when normalised). */
export function baseValue(direction: Direction, normalized: boolean, drop: boolean, base: Baselines): number {
  if (normalized) return direction === "noising" && !drop ? 1 : 0;
  return direction === "noising" ? base.clean : base.corrupted;
}

/** The cell that moves furthest from the base run, or null before any patch has finished. */
export function largestEffect(values: ArrayLike<number>, base: number): { index: number; effect: number } | null {
  let best: { index: number; effect: number } | null = null;
  for (let i = 0; i < values.length; i++) {
    const e = Math.abs(values[i] - base);
    if (Number.isFinite(e) && (best === null || e > best.effect)) best = { index: i, effect: e };
  }
  return best;
}

/** A fraction of the gap in percent with sensible digits: 0.0001 -> "0.01 %" (as plotting.py). */
export function formatPercent(fraction: number): string {
  const pct = Math.abs(100 * fraction);
  const text = pct >= 10 ? pct.toFixed(0) : pct >= 1 ? pct.toFixed(1) : String(Number(pct.toPrecision(2)));
  return `${fraction < 0 ? "-" : ""}${text} %`;
}

/** "largest effect: 0.01 % of the gap, at L1 @10". */
export function effectText(found: { effect: number } | null, normalized: boolean, metricLabel: string, where: string): string {
  if (!found) return "largest effect: none yet (no patch has finished)";
  const amount = normalized ? `${formatPercent(found.effect)} of the gap` : `${formatValue(found.effect, 3)} (${metricLabel})`;
  return `largest effect: ${amount}, at ${where}`;
}

/** Which colour means "this component matters" in a panel, in words. */
export function mattersText(direction: Direction, normalized: boolean, drop: boolean, base: Baselines): string {
  if (normalized) {
    if (direction === "denoising") return "matters = red: restoring it brings the behaviour back (1 = all of it)";
    if (drop) return "matters = red: corrupting it drops the behaviour (1 = all of it)";
    return "matters = pale or blue: corrupting it drops the behaviour from 1 (red = no effect)";
  }
  const target = direction === "denoising" ? base.clean : base.corrupted;
  const from = direction === "denoising" ? base.corrupted : base.clean;
  const colour = target > from ? "redder" : "bluer";
  const toward = direction === "denoising" ? "clean" : "corrupted";
  return `matters = ${colour} than the base run (${formatValue(from)}), towards ${toward} ${formatValue(target)}`;
}
