import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Store } from "../src/store";
import { LOST_MESSAGE, PING_WAIT_MS, QUIET_MS } from "../src/watchdog";
import { fakeModel } from "./fakeModel";

describe("kernel watch", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("pings a silent kernel, then says to re-run the cell", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.patchCircuit();
    expect(store.status).toBe("running");
    vi.advanceTimersByTime(QUIET_MS - 1);
    expect(model.sent.map((m) => m.type)).toEqual(["circuit"]);
    vi.advanceTimersByTime(1);
    expect(model.sent.map((m) => m.type)).toEqual(["circuit", "ping"]);
    vi.advanceTimersByTime(PING_WAIT_MS);
    expect(store.error?.message).toBe(LOST_MESSAGE);
    expect(store.running).toBeNull();
    // The kernel was only busy: its next reply clears the message.
    store.handle({ type: "pong", id: model.sent[1].id }, []);
    expect(store.error).toBeNull();
    store.dispose();
  });

  it("stays quiet while the kernel keeps answering", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.patchCircuit();
    const id = model.sent[0].id as number;
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(QUIET_MS - 1);
      store.handle({ type: "started", id, kind: "circuit" }, []);
    }
    store.handle({ type: "error", id, kind: "circuit", message: "bad", field: null }, []);
    vi.advanceTimersByTime(10 * QUIET_MS);
    expect(model.sent.map((m) => m.type)).toEqual(["circuit"]);
    expect(store.error?.message).toBe("bad");
    store.dispose();
  });

  it("shows a prompt error once, by the editor, with its line breaks", () => {
    const model = fakeModel();
    const store = new Store(model as never);
    store.setPrompts("a", "b", "x|y");
    const id = model.sent[0].id as number;
    store.handle(
      {
        type: "error",
        id,
        kind: "set_prompts",
        message: "pair 1: ...\n  clean: 'a'",
        field: "corrupted",
      },
      [],
    );
    expect(store.promptError?.message).toContain("\n");
    expect(store.error).toBeNull();
    expect(store.status).toBe("error");
    store.dispose();
  });
});
