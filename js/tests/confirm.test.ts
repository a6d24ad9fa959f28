import { describe, expect, it } from "vitest";
import { CONFIRM_FIELD } from "../src/confirm";
import { Store } from "../src/store";
import { fakeModel } from "./fakeModel";
import { sweepRequest } from "./viewResults";

const request = sweepRequest({ site: "neuron", label: "neuron" });

describe("long sweep confirmation", () => {
  it("resends the refused sweep with confirmed: true", () => {
    const model = fakeModel();
    const store = new Store(model as never);
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
