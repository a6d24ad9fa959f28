import type { AnyModel } from "@anywidget/types";
import { describe, expect, it } from "vitest";
import { Disposer } from "../src/dom";
import { modelLine } from "../src/modelline";
import type { WidgetState } from "../src/protocol";

type Handler = () => void;

/** Just enough of anywidget's model for the model line: one trait and its listeners. */
function fakeModel(line: string) {
  const state: Record<string, unknown> = { model_line: line };
  const listeners = new Map<string, Set<Handler>>();
  return {
    get: (key: string) => state[key],
    on: (event: string, fn: Handler) => {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)?.add(fn);
    },
    off: (event: string, fn: Handler) => listeners.get(event)?.delete(fn),
    set(key: string, value: unknown) {
      state[key] = value;
      for (const fn of listeners.get(`change:${key}`) ?? []) fn();
    },
    listeners,
  };
}

describe("model line", () => {
  it("shows the kernel's line, follows its changes and stops listening on dispose", () => {
    const model = fakeModel("gpt2 · runs on NDIF (remote)");
    const d = new Disposer();
    const el = modelLine(model as unknown as AnyModel<WidgetState>, d);
    expect(el.textContent).toBe("gpt2 · runs on NDIF (remote)");
    model.set("model_line", "gpt2 · runs on NDIF (remote) · queued");
    expect(el.textContent).toBe("gpt2 · runs on NDIF (remote) · queued");
    d.dispose();
    expect(model.listeners.get("change:model_line")?.size).toBe(0);
    model.set("model_line", "changed after dispose");
    expect(el.textContent).toBe("gpt2 · runs on NDIF (remote) · queued");
  });
});
