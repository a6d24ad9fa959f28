import { describe, expect, it } from "vitest";
import { CONFIRM_FIELD } from "../src/confirm";
import type { ViewRequest } from "../src/protocol";
import { Store } from "../src/store";

function fakeModel() {
  const state: Record<string, unknown> = {
    _model_key: "k",
    result_meta: {},
    circuit_meta: {},
    circuit: [],
    prompts: null,
  };
  const sent: Record<string, unknown>[] = [];
  return {
    sent,
    get: (k: string) => state[k],
    set: (k: string, v: unknown) => (state[k] = v),
    save_changes: () => {},
    send: (msg: Record<string, unknown>) => sent.push(msg),
    on: () => {},
    off: () => {},
    widget_manager: {} as never,
  };
}

const request: ViewRequest = {
  kind: "sweep",
  site: "neuron",
  direction: "denoising",
  layers: null,
  heads: null,
  positions: null,
  neurons: null,
  label: "neuron",
};

describe("long sweep confirmation", () => {
  it("resends the refused sweep with confirmed: true", () => {
    const model = fakeModel();
    const store = new Store(model as never as ConstructorParameters<typeof Store>[0]);
    store.runView(request, false);
    const first = model.sent[0];
    store.handle(
      { type: "error", id: first.id, kind: "sweep", message: "about 2.3 h", field: CONFIRM_FIELD },
      [],
    );
    expect(store.error?.field).toBe(CONFIRM_FIELD);
    store.runAnyway();
    const again = model.sent[1];
    expect(again).toMatchObject({ type: "sweep", site: "neuron", confirmed: true });
    expect(store.activeViewId).toBe(again.id);
    expect(store.error).toBeNull();
    store.dispose();
  });
});
