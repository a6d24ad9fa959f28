// A sweep the kernel expects to take long comes back as an error on the field "confirm": the
// banner then offers to run it anyway; otherwise the user picks a smaller view.
import { type Disposer, h } from "./dom";
import type { Problem, Store } from "./store";

export const CONFIRM_FIELD = "confirm";

export class LongSweepConfirm {
  readonly el: HTMLElement;

  constructor(store: Store, d: Disposer) {
    const run = h("button", {
      type: "button",
      class: "pw-button",
      "data-testid": "pw-run-anyway",
      text: "Run it anyway",
    });
    this.el = h(
      "div",
      { class: "pw-row pw-confirm", "data-testid": "pw-confirm", hidden: true },
      run,
    );
    d.listen(run, "click", () => store.runAnyway());
  }

  update(problem: Problem | null): void {
    this.el.hidden = problem?.field !== CONFIRM_FIELD;
  }
}
