import { describe, expect, it } from "vitest";
import { splitCircuit, splitView, toFloat32 } from "../src/decode";
import type { CircuitMeta, ViewMeta } from "../src/protocol";
import { sweepRequest, viewMeta } from "./viewResults";

function meta(shape: number[], directions: ("denoising" | "noising")[], nPairs = 2): ViewMeta {
  return viewMeta({
    request: sweepRequest({ direction: "both" }),
    directions,
    shape,
    n_pairs: nPairs,
  });
}

describe("binary decoding", () => {
  it("reads little-endian float32 from a DataView, aligned or not", () => {
    const values = [1.5, -2, NaN, 3.25];
    const buf = new ArrayBuffer(4 * values.length + 1);
    const dv = new DataView(buf, 1);
    values.forEach((v, i) => {
      dv.setFloat32(4 * i, v, true);
    });
    const out = toFloat32(dv);
    expect(out.length).toBe(4);
    expect(out[0]).toBe(1.5);
    expect(out[1]).toBe(-2);
    expect(out[2]).toBeNaN();
    expect(out[3]).toBe(3.25);
    expect(toFloat32(new Float32Array(values).buffer)[3]).toBe(3.25);
  });

  it("splits a view into panels: readouts, clean, corrupted per direction", () => {
    const m = meta([2, 3], ["denoising", "noising"]);
    const per = 2 * 3 * 2 * 6 + 2 * 2 * 6;
    const data = Float32Array.from({ length: 2 * per }, (_, i) => i);
    const panels = splitView(m, new DataView(data.buffer));
    expect(panels.map((p) => p.direction)).toEqual(["denoising", "noising"]);
    expect(panels[0].readouts.length).toBe(72);
    expect(panels[0].clean[0]).toBe(72);
    expect(panels[0].corrupted[0]).toBe(84);
    expect(panels[1].readouts[0]).toBe(per);
    expect(() => splitView(m, new DataView(data.buffer, 0, 8))).toThrow(/expected/);
  });

  it("splits a circuit check into its entries", () => {
    const m: CircuitMeta = {
      id: 2,
      components: [],
      entries: [
        { direction: "denoising", which: "circuit" },
        { direction: "noising", which: "complement" },
      ],
      n_pairs: 1,
    };
    const data = Float32Array.from({ length: 2 * 3 * 6 }, (_, i) => i);
    const entries = splitCircuit(m, data.buffer);
    expect(entries[1].which).toBe("complement");
    expect(entries[1].readouts[0]).toBe(18);
    expect(entries[1].corrupted[5]).toBe(35);
  });
});
