import { describe, expect, it } from "vitest";
import { METRICS } from "../src/protocol";
import { cellStderr, includesZero, pairCells, stderrCells, Z95 } from "../src/spread";
import fixtureJson from "./fixtures/spread.json";

const fixture = fixtureJson as {
  n_pairs: number;
  readouts: (number | null)[];
  clean: (number | null)[];
  corrupted: (number | null)[];
  expected: Record<string, (number | null)[]>;
};
const f32 = (xs: (number | null)[]) => Float32Array.from(xs, (x) => (x === null ? NaN : x));

function expectClose(got: Float64Array, want: (number | null)[]): void {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => {
    if (w === null) expect(got[i]).toBeNaN();
    else expect(Math.abs(got[i] - w)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(w)));
  });
}

describe("spread.ts mirrors PatchResult.stderr and per-pair values", () => {
  it("computes a hand-checked standard error", () => {
    // logit diffs of three pairs: 1, 2, 6 -> mean 3, sample std sqrt(7), se sqrt(7/3)
    const r = [1, 0, 9, 0, 0, 0, 2, 0, 9, 0, 0, 0, 6, 0, 9, 0, 0, 0];
    expect(cellStderr("logit_diff", r, 0, 3)).toBeCloseTo(Math.sqrt(7 / 3), 12);
    expect(cellStderr("logit_diff", r, 0, 1)).toBeNaN();
    expect(includesZero(3, 3 / Z95)).toBe(true);
    expect(includesZero(3, 2.9 / Z95)).toBe(false);
    expect(includesZero(NaN, 1)).toBe(false);
  });

  const r = f32(fixture.readouts);
  const clean = f32(fixture.clean);
  const corrupted = f32(fixture.corrupted);
  for (const metric of METRICS) {
    for (const norm of [false, true]) {
      const suffix = norm ? "_norm" : "";
      it(`${metric}${norm ? " normalised" : ""}`, () => {
        expectClose(
          stderrCells(metric, norm, r, clean, corrupted, fixture.n_pairs),
          fixture.expected[`stderr_${metric}${suffix}`],
        );
        expectClose(
          pairCells(metric, norm, r, clean, corrupted, fixture.n_pairs, 1),
          fixture.expected[`pair1_${metric}${suffix}`],
        );
      });
    }
  }
});
