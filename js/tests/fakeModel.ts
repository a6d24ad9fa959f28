// A stand-in for anywidget's model, shared by the widget's unit tests.
import type { WidgetState } from "../src/protocol";

type Handler = (...args: unknown[]) => void;

/** A stand-in for anywidget's model: records sent messages and listeners. */
export function fakeModel(overrides: Partial<WidgetState> = {}) {
  const state: Record<string, unknown> = {
    _model_key: Math.random().toString(36),
    info: {},
    sites: [
      { name: "resid_pre", reason: null, help: "" },
      { name: "head_by_pos", reason: null, help: "" },
      { name: "neuron", reason: "not here", help: "" },
    ],
    directions: { denoising: null, noising: null },
    prompts: {
      clean: ["a b"],
      corrupted: ["a c"],
      answers: [[" x", " y"]],
      clean_tokens: [["a", " b"]],
      corrupted_tokens: [["a", " c"]],
      diff_positions: [1],
      position_labels: ["0: a", "1: b"],
      answer_tokens: [[" x", " y"]],
      corruption: "counterfactual prompts",
    },
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
      if (changed)
        listeners.get(`change:${k}`)?.forEach((fn) => {
          fn();
        });
    },
    save_changes: () => {},
    send: (msg: Record<string, unknown>) => sent.push(msg),
    on: (name: string, fn: Handler) => {
      if (!listeners.has(name)) listeners.set(name, new Set());
      listeners.get(name)!.add(fn);
    },
    off: (name: string, fn: Handler) => listeners.get(name)?.delete(fn),
    emit: (name: string, ...args: unknown[]) =>
      listeners.get(name)?.forEach((fn) => {
        fn(...args);
      }),
    widget_manager: {} as never,
  };
}
