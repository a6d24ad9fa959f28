import { describe, expect, it } from "vitest";
import { colorbarTicks, divergingColor, formatValue, NAN_LIGHT, scaleMax } from "../src/colors";

describe("diverging colour scale", () => {
  it("is centred on 0 and reaches full colour at +-max", () => {
    expect(divergingColor(0, 2)).toEqual([247, 247, 247]);
    expect(divergingColor(2, 2)).toEqual([178, 24, 43]);
    expect(divergingColor(-2, 2)).toEqual([33, 102, 172]);
    expect(divergingColor(1, 2)).toEqual([239, 138, 98]);
    expect(divergingColor(-1, 2)).toEqual([103, 169, 207]);
  });

  it("is symmetric in strength and never clips inside the data range", () => {
    const max = scaleMax([[0.5, -3.5, 1.2]]);
    expect(max).toBe(3.5);
    expect(divergingColor(-3.5, max)).toEqual([33, 102, 172]);
    expect(divergingColor(3.4, max)).not.toEqual(divergingColor(3.5, max));
  });

  it("ignores NaN and falls back to 1 without data", () => {
    expect(scaleMax([[NaN, -0.25], new Float64Array([0.1])])).toBe(0.25);
    expect(scaleMax([[NaN]])).toBe(1);
    expect(scaleMax([])).toBe(1);
    expect(divergingColor(NaN, 1)).toEqual(NAN_LIGHT);
  });

  it("uses a dark centre in dark themes", () => {
    expect(divergingColor(0, 1, true)).toEqual([48, 48, 48]);
  });

  it("ticks are symmetric and values print compactly", () => {
    expect(colorbarTicks(2)).toEqual([-2, -1, 0, 1, 2]);
    expect(formatValue(0.123456)).toBe("0.1235");
    expect(formatValue(1234567)).toBe("1.235e+6");
    expect(formatValue(NaN)).toBe("–");
  });
});
