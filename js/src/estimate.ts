// Fast-estimate mode: the attribution estimate's buffer section, hatching on cells that are
// still estimates, the estimate-vs-exact scatter, and the toggle that proposes the estimate.
import { formatValue } from "./colors";
import { cellCount, toFloat32, type Bytes } from "./decode";
import { describeComponent, drillRequest } from "./drill";
import { Disposer, h } from "./dom";
import type { Geometry } from "./layout";
import { computeCells } from "./metrics";
import { N_FIELDS, type Direction, type Metric, type ViewMeta } from "./protocol";
import type { Store } from "./store";
import { DIRECTION_TITLES, METRIC_LABELS } from "./text";

/** Metrics a first-order estimate cannot give: their estimated cells stay blank. */
export const NOT_ESTIMABLE = new Set<Metric>(["kl", "rank", "accuracy"]);
/** Sweeps with more patches than this propose the estimate first. */
export const LONG_SWEEP = 5000;
const MARKED = 5;
const SVG = "http://www.w3.org/2000/svg";

/** One direction's estimate readouts (cells x pairs x fields) and exact flags (1 per cell). */
export interface EstimateSection {
  direction: Direction;
  estimate: Float32Array;
  exact: Float32Array;
}

/** Floats an attribution view carries after the usual panels (0 for exact views). */
export function estimateFloats(meta: ViewMeta): number {
  if (meta.method !== "attribution") return 0;
  const cells = cellCount(meta.shape);
  return meta.directions.length * cells * (meta.n_pairs * N_FIELDS + 1);
}

/** The estimate section of a view's buffer, or null for an exact view. */
export function splitEstimate(meta: ViewMeta, bytes: Bytes): EstimateSection[] | null {
  if (meta.method !== "attribution") return null;
  const data = toFloat32(bytes);
  const cells = cellCount(meta.shape);
  const base = meta.n_pairs * N_FIELDS;
  let offset = data.length - estimateFloats(meta);
  const take = (n: number) => data.subarray(offset, (offset += n));
  return meta.directions.map((direction) => ({ direction, estimate: take(cells * base), exact: take(cells) }));
}

/** Cells exact so far, over all directions. */
export function exactCount(sections: EstimateSection[]): { exact: number; total: number } {
  let exact = 0;
  let total = 0;
  for (const s of sections) {
    for (const f of s.exact) exact += f > 0 ? 1 : 0;
    total += s.exact.length;
  }
  return { exact, total };
}

/** Exact cells ordered by |estimate - exact|, largest first (at most `n`). */
export function disagreements(estimate: Float64Array, exact: Float64Array, flags: Float32Array, n: number): number[] {
  const cells: number[] = [];
  for (let i = 0; i < flags.length; i++) if (flags[i] > 0 && Number.isFinite(estimate[i]) && Number.isFinite(exact[i])) cells.push(i);
  cells.sort((a, b) => Math.abs(estimate[b] - exact[b]) - Math.abs(estimate[a] - exact[a]));
  return cells.slice(0, n);
}

/** Spearman's rank correlation (average ranks for ties); NaN under two points. */
export function rankCorrelation(a: number[], b: number[]): number {
  if (a.length < 2) return NaN;
  const ranks = (x: number[]) => {
    const order = x.map((_, i) => i).sort((i, j) => x[i] - x[j]);
    const r = new Array<number>(x.length);
    for (let k = 0; k < order.length; ) {
      let end = k;
      while (end + 1 < order.length && x[order[end + 1]] === x[order[k]]) end++;
      for (let m = k; m <= end; m++) r[order[m]] = (k + end) / 2;
      k = end + 1;
    }
    return r;
  };
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const ma = mean(ra);
  const mb = mean(rb);
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) ** 2;
    db += (rb[i] - mb) ** 2;
  }
  return da === 0 || db === 0 ? NaN : num / Math.sqrt(da * db);
}

/** Hatch every cell whose flag is 0 (still an estimate). */
export function paintEstimated(ctx: CanvasRenderingContext2D, flags: Float32Array, nCols: number, g: Geometry, color: string): void {
  ctx.save();
  ctx.strokeStyle = color;
  ctx.globalAlpha = 0.55;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] > 0) continue;
    const x = g.x0 + (i % nCols) * g.cw;
    const y = g.y0 + Math.floor(i / nCols) * g.ch;
    ctx.moveTo(x, y + g.ch);
    ctx.lineTo(x + g.cw, y);
  }
  ctx.stroke();
  ctx.restore();
}

