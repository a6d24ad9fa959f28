import { describe, expect, it } from "vitest";
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
    set: (k: string, v: unknown) => {
      state[k] = v;
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
