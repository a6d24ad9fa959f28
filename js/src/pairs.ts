// Which pair to show (one pair's map and tokens, or the mean of all) and whether to dim cells
// whose interval over pairs includes 0.
import { type Disposer, h } from "./dom";
import type { Store } from "./store";

const MEAN = "mean";

export class PairControls {
  readonly el: HTMLElement;
  private select: HTMLSelectElement;
  private dim: HTMLInputElement;
  private shown: string[] | null = null;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.select = h("select", {
      "data-testid": "pw-show",
      "aria-label": "map shown: the mean or one pair",
    });
    this.dim = h("input", { type: "checkbox", "data-testid": "pw-dim" });
    this.el = h(
      "div",
      { class: "pw-toolbar pw-pairs" },
      h("label", { class: "pw-field" }, h("span", { text: "Show" }), this.select),
      h(
        "label",
        { class: "pw-check", title: "interval = mean ± 1.96 standard errors over the pairs" },
        this.dim,
        h("span", { text: "dim cells whose 95% interval includes 0" }),
      ),
    );
    d.listen(this.select, "change", () =>
      this.store.showPair(this.select.value === MEAN ? null : Number(this.select.value)),
    );
    d.listen(this.dim, "change", () => this.store.setDim(this.dim.checked));
    this.update();
  }

  update(): void {
    const clean = this.store.get("prompts")?.clean ?? [];
    if (clean !== this.shown) {
      this.shown = clean;
      this.select.replaceChildren(
        h("option", {
          value: MEAN,
          text: `mean of all ${clean.length} pair${clean.length === 1 ? "" : "s"}`,
        }),
        ...clean.map((text, i) =>
          h("option", {
            value: i,
            text: `pair ${i + 1}: ${text.length > 60 ? `${text.slice(0, 59)}…` : text}`,
          }),
        ),
      );
    }
    this.select.value = this.store.pairMap ? String(this.store.pair) : MEAN;
    this.dim.checked = this.store.dim;
    this.dim.disabled = this.store.pairMap || clean.length < 2;
  }
}