/** Patches a top-level sweep of `site` takes, from the model's sizes and the prompt length. */
export function sweepSize(site: string, info: Record<string, unknown>, nPositions: number): number {
  const n = (k: string) => Number(info[k] ?? 0);
  const layers = n("n_layers");
  if (site === "neuron") return layers * n("d_mlp");
  if (site === "head_by_pos") return layers * n("n_heads") * nPositions;
  if (site.startsWith("head")) return layers * n("n_heads");
  return layers * nPositions;
}

/** The "fast estimate" checkbox; checks itself for sweeps that would take long. */
export class EstimateToggle {
  readonly el: HTMLElement;
  private box: HTMLInputElement;
  private hint: HTMLElement;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.box = h("input", { type: "checkbox", "data-testid": "pw-fast-estimate" });
    this.hint = h("span", { class: "pw-estimate-hint", "data-testid": "pw-estimate-hint" });
    this.el = h(
      "label",
      { class: "pw-check", title: "Attribution patching paints every cell at once; exact values then replace them, largest estimates first" },
      this.box,
      h("span", { text: "fast estimate" }),
      this.hint,
    );
    d.listen(this.box, "change", () => {
      this.hint.textContent = "";
      this.store.method = this.method;
    });
  }

  get method(): "exact" | "attribution" {
    return this.box.checked ? "attribution" : "exact";
  }

  /** Propose the estimate when a sweep of `site` would run many patches. */
  propose(site: string): void {
    const patches = sweepSize(site, this.store.get("info") ?? {}, this.store.get("prompts")?.position_labels?.length ?? 0);
    const long = patches > LONG_SWEEP;
    if (long && !this.box.checked) {
      this.box.checked = true;
      this.hint.textContent = ` (proposed: ${patches.toLocaleString()} patches)`;
    } else if (!long && this.hint.textContent) {
      this.box.checked = false;
      this.hint.textContent = "";
    }
    this.store.method = this.method;
  }
}

