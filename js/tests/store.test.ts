import { describe, expect, it, vi } from "vitest";
import widget from "../src/index";
import type { ViewMeta, ViewRequest, WidgetState } from "../src/protocol";
import { Store } from "../src/store";

type Handler = (...args: unknown[]) => void;

/** A stand-in for anywidget's model: records sent messages and listeners. */
function fakeModel(overrides: Partial<WidgetState> = {}) {
  const state: Record<string, unknown> = {
    _model_key: Math.random().toString(36),
    info: {},
    sites: [{ name: "resid_pre", reason: null, help: "" }, { name: "head_by_pos", reason: null, help: "" }, { name: "neuron", reason: "not here", help: "" }],
    directions: { denoising: null, noising: null },
    prompts: { clean: ["a b"], corrupted: ["a c"], answers: [[" x", " y"]], clean_tokens: [["a", " b"]], corrupted_tokens: [["a", " c"]], diff_positions: [1], position_labels: ["0: a", "1: b"], answer_tokens: [[" x", " y"]], corruption: "counterfactual prompts" },
    status: "idle",
    result_meta: {},
    result_bytes: null,
    circuit_meta: {},
    circuit_bytes: null,
    site: "resid_pre",
    direction: "denoising",
    metric: "logit_diff",
    normalized: true,
    circuit: [],
    ...overrides,
  };
  const listeners = new Map<string, Set<Handler>>();
  const sent: Record<string, unknown>[] = [];
  return {
    sent,
    listeners,
    get: (k: string) => state[k],
    // Like Backbone: a changed value fires `change:<key>` at once.
    set: (k: string, v: unknown) => {
      const changed = state[k] !== v;
      state[k] = v;
      if (changed) listeners.get(`change:${k}`)?.forEach((fn) => fn());
    },
    save_changes: () => {},
    send: (msg: Record<string, unknown>) => sent.push(msg),
    on: (name: string, fn: Handler) => {
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name)!.add(fn);
    },
    off: (name: string, fn: Handler) => listeners.get(name)?.delete(fn),
    emit: (name: string, ...args: unknown[]) => listeners.get(name)?.forEach((fn) => fn(...args)),
    widget_manager: {} as never,
  };
}

const request: ViewRequest = { kind: "sweep", site: "resid_pre", direction: "denoising", layers: null, heads: null, positions: null, neurons: null, label: "resid_pre" };

function viewReply(id: number, values: number[], status = "done"): [Record<string, unknown>, DataView[]] {
  const nPairs = 1;
  const meta: ViewMeta = {
    id,
    status: status as ViewMeta["status"],
    request,
    site: "resid_pre",
    kind: "sweep",
    directions: ["denoising"],
    axes: ["layer", "pos"],
    shape: [1, values.length],
    labels: { layer: ["L0"], pos: values.map((_, i) => `${i}`) },
    coords: { layer: [0], pos: values.map((_, i) => i) },
    fixed: {},
    n_pairs: nPairs,
    done: values.length,
    total: values.length,
    eta_s: null,
  };
  // logit_diff = value; clean baseline 1, corrupted 0
  const data = new Float32Array(values.length * 6 + 12);
  values.forEach((v, i) => (data[i * 6] = v));
  data[values.length * 6] = 1;
  return [{ type: "result", id, meta, status }, [new DataView(data.buffer)]];
}

describe("Store", () => {
  it("ignores stale replies and keeps the newest view", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.runView(request, false);
    store.runView({ ...request, direction: "noising" }, false);
    const [firstId, secondId] = model.sent.map((m) => m.id as number);
    expect(firstId).toBeLessThan(secondId);
    store.handle(...viewReply(firstId, [5, 5]));
    expect(store.current?.view).toBeNull();
    expect(store.status).toBe("running");
    store.handle({ type: "superseded", id: firstId }, []);
    store.handle(...viewReply(secondId, [0.25, 0.75]));
    expect(store.current?.view?.meta.id).toBe(secondId);
    expect(store.status).toBe("idle");
  });

  it("shows kernel errors and sets the error status", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.setPrompts("a b", "a", " x| y");
    const id = model.sent[0].id as number;
    store.handle({ type: "error", id, kind: "set_prompts", message: "token counts differ", field: "corrupted" }, []);
    expect(store.status).toBe("error");
    expect(store.promptError?.field).toBe("corrupted");
  });

  it("drills down with a breadcrumb and goes back without rerunning", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.runView(request, false);
    store.handle(...viewReply(model.sent[0].id as number, [1, 2]));
    store.runView({ ...request, site: "head_by_pos", label: "L0 → heads" }, true);
    expect(store.crumbs.map((c) => c.label)).toEqual(["resid_pre", "L0 → heads"]);
    store.goTo(0);
    expect(store.crumbs.length).toBe(1);
    expect(store.current?.view).not.toBeNull();
    expect(model.sent.filter((m) => m.type === "sweep").length).toBe(2);
    expect(model.sent.at(-1)?.type).toBe("cancel"); // the unfinished drill-down is cancelled
  });

  it("restores the saved result from traitlets", () => {
    const [reply, buffers] = viewReply(7, [0.5]);
    const model = fakeModel({ result_meta: reply.meta as ViewMeta, result_bytes: buffers[0] });
    const store = new Store(model as never);
    expect(store.current?.view?.meta.id).toBe(7);
    store.autoRun(request);
    expect(model.sent.length).toBe(0);
  });
});

