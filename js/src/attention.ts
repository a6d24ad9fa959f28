// Where a head looks: its attention pattern (destination × source) on clean and corrupted prompts.
import { cssColor, divergingColor } from "./colors";
import { Disposer, h } from "./dom";
import type { AttentionMeta } from "./protocol";

export type Which = "clean" | "corrupted" | "difference";

/** dest × src pattern (row-major), averaged over pairs (`pair` null) or of one pair. */
export function attentionGrid(meta: AttentionMeta, data: Float32Array, which: Which, pair: number | null): Float64Array {
  const n = meta.length;
  const size = n * n;
  const out = new Float64Array(size);
  const pairs = pair === null ? [...Array(meta.n_pairs).keys()] : [pair];
  const at = (run: number, p: number, i: number) => data[(run * meta.n_pairs + p) * size + i];
  for (const p of pairs) {
    for (let i = 0; i < size; i++) {
      const clean = at(0, p, i);
      const corrupted = at(1, p, i);
      out[i] += (which === "clean" ? clean : which === "corrupted" ? corrupted : clean - corrupted) / pairs.length;
    }
  }
  return out;
}

export class AttentionView {
  readonly el: HTMLElement;
  private which: HTMLSelectElement;
  private pair: HTMLSelectElement;
  private grid: HTMLElement;
  private shown: { meta: AttentionMeta; data: Float32Array } | null = null;

  constructor(d: Disposer) {
    this.which = h("select", { class: "pw-select", "data-testid": "pw-attention-which", "aria-label": "which pattern" });
    this.which.append(...["clean", "corrupted", "difference"].map((w) => h("option", { value: w, text: w === "difference" ? "clean − corrupted" : w })));
    this.pair = h("select", { class: "pw-select", "data-testid": "pw-attention-pair", "aria-label": "prompt pair" });
    this.grid = h("div", { class: "pw-attention-grid" });
    this.el = h(
      "section",
      { class: "pw-attention", "data-testid": "pw-attention", hidden: true },
      h("div", { class: "pw-row" }, h("strong", { class: "pw-attention-title" }), this.which, this.pair),
      this.grid,
    );
    d.listen(this.which, "change", () => this.draw());
    d.listen(this.pair, "change", () => this.draw());
  }

  /** Show a head's patterns, or hide (null). */
  show(att: { meta: AttentionMeta; data: Float32Array } | null): void {
    this.el.hidden = !att;
    if (!att || att === this.shown) return;
    this.shown = att;
    const { meta } = att;
    this.el.querySelector(".pw-attention-title")!.textContent = `L${meta.layer} H${meta.head}: where it looks (rows: destination, columns: source)`;
    this.pair.replaceChildren(
      h("option", { value: "", text: `mean of ${meta.n_pairs} pairs` }),
      ...meta.clean_tokens.map((_, i) => h("option", { value: i, text: `pair ${i}` })),
    );
    this.draw();
  }

  private draw(): void {
    const att = this.shown;
    if (!att) return;
    const { meta, data } = att;
    const pair = this.pair.value === "" ? null : Number(this.pair.value);
    const which = this.which.value as Which;
    const values = attentionGrid(meta, data, which, pair);
    const tokens = (pair === null ? meta.clean_tokens[0] : which === "corrupted" ? meta.corrupted_tokens[pair] : meta.clean_tokens[pair]) ?? [];
    const n = meta.length;
    const max = which === "difference" ? Math.max(1e-9, ...values.map(Math.abs)) : 1;
    const header = h("tr", {}, h("th", {}), ...tokens.map((t, i) => h("th", { class: "pw-attention-src", title: `${i}: ${t}`, text: t })));
    const rows = tokens.map((t, dest) =>
      h(
        "tr",
        {},
        h("th", { text: `${dest}: ${t}` }),
        ...Array.from({ length: n }, (_, src) => {
          const v = values[dest * n + src];
          const masked = src > dest;
          return h("td", {
            "data-dest": dest,
            "data-src": src,
            "data-value": v.toFixed(4),
            title: `${dest} → ${src}: ${v.toFixed(3)}`,
            style: masked ? undefined : `background:${cssColor(divergingColor(v, max))}`,
          });
        }),
      ),
    );
    this.grid.replaceChildren(h("table", { "data-testid": "pw-attention-table" }, h("thead", {}, header), h("tbody", {}, ...rows)));
  }
}
