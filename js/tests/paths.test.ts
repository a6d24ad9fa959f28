import { describe, expect, it } from "vitest";
import { attentionGrid } from "../src/attention";
import { feedsRequest, pathStep, pathTrail, receiversOf } from "../src/paths";
import { componentKey, componentLabel, type AttentionMeta, type ViewRequest } from "../src/protocol";
import { Store } from "../src/store";

const l2h1 = { site: "head", layer: 2, head: 1 };
const l1h3 = { site: "head", layer: 1, head: 3 };

describe("paths", () => {
  it("builds the sweeps that ask what feeds a component", () => {
    expect(receiversOf(l2h1)).toEqual([
      { site: "head_q", layer: 2, head: 1 },
      { site: "head_k", layer: 2, head: 1 },
      { site: "head_v", layer: 2, head: 1 },
    ]);
    expect(receiversOf({ site: "mlp_out", layer: 1, pos: 14 })).toEqual([{ site: "mlp_in", layer: 1, pos: 14 }]);
    expect(receiversOf({ site: "resid_pre", layer: 1, pos: 3 })).toEqual([]);
    const req = feedsRequest({ site: "head_q", layer: 2, head: 1 }, "head", "denoising");
    expect(req).toMatchObject({ kind: "sweep", site: "head", label: "L2 H1 (q)", receivers: [{ site: "head_q", layer: 2, head: 1 }] });
  });

  it("shows the path walked and turns a picked sender into a circuit step", () => {
    const logits = feedsRequest("logits", "head", "denoising");
    const query = feedsRequest({ site: "head_q", layer: 2, head: 1 }, "head", "denoising");
    const plain: ViewRequest = { ...logits, receivers: undefined, label: "heads" };
    expect(pathTrail([logits, plain, query], l1h3, 2).join(" ← ")).toBe("logits ← L2 H1 (q) ← L1 H3");
    expect(pathTrail([logits, plain], l2h1, 0).join(" ← ")).toBe("logits ← L2 H1");
    expect(pathTrail([logits, plain, query], l2h1, 0).join(" ← ")).toBe("logits ← L2 H1 (q)"); // picked before
    expect(pathTrail([plain], l1h3, 0)).toEqual([]);
    const step = pathStep(l1h3, query)!;
    expect(componentLabel(step)).toBe("head L1 H3 → L2 H1 (q)");
    expect(componentKey(step)).not.toBe(componentKey(l1h3));
    expect(pathStep(l1h3, plain)).toBeNull();
    expect(pathStep({ site: "neuron", layer: 0, neuron: 2 }, query)).toBeNull();
  });

  it("averages attention patterns over pairs or shows one pair", () => {
    const meta: AttentionMeta = { id: 1, layer: 1, head: 3, n_pairs: 2, length: 2, clean_tokens: [["a", "b"], ["a", "c"]], corrupted_tokens: [["a", "d"], ["a", "e"]] };
    // clean pair 0, clean pair 1, corrupted pair 0, corrupted pair 1; each 2 x 2
    const data = new Float32Array([1, 0, 0.5, 0.5, 1, 0, 0.25, 0.75, 1, 0, 1, 0, 1, 0, 0.5, 0.5]);
    expect([...attentionGrid(meta, data, "clean", null)]).toEqual([1, 0, 0.375, 0.625]);
    expect([...attentionGrid(meta, data, "corrupted", 1)]).toEqual([1, 0, 0.5, 0.5]);
    expect([...attentionGrid(meta, data, "difference", 0)]).toEqual([0, 0, -0.5, 0.5]);
  });

  it("asks for a head's attention once its drill-down arrives, and keeps the reply", () => {
    const sent: Record<string, unknown>[] = [];
    const state: Record<string, unknown> = { result_meta: {}, circuit_meta: {}, circuit: [] };
    const model = { get: (k: string) => state[k], set: () => {}, save_changes: () => {}, send: (m: Record<string, unknown>) => sent.push(m) };
    const store = new Store(model as never);
    const drill: ViewRequest = { kind: "head_parts", site: "head", direction: "denoising", layers: [1], heads: [3], positions: null, neurons: null, label: "L1 H3" };
    store.runView(drill, false);
    const id = sent[0].id as number;
    const meta = { id, status: "done", request: drill, site: "head", kind: "head_parts", directions: ["denoising"], axes: ["part"], shape: [1], labels: {}, coords: {}, fixed: {}, n_pairs: 1, done: 1, total: 1, eta_s: null };
    store.handle({ type: "result", id, meta, status: "done" }, [new DataView(new Float32Array(18).buffer)]);
    expect(sent.at(-1)).toMatchObject({ type: "attention", layer: 1, head: 3 });
    const attMeta = { id: 9, layer: 1, head: 3, n_pairs: 1, length: 1, clean_tokens: [["a"]], corrupted_tokens: [["a"]] };
    store.handle({ type: "attention", id: sent.at(-1)!.id, meta: attMeta }, [new DataView(new Float32Array([1, 1]).buffer)]);
    expect(store.attention?.meta.head).toBe(3);
    expect([...store.attention!.data]).toEqual([1, 1]);
  });
});
