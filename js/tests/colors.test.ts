import { describe, expect, it } from "vitest";
import { colorbarTicks, divergingColor, formatValue, scaleMax, type RGB } from "../src/colors";

const saturation = ([r, g, b]: RGB) => Math.max(r, g, b) - Math.min(r, g, b);

describe("diverging colour scale", () => {
  it("is neutral grey at 0, red for positive and blue for negative values", () => {
    const [r0, g0, b0] = divergingColor(0, 2);
    expect(r0 === g0 && g0 === b0).toBe(true);
    const [rp, , bp] = divergingColor(2, 2);
    const [rn, , bn] = divergingColor(-2, 2);
    expect(rp).toBeGreaterThan(bp);
    expect(bn).toBeGreaterThan(rn);
  });

  it("grows stronger with |value| up to ±max, equally on both sides, and stops there", () => {
    const centre = divergingColor(0, 2);
    const strength = (c: RGB) => Math.hypot(c[0] - centre[0], c[1] - centre[1], c[2] - centre[2]);
    const steps = [0, 0.25, 0.5, 0.75, 1].map((t) => strength(divergingColor(2 * t, 2)));
    for (let i = 1; i < steps.length; i++) expect(steps[i]).toBeGreaterThan(steps[i - 1]);
    const neg = [0.25, 0.5, 0.75, 1].map((t) => strength(divergingColor(-2 * t, 2)));
    neg.forEach((s, i) => expect(Math.abs(s - steps[i + 1]) / steps[i + 1]).toBeLessThan(0.2));
    expect(divergingColor(7, 2)).toEqual(divergingColor(2, 2));
    expect(divergingColor(-7, 2)).toEqual(divergingColor(-2, 2));
    expect(divergingColor(1.9, 2)).not.toEqual(divergingColor(2, 2));
  });

  it("gives NaN a colour that no value has, and fits the largest finite |value|", () => {
    const nan = divergingColor(NaN, 1);
    expect(saturation(nan)).toBe(0);
    expect(nan).not.toEqual(divergingColor(0, 1));
    expect(scaleMax([[NaN, -0.25], new Float64Array([0.1])])).toBe(0.25);
    expect(scaleMax([[NaN]])).toBe(1);
    expect(scaleMax([])).toBe(1);
  });

  it("uses a dark neutral centre in dark themes", () => {
    const light = divergingColor(0, 1);
    const dark = divergingColor(0, 1, true);
    expect(dark[0]).toBeLessThan(light[0]);
    expect(saturation(dark)).toBe(0);
  });

  it("ticks are symmetric and values print compactly", () => {
    expect(colorbarTicks(2)).toEqual([-2, -1, 0, 1, 2]);
    expect(formatValue(0.123456)).toBe("0.1235");
    expect(formatValue(1234567)).toBe("1.235e+6");
    expect(formatValue(NaN)).toBe("–");
  });
});
