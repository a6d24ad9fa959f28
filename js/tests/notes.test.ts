import { describe, expect, it } from "vitest";
import { drillOptions, drillRequest } from "../src/drill";
import { countOutsideUnit, guidanceNotes } from "../src/notes";
import type { SiteInfo } from "../src/protocol";

const base = { values: [[0.2, 0.8]], baselines: [{ clean: 3, corrupted: -1 }], corruption: "counterfactual prompts" };

describe("guidance notes", () => {
  it("warns about saturating and discrete metrics", () => {
    expect(guidanceNotes({ ...base, metric: "logit_diff", normalized: true })).toEqual([]);
    expect(guidanceNotes({ ...base, metric: "prob", normalized: false }).join(" ")).toMatch(/exponential/);
    expect(guidanceNotes({ ...base, metric: "accuracy", normalized: false }).join(" ")).toMatch(/confirm/);
  });

  it("flags normalised values clearly outside [0, 1], not small excursions", () => {
    expect(countOutsideUnit([[1.0000001, -1e-6, 1.0095, -0.0076, 0.5, 1.4, -0.2, -0.021, NaN]])).toBe(3);
    const notes = guidanceNotes({ ...base, metric: "logit_diff", normalized: true, values: [[1.4, -0.2]] });
    expect(notes.join(" ")).toMatch(/2 cells fall more than 2% outside/);
  });

  it("flags baselines too close to normalise", () => {
    const same = guidanceNotes({ ...base, metric: "logit_diff", normalized: true, baselines: [{ clean: 2, corrupted: 2 }] });
    expect(same.join(" ")).toMatch(/no gap/);
    const close = guidanceNotes({ ...base, metric: "logit_diff", normalized: true, baselines: [{ clean: 10, corrupted: 9.9 }] });
    expect(close.join(" ")).toMatch(/close/);
  });
});

describe("drill-down", () => {
  const sites: SiteInfo[] = ["head_by_pos", "mlp_out", "neuron", "head_q", "head_k", "head_v", "head_pattern"].map((name) => ({ name, reason: null, help: "" }));

  it("opens a residual cell's writers first and offers its readers", () => {
    const writers = drillRequest({ site: "resid_pre", layer: 1, pos: 4 }, "both", sites, 3);
    expect(writers).toMatchObject({ kind: "writers", site: "resid_pre", layers: [1], positions: [4], direction: "both" });
    const options = drillOptions({ site: "resid_pre", layer: 1, pos: 4 }, "both", sites, 3);
    expect(options.map((o) => o.request.kind)).toEqual(["writers", "sweep"]);
    expect(options[1].request).toMatchObject({ site: "head_by_pos", layers: [1], positions: [4] });
    // resid_post of layer 1 is read by layer 2; of the last layer by nothing patchable
    expect(drillOptions({ site: "resid_post", layer: 1, pos: 0 }, "noising", sites, 3)[1].request.layers).toEqual([2]);
    expect(drillOptions({ site: "resid_post", layer: 2, pos: 0 }, "noising", sites, 3).length).toBe(1);
    // only the embeddings write the stream entering layer 0: its readers open instead
    expect(drillRequest({ site: "resid_pre", layer: 0, pos: 2 }, "denoising", sites, 3)).toMatchObject({ site: "head_by_pos", layers: [0] });
    expect(drillOptions({ site: "resid_mid", layer: 0, pos: 2 }, "denoising", sites, 3)[1].request.site).toBe("neuron");
  });

  it("splits attention outputs into heads, MLP cells into neurons, heads into q/k/v/pattern", () => {
    const heads = drillRequest({ site: "attn_out", layer: 1, pos: 4 }, "both", sites);
    expect(heads).toMatchObject({ kind: "sweep", site: "head_by_pos", layers: [1], positions: [4], direction: "both" });
    expect(drillRequest({ site: "mlp_out", layer: 0, pos: 2 }, "noising", sites)).toMatchObject({ site: "neuron", layers: [0], positions: [2] });
    expect(drillRequest({ site: "head_by_pos", layer: 2, head: 1, pos: 3 }, "denoising", sites)).toMatchObject({ kind: "head_parts", layers: [2], heads: [1] });
    expect(typeof drillRequest({ site: "neuron", layer: 0, neuron: 5 }, "denoising", sites)).toBe("string");
  });

  it("explains when the finer site is unavailable", () => {
    const noPattern = sites.map((s) => (s.name === "head_pattern" ? { ...s, reason: "needs eager attention" } : s));
    expect(drillRequest({ site: "head", layer: 0, head: 0 }, "denoising", noPattern)).toMatch(/eager/);
  });
});