/** Status of an estimate view and one estimate-vs-exact scatter per direction. */
export class EstimatePanel {
  readonly el: HTMLElement;
  private status: HTMLElement;
  private plots: HTMLElement;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.status = h("div", { class: "pw-estimate-status", "data-testid": "pw-estimate-status", role: "status" });
    this.plots = h("div", { class: "pw-scatters" });
    this.el = h("section", { class: "pw-estimate", "data-testid": "pw-estimate", hidden: true }, this.status, this.plots);
    d.listen<MouseEvent>(this.plots, "click", (e) => this.onClick(e));
  }

  update(): void {
    const view = this.store.current?.view;
    const sections = view?.estimate ?? null;
    this.el.hidden = !view || !sections;
    if (!view || !sections) {
      this.plots.replaceChildren();
      return;
    }
    const metric = this.store.get("metric");
    const normalized = this.store.get("normalized");
    const { exact, total } = exactCount(sections);
    const lines = [`Fast estimate: ${exact} of ${total} cells exact, largest estimates first; hatched cells are still estimates.`];
    if (NOT_ESTIMABLE.has(metric)) lines.push(`${METRIC_LABELS[metric]} cannot be estimated to first order: estimated cells stay blank until their exact value arrives.`);
    this.status.replaceChildren(...lines.map((text) => h("div", { text })));
    this.plots.replaceChildren(
      ...sections.map((s) => {
        const panel = view.panels.find((p) => p.direction === s.direction)!;
        const n = view.meta.n_pairs;
        const est = computeCells(metric, normalized, s.estimate, panel.clean, panel.corrupted, n);
        const mixed = computeCells(metric, normalized, panel.readouts, panel.clean, panel.corrupted, n);
        return this.scatter(s, est, mixed, metric);
      }),
    );
  }

  private scatter(s: EstimateSection, est: Float64Array, exact: Float64Array, metric: Metric): HTMLElement {
    const view = this.store.current!.view!;
    const size = 240;
    const pad = 44;
    const cells: number[] = [];
    for (let i = 0; i < s.exact.length; i++) if (s.exact[i] > 0 && Number.isFinite(est[i]) && Number.isFinite(exact[i])) cells.push(i);
    const rho = rankCorrelation(
      cells.map((i) => est[i]),
      cells.map((i) => exact[i]),
    );
    const title = h("figcaption", {
      text: `${DIRECTION_TITLES[s.direction]}: estimate vs exact, ${cells.length} cells${Number.isNaN(rho) ? "" : `, rank correlation ${rho.toFixed(3)}`}`,
    });
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("class", "pw-scatter");
    svg.setAttribute("data-testid", "pw-scatter");
    svg.dataset.direction = s.direction;
    svg.dataset.points = String(cells.length);
    const figure = h("figure", { class: "pw-scatter-figure" }, title, svg as unknown as HTMLElement);
    if (!cells.length) return figure;
    let lo = Infinity;
    let hi = -Infinity;
    for (const i of cells) {
      lo = Math.min(lo, est[i], exact[i]);
      hi = Math.max(hi, est[i], exact[i]);
    }
    if (hi - lo < 1e-9) {
      lo -= 1;
      hi += 1;
    }
    const scale = (v: number) => pad + ((v - lo) / (hi - lo)) * (size - pad - 8);
    const add = (tag: string, attrs: Record<string, string | number>) => {
      const el = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
      svg.append(el);
      return el;
    };
    add("line", { x1: scale(lo), y1: size - scale(lo), x2: scale(hi), y2: size - scale(hi), class: "pw-scatter-diagonal" });
    add("text", { x: size / 2, y: size - 4, class: "pw-scatter-axis", "text-anchor": "middle" }).textContent = `estimate (${METRIC_LABELS[metric]})`;
    const yLabel = add("text", { x: 10, y: size / 2, class: "pw-scatter-axis", "text-anchor": "middle", transform: `rotate(-90 10 ${size / 2})` });
    yLabel.textContent = "exact";
    for (const [v, anchor] of [
      [lo, "start"],
      [hi, "end"],
    ] as const) {
      add("text", { x: scale(v), y: size - pad + 12, class: "pw-scatter-axis", "text-anchor": anchor }).textContent = formatValue(v, 2);
      add("text", { x: pad - 3, y: size - scale(v) + 3, class: "pw-scatter-axis", "text-anchor": "end" }).textContent = formatValue(v, 2);
    }
    // the worst few, and never most of a small map
    const marked = new Set(disagreements(est, exact, s.exact, Math.min(MARKED, Math.max(1, Math.floor(cells.length / 4)))));
    const labels = this.store.get("prompts")?.position_labels ?? [];
    for (const i of [...cells.filter((c) => !marked.has(c)), ...marked]) {
      const isMarked = marked.has(i);
      const comp = view.grid.component(Math.floor(i / view.grid.nCols), i % view.grid.nCols);
      const dot = add("circle", {
        cx: scale(est[i]),
        cy: size - scale(exact[i]),
        r: isMarked ? 5 : 2.5,
        class: isMarked ? "pw-scatter-point pw-disagree" : "pw-scatter-point",
        "data-cell": i,
        "data-direction": s.direction,
        "data-testid": isMarked ? "pw-disagreement" : "pw-scatter-point",
      });
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${describeComponent(comp, labels)}: estimate ${est[i].toPrecision(4)}, exact ${exact[i].toPrecision(4)} · click: drill down · shift-click: circuit`;
      dot.append(tip);
    }
    return figure;
  }

  private onClick(e: MouseEvent): void {
    const cell = (e.target as Element).closest?.("[data-cell]")?.getAttribute("data-cell");
    const view = this.store.current?.view;
    if (cell === null || cell === undefined || !view) return;
    const i = Number(cell);
    const comp = view.grid.component(Math.floor(i / view.grid.nCols), i % view.grid.nCols);
    if (e.shiftKey) {
      this.store.toggleCircuit(comp);
      return;
    }
    const next = drillRequest(comp, view.meta.request.direction, this.store.get("sites"));
    if (typeof next === "string") this.store.note(next);
    else this.store.runView(next, true);
  }
}
