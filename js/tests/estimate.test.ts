import { describe, expect, it } from "vitest";
import { splitView } from "../src/decode";
import { disagreements, estimateFloats, exactCount, rankCorrelation, splitEstimate, sweepSize } from "../src/estimate";
import type { ViewMeta } from "../src/protocol";

function meta(method: "exact" | "attribution"): ViewMeta {
  return {
    id: 3,
    status: "running",
    request: { kind: "sweep", site: "head", direction: "both", layers: null, heads: null, positions: null, neurons: null, label: "", method },
    site: "head",
    kind: "sweep",
    directions: ["denoising", "noising"],
    axes: ["layer", "head"],
    shape: [1, 2],
    labels: {},
    coords: {},
    fixed: {},
    n_pairs: 1,
    done: 0,
    total: 4,
    eta_s: null,
    method,
  };
}

describe("fast estimate", () => {
  it("splits panels and the estimate section of an attribution view", () => {
    const m = meta("attribution");
    // per direction: readouts 2x6, clean 6, corrupted 6 -> 24 floats; then per direction 12 + 2
    const panels = 2 * 24;
    const data = new Float32Array(panels + estimateFloats(m)).map((_, i) => i);
    expect(estimateFloats(m)).toBe(28);
    const split = splitView(m, data.buffer);
    expect(split[1].readouts[0]).toBe(24);
    const est = splitEstimate(m, data.buffer)!;
    expect(est.map((s) => s.direction)).toEqual(["denoising", "noising"]);
    expect(est[0].estimate[0]).toBe(48);
    expect(est[0].exact).toEqual(new Float32Array([60, 61]));
    expect(est[1].estimate[0]).toBe(62);
    expect(est[1].exact).toEqual(new Float32Array([74, 75]));
    expect(splitEstimate(meta("exact"), data.buffer)).toBeNull();
    expect(() => splitView(meta("exact"), data.buffer)).toThrow(/expected 48/);
  });

  it("counts exact cells and orders disagreements largest first, exact cells only", () => {
    const flags = new Float32Array([1, 0, 1, 1]);
    expect(exactCount([{ direction: "denoising", estimate: new Float32Array(), exact: flags }])).toEqual({ exact: 3, total: 4 });
    const est = new Float64Array([1, 9, 3, 2]);
    const exact = new Float64Array([1.5, 0, 0, 2]);
    expect(disagreements(est, exact, flags, 2)).toEqual([2, 0]);
  });

  it("rank correlation matches hand-computed values, ties averaged", () => {
    expect(rankCorrelation([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1);
    expect(rankCorrelation([1, 1, 2], [1, 2, 3])).toBeCloseTo(Math.sqrt(3) / 2);
    expect(rankCorrelation([1], [2])).toBeNaN();
  });

  it("sizes sweeps to propose the estimate for long ones", () => {
    const info = { n_layers: 12, n_heads: 12, d_mlp: 3072 };
    expect(sweepSize("neuron", info, 15)).toBe(36864);
    expect(sweepSize("head_by_pos", info, 15)).toBe(2160);
    expect(sweepSize("head", info, 15)).toBe(144);
    expect(sweepSize("resid_pre", info, 15)).toBe(180);
  });
});

describe("EstimateToggle", () => {
  it("proposes the estimate for long sweeps and withdraws its own proposal for short ones", async () => {
    const { EstimateToggle } = await import("../src/estimate");
    const { Disposer } = await import("../src/dom");
    const state: Record<string, unknown> = {
      info: { n_layers: 12, n_heads: 12, d_mlp: 3072 },
      prompts: { position_labels: new Array(15).fill("x") },
    };
    const store = { get: (k: string) => state[k] } as unknown as import("../src/store").Store;
    const d = new Disposer();
    const toggle = new EstimateToggle(store, d);
    const box = toggle.el.querySelector("input")!;
    expect(toggle.method).toBe("exact");
    toggle.propose("neuron");
    expect(toggle.method).toBe("attribution");
    expect(toggle.el.textContent).toContain("36,864 patches");
    toggle.propose("head");
    expect(toggle.method).toBe("exact");
    box.checked = true; // the user's own choice stays
    box.dispatchEvent(new Event("change"));
    toggle.propose("head");
    expect(toggle.method).toBe("attribution");
    d.dispose();
  });
});
