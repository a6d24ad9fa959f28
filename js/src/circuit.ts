// The collected circuit (shift-click) and the check of circuit vs complement in both directions.
import { formatValue } from "./colors";
import type { CircuitEntry } from "./decode";
import { Disposer, h } from "./dom";
import { baselines, meanOverPairs, normalize } from "./metrics";
import { componentKey, componentLabel, type Metric } from "./protocol";
import type { Store } from "./store";
import { METRIC_LABELS } from "./text";

const EXPLAIN: Record<string, string> = {
  "denoising/circuit": "restore only the circuit in the corrupted run",
  "denoising/complement": "restore everything except the circuit",
  "noising/circuit": "corrupt only the circuit in the clean run",
  "noising/complement": "corrupt everything except the circuit",
};

/** Normalised (1 = clean behaviour) and raw metric of one circuit check. */
export function circuitFraction(e: CircuitEntry, metric: Metric, nPairs: number): { fraction: number; raw: number } {
  const b = baselines(metric, e.clean, e.corrupted, nPairs);
  const raw = meanOverPairs(metric, e.readouts, 0, nPairs);
  return { fraction: normalize(raw, b.clean, b.corrupted), raw };
}

export class CircuitPanel {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private patch: HTMLButtonElement;
  private copy: HTMLButtonElement;
  private result: HTMLElement;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.list = h("ul", { class: "pw-circuit-list", "data-testid": "pw-circuit-list" });
    this.patch = h("button", { class: "pw-button", "data-testid": "pw-patch-circuit", type: "button", text: "Patch circuit" });
    const clear = h("button", { class: "pw-button", type: "button", text: "Clear" });
    this.copy = h("button", { class: "pw-button", "data-testid": "pw-copy-circuit-code", type: "button", text: "Copy code", title: "Python that checks this circuit" });
    this.result = h("div", { class: "pw-circuit-result", "data-testid": "pw-circuit-result" });
    this.el = h(
      "section",
      { class: "pw-circuit" },
      h("div", { class: "pw-row" }, h("strong", { text: "Circuit" }), h("span", { class: "pw-hint", text: "shift-click cells (or Shift+Enter) to collect components" })),
      this.list,
      h("div", { class: "pw-row" }, this.patch, clear, this.copy),
      this.result,
    );
    d.listen(this.patch, "click", () => this.store.patchCircuit());
    d.listen(clear, "click", () => this.store.setCircuit([]));
    d.listen(this.copy, "click", () => this.store.copyCircuitCode());
    d.listen<MouseEvent>(this.list, "click", (e) => {
      const key = (e.target as HTMLElement).closest<HTMLElement>("[data-remove]")?.dataset.remove;
      const comp = this.store.get("circuit").find((c) => componentKey(c) === key);
      if (comp) this.store.toggleCircuit(comp);
    });
    this.update();
  }

  update(): void {
    const circuit = this.store.get("circuit") ?? [];
    this.list.replaceChildren(
      ...circuit.map((c) =>
        h(
          "li",
          { class: "pw-chip", "data-key": componentKey(c) },
          componentLabel(c),
          h("button", { type: "button", class: "pw-remove", "data-remove": componentKey(c), "aria-label": `remove ${componentLabel(c)}`, text: "×" }),
        ),
      ),
    );
    this.patch.disabled = circuit.length === 0;
    this.copy.disabled = circuit.length === 0;
    this.renderResult();
  }

  private renderResult(): void {
    const res = this.store.circuitResult;
    if (!res) {
      this.result.replaceChildren();
      return;
    }
    const metric = this.store.get("metric");
    const note = res.meta.complement_note ?? null;
    const cell = (direction: string, which: string) => {
      const e = res.entries.find((x) => x.direction === direction && x.which === which);
      if (!e) return h("td", { text: which === "complement" && note ? "not defined" : "–", title: which === "complement" && note ? note : undefined });
      const { fraction, raw } = circuitFraction(e, metric, res.meta.n_pairs);
      return h(
        "td",
        { "data-direction": direction, "data-which": which, "data-fraction": Number.isNaN(fraction) ? "" : fraction, title: EXPLAIN[`${direction}/${which}`] },
        h("strong", { text: Number.isNaN(fraction) ? "n/a" : `${(100 * fraction).toFixed(1)}%` }),
        h("span", { class: "pw-raw", text: ` (${formatValue(raw)})` }),
      );
    };
    this.result.replaceChildren(
      h("p", { class: "pw-hint", text: `${res.meta.components.length} components · ${METRIC_LABELS[metric]}, normalised (100% = clean behaviour, 0% = corrupted; raw value in brackets)` }),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, h("th", {}), h("th", { text: "denoising (restore)" }), h("th", { text: "noising (corrupt)" }))),
        h(
          "tbody",
          {},
          h("tr", {}, h("th", { text: "circuit" }), cell("denoising", "circuit"), cell("noising", "circuit")),
          h("tr", {}, h("th", { text: "complement" }), cell("denoising", "complement"), cell("noising", "complement")),
        ),
      ),
      h("p", { class: "pw-complement-note", "data-testid": "pw-complement-note", hidden: !note, text: note ? `No complement: ${note}.` : "" }),
      h("p", { class: "pw-hint", text: "A good circuit: restoring it recovers most of the behaviour (denoising), and corrupting everything else keeps most of it (noising, complement)." }),
    );
  }
}
