import { describe, expect, it } from "vitest";
import widget from "../src/index";
import type { PromptState } from "../src/protocol";
import { fakeModel } from "./fakeModel";
import { logitDiffPanel, resultMessage, viewMeta } from "./viewResults";

const prompts: PromptState = {
  clean: ["a b c", "d e", "f g h i"],
  corrupted: ["a x c", "d y", "f z h i"],
  answers: [
    [" p", " q"],
    [" p", " q"],
    [" p", " q"],
  ],
  clean_tokens: [
    ["a", " b", " c"],
    ["d", " e"],
    ["f", " g", " h", " i"],
  ],
  corrupted_tokens: [
    ["a", " x", " c"],
    ["d", " y"],
    ["f", " z", " h", " i"],
  ],
  diff_positions: [0],
  position_labels: ["X", "END"],
  named_positions: { X: [1, 1, 1], END: [2, 1, 3] },
  answer_tokens: [
    [" p", " q"],
    [" p", " q"],
    [" r", " s"],
  ],
  corruption: "counterfactual prompts",
};

/** Two cells (X, END) over three pairs: X's logit diffs 1, 2, 3 (consistent), END's -3, 0, 3;
 * clean logit diffs 4, 4, 2, corrupted all 0. */
function reply(id: number): [Record<string, unknown>, DataView[]] {
  const meta = viewMeta({
    id,
    shape: [1, 2],
    labels: { layer: ["L0"], pos: ["X", "END"] },
    coords: { layer: [0], pos: [0, 1] },
    n_pairs: 3,
    done: 2,
    total: 2,
  });
  const cells = [
    [1, 2, 3],
    [-3, 0, 3],
  ];
  return resultMessage(meta, logitDiffPanel(cells, [4, 4, 2]));
}

const tick = () => new Promise((r) => setTimeout(r, 40));

describe("pair selector, spread and dimming", () => {
  it("shows one pair's map and tokens, the mean ± standard error, and dims cells whose interval includes 0", async () => {
    document.body.dataset.pwTestValues = "1";
    const model = fakeModel({ prompts, normalized: false });
    const cleanupModel = widget.initialize({ model: model as never });
    const el = document.createElement("div");
    document.body.append(el);
    const cleanup = widget.render({ model: model as never, el });
    model.emit("msg:custom", ...reply(model.sent[0].id as number));
    await tick();
    const map = el.querySelector<HTMLElement>('[data-testid="pw-heatmap"]')!;
    const select = el.querySelector<HTMLSelectElement>('[data-testid="pw-show"]')!;
    const dim = el.querySelector<HTMLInputElement>('[data-testid="pw-dim"]')!;
    expect([...select.options].map((o) => o.text)).toEqual([
      "mean of all 3 pairs",
      "pair 1: a b c",
      "pair 2: d e",
      "pair 3: f g h i",
    ]);
    expect(JSON.parse(map.dataset.values!)).toEqual([[2, 0]]);
    expect(map.dataset.dimmed).toBe("[]");

    dim.checked = true;
    dim.dispatchEvent(new Event("change"));
    await tick();
    expect(map.dataset.dimmed).toBe("[1]"); // END: 0 ± 1.96 * sqrt(3) includes 0; X: 2 ± 1.13 doesn't

    const canvas = el.querySelector<HTMLCanvasElement>('[data-testid="pw-heatmap-canvas"]')!;
    canvas.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight" }));
    const tooltip = el.querySelector<HTMLElement>('[data-testid="pw-tooltip"]')!;
    expect(tooltip.hidden).toBe(false);
    expect(tooltip.textContent).toContain(
      `logit difference: 0.00000 ± ${Math.sqrt(3).toPrecision(3)}`,
    );
    expect(tooltip.textContent).toContain("(mean of 3 pairs, ± standard error)");
    expect(tooltip.textContent).toContain("95% interval over pairs includes 0");

    select.value = "2";
    select.dispatchEvent(new Event("change"));
    await tick();
    expect(map.dataset.pair).toBe("2");
    expect(JSON.parse(map.dataset.values!)).toEqual([[3, 3]]);
    expect(map.dataset.dimmed).toBe("[]"); // one pair: nothing to dim
    expect(dim.disabled).toBe(true);
    const tokens = el.querySelector('[data-testid="pw-tokens-clean"]')!;
    expect(tokens.textContent).toBe("f␣g␣h␣i");
    expect(
      [...tokens.querySelectorAll(".pw-named")].map((t) => (t as HTMLElement).dataset.name),
    ).toEqual(["X", "END"]);
    expect(tokens.querySelector(".pw-diff")?.textContent).toBe("␣g");
    expect(el.querySelector('[data-testid="pw-answers"]')?.textContent).toContain("␣r");
    canvas.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight" }));
    expect(tooltip.textContent).toContain("pair 3: 3.00000");

    // normalised: pair 2's value over its own baselines (clean 2, corrupted 0)
    model.set("normalized", true);
    model.emit("change:normalized");
    select.dispatchEvent(new Event("change"));
    await tick();
    expect(JSON.parse(map.dataset.values!)).toEqual([[1.5, 1.5]]);

    cleanup();
    cleanupModel();
    expect([...model.listeners.values()].every((s) => s.size === 0)).toBe(true);
  });
});
