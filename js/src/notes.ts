// Guidance notes: pitfalls of the chosen metric and of the numbers on screen.
import { formatValue } from "./colors";
import type { Baselines } from "./metrics";
import { NORMALIZATION_EPS } from "./metrics";
import type { Metric } from "./protocol";
import { METRIC_LABELS } from "./text";

export interface NoteInput {
  metric: Metric;
  normalized: boolean;
  /** Displayed values of each panel (normalised when `normalized`). */
  values: ArrayLike<number>[];
  baselines: Baselines[];
  corruption: string;
  /** Cells whose patch gave NaN or inf (from the view's meta). */
  nonfinite?: string[];
}

/**
 * How far past 0 or 1 a normalised value must be to be pointed out: 2% of the clean-corrupted
 * gap. Smaller excursions are real but too small to teach anything; the tooltip still shows them.
 */
export const OUTSIDE_TOLERANCE = 0.02;

export function isOutsideUnit(v: number): boolean {
  return v < -OUTSIDE_TOLERANCE || v > 1 + OUTSIDE_TOLERANCE;
}

/** Cells with a finite value clearly outside [0, 1]. */
export function countOutsideUnit(values: ArrayLike<number>[]): number {
  let n = 0;
  for (const a of values) for (let i = 0; i < a.length; i++) if (isOutsideUnit(a[i])) n++;
  return n;
}

export function guidanceNotes(input: NoteInput): string[] {
  const notes: string[] = [];
  const name = METRIC_LABELS[input.metric];
  const bad = input.nonfinite ?? [];
  if (bad.length) {
    const shown =
      bad.slice(0, 3).join("; ") + (bad.length > 3 ? ` and ${bad.length - 3} more` : "");
    notes.push(
      `Patching ${shown} gave NaN or inf in the model's output: ${bad.length === 1 ? "that cell is" : "those cells are"} blank; every other cell is kept. Check the model's dtype (float16 overflow?) and the corruption's scale.`,
    );
  }
  if (input.metric === "prob") {
    notes.push(
      "Probability grows exponentially with the logits: the same push moves it a little near 0 and a lot mid-way, so maps look sharper than the effects are. Logit difference is the steadier guide while exploring.",
    );
  }
  if (input.metric === "accuracy" || input.metric === "rank") {
    notes.push(
      `${name[0].toUpperCase()}${name.slice(1)} only moves when the top answer changes, so partial effects stay invisible. Use it to confirm a circuit, not to search for one.`,
    );
  }
  if (input.metric === "logprob") {
    notes.push(
      "Log-probability flattens out once the answer is already the top guess, and can't tell a boost to both answers from a boost to the right one.",
    );
  }
  for (const b of input.baselines) {
    const gap = Math.abs(b.clean - b.corrupted);
    if (Number.isNaN(gap)) continue;
    const scale = Math.max(Math.abs(b.clean), Math.abs(b.corrupted));
    if (gap < NORMALIZATION_EPS) {
      notes.push(
        `Clean and corrupted runs give the same ${name} (${formatValue(b.clean)} vs ${formatValue(b.corrupted)}): there is no gap to normalise by${input.normalized ? ", so normalised values are blank" : ""}. Choose a corruption that changes the answer, or another metric.`,
      );
      break;
    }
    if (input.normalized && gap < 0.05 * scale) {
      notes.push(
        `Clean (${formatValue(b.clean)}) and corrupted (${formatValue(b.corrupted)}) ${name} are close: normalising divides by a small gap and magnifies noise. Compare the raw values too.`,
      );
      break;
    }
  }
  if (input.normalized) {
    const n = countOutsideUnit(input.values);
    if (n > 0) {
      notes.push(
        `${n} cell${n === 1 ? "" : "s"} fall more than 2% outside [0, 1] (dotted). Below 0 the patch pushes towards the corrupted behaviour (a component working against the answer); above 1 it overshoots the clean run. Both are findings, not errors.`,
      );
    }
  }
  if (/Noise|Ablation/.test(input.corruption)) {
    notes.push(
      "This corruption is not a counterfactual prompt: noise and ablations can push the model off its usual inputs, so effects may reflect damage rather than the task.",
    );
  }
  return notes;
}