describe("render", () => {
  it("renders the hooks, auto-runs once, shows values and removes its listeners", async () => {
    document.body.dataset.pwTestValues = "1";
    const model = fakeModel();
    const cleanupModel = widget.initialize({ model: model as never });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = widget.render({ model: model as never, el });
    for (const id of ["pw-root", "pw-site", "pw-direction", "pw-metric", "pw-normalized", "pw-run", "pw-cancel", "pw-progress", "pw-tokens-clean", "pw-copy-code"]) {
      expect(el.querySelector(`[data-testid="${id}"]`), id).not.toBeNull();
    }
    expect(el.querySelector('[data-testid="pw-tokens-clean"] .pw-diff')?.textContent).toBe("␣b");
    expect(el.querySelector<HTMLOptionElement>('option[value="neuron"]')?.disabled).toBe(true);
    expect(model.sent.filter((m) => m.type === "sweep").length).toBe(1);
    expect(el.querySelector('[data-testid="pw-root"]')?.getAttribute("data-status")).toBe("running");
    model.emit("msg:custom", ...viewReply(model.sent[0].id as number, [0.25, 1.5]));
    await new Promise((r) => setTimeout(r, 40));
    const map = el.querySelector('[data-testid="pw-heatmap"]')!;
    expect(JSON.parse(map.getAttribute("data-values")!)).toEqual([[0.25, 1.5]]);
    expect(el.querySelector('[data-testid="pw-root"]')?.getAttribute("data-status")).toBe("idle");
    expect(el.querySelector('[data-testid="pw-note"]')?.textContent).toMatch(/outside \[0, 1\]/);

    const second = document.createElement("div");
    const cleanupSecond = widget.render({ model: model as never, el: second });
    expect(model.sent.filter((m) => m.type === "sweep").length).toBe(1); // no second auto-run

    cleanupSecond();
    cleanup();
    expect(el.children.length).toBe(0);
    cleanupModel();
    expect([...model.listeners.values()].every((s) => s.size === 0)).toBe(true);
  });
});

