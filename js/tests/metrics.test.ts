import { describe, expect, it } from "vitest";
import { baselines, computeCells, normalize, perPair } from "../src/metrics";
import { METRICS } from "../src/protocol";
import fixtureJson from "./fixtures/metrics.json";

interface Case {
  name: string;
  n_pairs: number;
  readouts: (number | null)[];
  clean: (number | null)[];
  corrupted: (number | null)[];
  expected: Record<string, (number | null)[]>;
}


const fixture = fixtureJson as { cases: Case[] };
const f32 = (xs: (number | null)[]) => Float32Array.from(xs, (x) => (x === null ? NaN : x));

describe("metrics.ts mirrors patchwidget.metrics", () => {
  it("matches hand-computed values", () => {
    // logit_correct, logit_incorrect, lse, kl_clean, kl_corrupted, rank
    const r = [3, 1, 4, 0.5, 0.25, 0];
    expect(perPair("logit_diff", r, 0)).toBe(2);
    expect(perPair("logprob", r, 0)).toBe(-1);
    expect(perPair("prob", r, 0)).toBeCloseTo(Math.exp(-1), 15);
    expect(perPair("kl", r, 0)).toBe(0.5);
    expect(perPair("rank", r, 0)).toBe(0);
    expect(perPair("accuracy", r, 0)).toBe(1);
    expect(perPair("accuracy", [0, 0, 0, 0, 0, 3], 0)).toBe(0);
    expect(perPair("accuracy", [0, 0, 0, 0, 0, NaN], 0)).toBeNaN();
    expect(normalize(1, 2, 0)).toBe(0.5);
    expect(normalize(3, 2, 0)).toBe(1.5); // never clipped
    expect(normalize(1, 1, 1 - 1e-7)).toBeNaN();
    // two pairs: mean over pairs first, then normalise by the mean baselines
    const clean = [2, 0, 5, 0, 0, 0, 4, 0, 5, 0, 0, 0]; // logit diffs 2, 4 -> 3
    const corrupted = [0, 1, 5, 0, 0, 1, 0, 1, 5, 0, 0, 1]; // -1, -1 -> -1
    const cells = [1, 0, 5, 0, 0, 0, 0, 0, 5, 0, 0, 0]; // 1, 0 -> 0.5
    expect(baselines("logit_diff", clean, corrupted, 2)).toEqual({ clean: 3, corrupted: -1 });
    expect(Array.from(computeCells("logit_diff", true, cells, clean, corrupted, 2))).toEqual([0.375]);
  });

  for (const c of fixture.cases) {
    for (const metric of METRICS) {
      for (const norm of [false, true]) {
        it(`${c.name}: ${metric}${norm ? " normalised" : ""}`, () => {
          const got = computeCells(metric, norm, f32(c.readouts), f32(c.clean), f32(c.corrupted), c.n_pairs);
          const want = c.expected[`${metric}${norm ? "_norm" : ""}`];
          expect(got.length).toBe(want.length);
          want.forEach((w, i) => {
            if (w === null) expect(got[i]).toBeNaN();
            else expect(Math.abs(got[i] - w)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(w)));
          });
        });
      }
    }
  }

  it("computes every cell of a large grid as the mean over pairs, normalised by the baselines", () => {
    const nPairs = 8;
    const cells = 12 * 12 * 15;
    const readouts = new Float32Array(cells * nPairs * 6).map((_, i) => Math.sin(i));
    const clean = new Float32Array(nPairs * 6).map((_, i) => Math.cos(i) * 3);
    const corrupted = new Float32Array(nPairs * 6).map((_, i) => Math.sin(i) * 2);
    const diff = (r: Float32Array, o: number) => r[o] - r[o + 1];
    const mean = (r: Float32Array, start: number) => {
      let s = 0;
      for (let p = 0; p < nPairs; p++) s += diff(r, start + p * 6);
      return s / nPairs;
    };
    const got = computeCells("logit_diff", true, readouts, clean, corrupted, nPairs);
    expect(got.length).toBe(cells);
    const c = mean(clean, 0);
    const k = mean(corrupted, 0);
    for (const cell of [0, 1, 977, cells - 1]) {
      expect(got[cell]).toBeCloseTo((mean(readouts, cell * nPairs * 6) - k) / (c - k), 9);
    }
  });
});
