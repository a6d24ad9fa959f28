import { describe, expect, it } from "vitest";
import { baseValue, beyondScale, displayValues, effectText, formatPercent, largestEffect, mattersText, scaleFor } from "../src/scale";

describe("colour scale of a view", () => {
  const tiny = [new Float64Array([0.0001, -0.00005]), new Float64Array([0.00002, NaN])];

  it("keeps ±1 = the whole gap for normalised views, however small the values", () => {
    expect(scaleFor({ mode: "gap", locked: null }, true, tiny).max).toBe(1);
    expect(scaleFor({ mode: "fit", locked: null }, true, tiny).max).toBeCloseTo(0.0001, 12);
  });

  it("fits raw views symmetrically over every panel, and locks on request", () => {
    const raw = [new Float64Array([2, -1]), new Float64Array([-5, 3])];
    expect(scaleFor({ mode: "gap", locked: null }, false, raw).max).toBe(5); // no gap when raw
    const locked = scaleFor({ mode: "locked", locked: 2.5 }, false, raw);
    expect(locked.max).toBe(2.5);
    expect(locked.label).toMatch(/locked/);
    expect(beyondScale(-5, 2.5) && !beyondScale(2.5, 2.5)).toBe(true);
  });

  it("states the largest effect from the base run in words", () => {
    const noising = new Float64Array([1, 0.97, 0.2]);
    const found = largestEffect(noising, baseValue("noising", true, false, { clean: 3, corrupted: 1 }));
    expect(found).toEqual({ index: 2, effect: expect.closeTo(0.8, 12) });
    expect(effectText(largestEffect(tiny[0], 0), true, "logit difference", "L0 @1")).toBe("largest effect: 0.01 % of the gap, at L0 @1");
    expect(effectText(largestEffect(new Float64Array([NaN]), 0), true, "x", "")).toMatch(/none yet/);
    expect(effectText({ effect: 1.234 }, false, "logit difference", "L1")).toBe("largest effect: 1.23 (logit difference), at L1");
    expect([formatPercent(0.5), formatPercent(0.034), formatPercent(-0.0001)]).toEqual(["50 %", "3.4 %", "-0.01 %"]);
  });

  it("shows noising as the drop from clean only when asked, keeping the normalised values", () => {
    const norm = new Float64Array([1, 0.25, NaN]);
    expect(displayValues(norm, "noising", true, false)).toBe(norm);
    expect(Array.from(displayValues(norm, "noising", true, true))).toEqual([0, 0.75, NaN]);
    expect(displayValues(norm, "denoising", true, true)).toBe(norm);
    expect(Array.from(norm)).toEqual([1, 0.25, NaN]);
    expect(baseValue("noising", true, true, { clean: 1, corrupted: 0 })).toBe(0);
  });

  it("says which colour means 'this component matters' in each panel", () => {
    const base = { clean: 4, corrupted: -1 };
    expect(mattersText("denoising", true, false, base)).toMatch(/^matters = red/);
    expect(mattersText("noising", true, false, base)).toMatch(/^matters = pale or blue/);
    expect(mattersText("noising", true, true, base)).toMatch(/^matters = red/);
    expect(mattersText("denoising", false, false, base)).toMatch(/^matters = redder .*clean 4/);
    expect(mattersText("noising", false, false, base)).toMatch(/^matters = bluer .*corrupted -1/);
  });
});