describe("Store: settings, notes and circuits", () => {
  it("reruns on a site or direction change from a control or from Python, keeping the breadcrumb", () => {
    const model = fakeModel();
    const cleanupModel = widget.initialize({ model: model as never });
    const sweeps = () => model.sent.filter((m) => m.type === "sweep");
    model.set("site", "head_by_pos"); // as `w.site = "head_by_pos"` in Python
    expect(sweeps().at(-1)).toMatchObject({ site: "head_by_pos", direction: "denoising" });
    model.set("metric", "prob");
    expect(sweeps().length).toBe(1); // a metric only recolours
    model.set("direction", "noising");
    expect(sweeps().length).toBe(2);
    expect(sweeps().at(-1)).toMatchObject({ site: "head_by_pos", direction: "noising" });
    cleanupModel();
  });

  it("shows one crumb per level after a direction switch", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.runView(request, false);
    store.runView({ ...request, site: "head_by_pos", label: "L0 → heads" }, true);
    store.rerunIn("both");
    expect(store.crumbs.map((c) => c.label)).toEqual(["resid_pre", "L0 → heads"]);
    expect(store.crumbs.every((c) => c.request.direction === "both")).toBe(true);
    store.goTo(0);
    store.rerunIn("noising");
    expect(store.crumbs.map((c) => c.label)).toEqual(["resid_pre"]);
  });

  it("clears notes of an earlier view and outdated circuit tables", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.runView(request, false);
    store.handle(...viewReply(model.sent[0].id as number, [1, 2], "cancelled"));
    expect(store.message).toMatch(/Cancelled/);
    store.runView(request, false);
    expect(store.message).toBe("");
    store.handle({ type: "saved", id: 99, path: "/tmp/x.png" }, []);
    expect(store.message).toContain("/tmp/x.png");
    store.toggleCircuit({ site: "resid_pre", layer: 0, pos: 1 });
    store.patchCircuit();
    const id = model.sent.at(-1)!.id as number;
    const entries = ["circuit", "complement"].flatMap((which) => ["denoising", "noising"].map((direction) => ({ direction, which })));
    store.handle({ type: "circuit_result", id, meta: { id, components: [], entries, n_pairs: 1 } }, [new DataView(new Float32Array(4 * 18).buffer)]);
    expect(store.circuitResult).not.toBeNull();
    expect(store.message).toBe("");
    store.toggleCircuit({ site: "resid_pre", layer: 0, pos: 0 });
    expect(store.circuitResult).toBeNull();
  });

  it("sweeps new prompts at once and sends the scale and drop with a saved file", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.setPrompts("a b", "a c", " x| y");
    store.handle({ type: "prompts_set", id: model.sent[0].id as number }, []);
    expect(model.sent.at(-1)).toMatchObject({ type: "sweep", site: "resid_pre" });
    store.handle(...viewReply(model.sent.at(-1)!.id as number, [1, 2]));
    store.setScale("locked", 0.5);
    store.setDrop(true);
    store.saveView("export_csv");
    expect(model.sent.at(-1)).toMatchObject({ type: "export_csv", scale: 0.5, drop: true, metric: "logit_diff" });
  });
});

describe("render: scale, legends, pairs and listeners", () => {
  const twoPairs = {
    clean: ["a b c", "a d c"],
    corrupted: ["a e c", "a d f"],
    answers: [[" x", " y"], [" x", " y"]] as [string, string][],
    clean_tokens: [["a", " b", " c"], ["a", " d", " c"]],
    corrupted_tokens: [["a", " e", " c"], ["a", " d", " f"]],
    diff_positions: [1, 2],
    position_labels: ["0: a", "1: b/e", "2: c"],
    answer_tokens: [[" x", " y"], [" x", " zeb"]] as [string, string][],
    corruption: "counterfactual prompts",
    unknown: { clean: [[false, false, false], [false, true, false]], corrupted: [[false, false, false], [false, true, false]], answers: [[false, false], [false, true]] },
  };

  it("states the largest effect, the fixed gap scale and what matters; values in the DOM only for tests", async () => {
    delete document.body.dataset.pwTestValues;
    const model = fakeModel();
    widget.initialize({ model: model as never });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = widget.render({ model: model as never, el });
    model.emit("msg:custom", ...viewReply(model.sent[0].id as number, [0.0001, -0.00005]));
    await new Promise((r) => setTimeout(r, 40));
    expect(el.querySelector('[data-testid="pw-largest-effect"]')?.textContent).toBe("largest effect: 0.01 % of the gap, at residual stream entering L0 at position 0: a");
    expect(el.querySelector('[data-testid="pw-colorbar"]')?.getAttribute("data-max")).toBe("1");
    expect(el.querySelector('[data-testid="pw-matters"]')?.textContent).toMatch(/^matters = red/);
    expect(el.querySelector('[data-testid="pw-heatmap"]')?.hasAttribute("data-values")).toBe(false);
    const scale = el.querySelector<HTMLSelectElement>('[data-testid="pw-scale"]')!;
    scale.value = "fit";
    scale.dispatchEvent(new Event("change"));
    await new Promise((r) => setTimeout(r, 40));
    expect(Number(el.querySelector('[data-testid="pw-colorbar"]')?.getAttribute("data-max"))).toBeCloseTo(0.0001, 8);
    cleanup();
  });

  it("shows the chosen pair's tokens, its differing positions and unknown words", () => {
    const model = fakeModel({ prompts: twoPairs });
    widget.initialize({ model: model as never });
    const el = document.createElement("div");
    const cleanup = widget.render({ model: model as never, el });
    const diffs = () => Array.from(el.querySelectorAll('[data-testid="pw-tokens-clean"] .pw-diff')).map((x) => x.getAttribute("data-pos"));
    expect(diffs()).toEqual(["1"]);
    expect(el.querySelector('[data-testid="pw-unknown-note"]')?.hasAttribute("hidden")).toBe(false);
    const pair = el.querySelector<HTMLSelectElement>('[data-testid="pw-pair"]')!;
    pair.value = "1";
    pair.dispatchEvent(new Event("change", { bubbles: true }));
    expect(diffs()).toEqual(["2"]);
    expect(el.querySelector('[data-testid="pw-tokens-clean"] [data-unknown]')?.getAttribute("data-pos")).toBe("1");
    expect(el.querySelector(".pw-incorrect")?.getAttribute("data-unknown")).toBe("true");
    cleanup();
  });

  it("names positions after the pair shown", async () => {
    const model = fakeModel({ prompts: twoPairs });
    widget.initialize({ model: model as never });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = widget.render({ model: model as never, el });
    model.emit("msg:custom", ...viewReply(model.sent[0].id as number, [0, 0, 0.5]));
    await new Promise((r) => setTimeout(r, 40));
    const effect = () => el.querySelector('[data-testid="pw-largest-effect"]')?.textContent ?? "";
    expect(effect()).toContain("position 2: c");
    const pair = el.querySelector<HTMLSelectElement>('[data-testid="pw-pair"]')!;
    pair.value = "1";
    pair.dispatchEvent(new Event("change", { bubbles: true }));
    await new Promise((r) => setTimeout(r, 40));
    expect(effect()).toContain("position 2:  c/ f");
    cleanup();
  });

  it("keeps a constant number of listeners while panels are rebuilt and removes all on cleanup", async () => {
    const live = new Set<string>();
    const add = EventTarget.prototype.addEventListener;
    const remove = EventTarget.prototype.removeEventListener;
    const ids = new WeakMap<object, number>();
    let next = 0;
    const key = (t: object, type: string, fn: unknown) => {
      if (!ids.has(t)) ids.set(t, next++);
      if (!ids.has(fn as object)) ids.set(fn as object, next++);
      return `${ids.get(t)}:${type}:${ids.get(fn as object)}`;
    };
    EventTarget.prototype.addEventListener = function (type: string, fn: never, opts?: never) {
      if (this instanceof HTMLElement) live.add(key(this, type, fn));
      return add.call(this, type, fn, opts);
    };
    EventTarget.prototype.removeEventListener = function (type: string, fn: never, opts?: never) {
      live.delete(key(this, type, fn));
      return remove.call(this, type, fn, opts);
    };
    try {
      const model = fakeModel();
      widget.initialize({ model: model as never });
      const el = document.createElement("div");
      document.body.append(el);
      const cleanup = widget.render({ model: model as never, el });
      const both = (id: number): [Record<string, unknown>, DataView[]] => {
        const [reply] = viewReply(id, [0.5, 0.25]);
        const meta = { ...(reply.meta as ViewMeta), directions: ["denoising", "noising"] };
        const data = new Float32Array(2 * (2 * 6 + 12));
        return [{ ...reply, meta }, [new DataView(data.buffer)]];
      };
      const show = async (reply: [Record<string, unknown>, DataView[]]) => {
        model.emit("msg:custom", ...reply);
        await new Promise((r) => setTimeout(r, 30));
      };
      const store = () => model.sent.at(-1)!.id as number;
      await show(both(store()));
      const first = live.size;
      for (let i = 0; i < 3; i++) {
        model.set("direction", i % 2 ? "both" : "denoising");
        await show(i % 2 ? both(store()) : viewReply(store(), [1, 2]));
      }
      model.set("direction", "both");
      await show(both(store()));
      expect(live.size).toBe(first);
      cleanup();
      expect(live.size).toBe(0);
    } finally {
      EventTarget.prototype.addEventListener = add;
      EventTarget.prototype.removeEventListener = remove;
    }
  });

  it("cancels a pending redraw on close", async () => {
    const { HeatmapArea } = await import("../src/heatmap");
    const update = vi.spyOn(HeatmapArea.prototype, "update");
    const model = fakeModel();
    widget.initialize({ model: model as never });
    const el = document.createElement("div");
    const cleanup = widget.render({ model: model as never, el });
    update.mockClear();
    model.emit("msg:custom", ...viewReply(model.sent[0].id as number, [1, 2]));
    cleanup();
    await new Promise((r) => setTimeout(r, 60));
    expect(update).not.toHaveBeenCalled();
    update.mockRestore();
  });
});
