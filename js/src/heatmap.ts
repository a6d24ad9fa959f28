// Heatmap panels (one per direction) with legends, the shared colour bar and scale control,
// tooltip, mouse and keyboard. Painting itself lives in paint.ts.
import { formatValue } from "./colors";
import { describeComponent, drillOptions, drillRequest } from "./drill";
import { paintEstimated } from "./estimate";
import { pathStep } from "./paths";
import { Disposer, h } from "./dom";
import { cellAt, gridGeometry, type Geometry } from "./layout";
import { baselines, computeCells, meanOverPairs, type Baselines } from "./metrics";
import { guidanceNotes, isOutsideUnit } from "./notes";
import { paintColorbar, paintPanel, type Theme } from "./paint";
import { pairDiffs, pairPositionLabels } from "./prompts";
import { N_FIELDS, type ComponentSpec, type Direction } from "./protocol";
import { baseValue, beyondScale, displayValues, effectText, largestEffect, mattersText, scaleFor, type ScaleMode } from "./scale";
import type { Store, ViewState } from "./store";
import { DIRECTION_MEANING, DIRECTION_TITLES, METRIC_LABELS } from "./text";

interface PanelDom {
  direction: Direction;
  root: HTMLElement;
  holder: HTMLElement;
  canvas: HTMLCanvasElement;
  matters: HTMLElement;
  effect: HTMLElement;
  caption: HTMLElement;
  /** Metric values (normalised when the view is), and the values as shown (drop applied). */
  norm: Float64Array;
  values: Float64Array;
  base: Baselines;
  geom: Geometry | null;
  focus: { r: number; c: number } | null;
  /** Listeners of this panel only: removed when the panels are rebuilt. */
  d: Disposer;
}

const COLORBAR_MIN = 80;
const COLORBAR_MAX = 220;

function cssVar(el: HTMLElement, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

/** The browser tests ask for every cell value in the DOM with `data-pw-test-values` on <body>. */
function testValuesWanted(): boolean {
  return typeof document !== "undefined" && document.body?.dataset.pwTestValues === "1";
}

export class HeatmapArea {
  readonly el: HTMLElement;
  readonly notes: HTMLElement;
  private panelsEl: HTMLElement;
  private legend: HTMLElement;
  private colorbar: HTMLCanvasElement;
  private scaleText: HTMLElement;
  private scaleSelect: HTMLSelectElement;
  private drop: HTMLInputElement;
  private dropLabel: HTMLElement;
  private tooltip: HTMLElement;
  private empty: HTMLElement;
  private panels: PanelDom[] = [];
  private max = 1;
  private frame = 0;
  private refocus = false;

  constructor(
    private store: Store,
    d: Disposer,
  ) {
    this.tooltip = h("div", { class: "pw-tooltip", "data-testid": "pw-tooltip", role: "status", hidden: true });
    this.panelsEl = h("div", { class: "pw-panels" });
    this.colorbar = h("canvas", { class: "pw-colorbar", "data-testid": "pw-colorbar" });
    this.scaleText = h("div", { class: "pw-scale-text", "data-testid": "pw-scale-text" });
    this.scaleSelect = h(
      "select",
      { "data-testid": "pw-scale", "aria-label": "colour scale" },
      h("option", { value: "gap", text: "whole gap (±1)" }),
      h("option", { value: "fit", text: "fit to data" }),
      h("option", { value: "locked", text: "lock this scale" }),
    );
    this.drop = h("input", { type: "checkbox", "data-testid": "pw-drop" });
    this.dropLabel = h("label", { class: "pw-check", title: "show noising as 1 − normalised, so that important cells are red in both panels" }, this.drop, h("span", { text: "noising as drop from clean" }));
    this.legend = h(
      "div",
      { class: "pw-legend" },
      h("label", { class: "pw-field" }, h("span", { text: "Scale" }), this.scaleSelect),
      this.colorbar,
      this.scaleText,
      this.dropLabel,
    );
    this.empty = h("div", { class: "pw-empty", "data-testid": "pw-empty", text: "Sweeping… the map appears here as patches finish." });
    this.notes = h("ul", { class: "pw-notes", "data-testid": "pw-note" });
    this.el = h("div", { class: "pw-heatmap-area", tabindex: -1 }, this.empty, h("div", { class: "pw-plot" }, this.panelsEl, this.legend), this.tooltip);
    d.listen(this.scaleSelect, "change", () => this.store.setScale(this.scaleSelect.value as ScaleMode, this.max));
    d.listen(this.drop, "change", () => this.store.setDrop(this.drop.checked));
    d.add(() => this.clearPanels());
    d.add(() => this.cancelFrame());
    if (typeof ResizeObserver !== "undefined") {
      const observer = new ResizeObserver(() => this.schedule());
      observer.observe(this.el);
      d.add(() => observer.disconnect());
    }
    // The canvases read theme colours when painted: repaint when JupyterLab switches theme.
    if (typeof MutationObserver !== "undefined" && document.body) {
      const theme = new MutationObserver(() => this.schedule());
      theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
      d.add(() => theme.disconnect());
    }
  }

  /** Redraw on the next animation frame (coalesces bursts of progress messages). */
  schedule(): void {
    if (this.frame) return;
    const raf = typeof requestAnimationFrame === "function" ? requestAnimationFrame : (f: FrameRequestCallback) => setTimeout(() => f(0), 16) as unknown as number;
    this.frame = raf(() => {
      this.frame = 0;
      this.update();
    });
  }

  private cancelFrame(): void {
    if (!this.frame) return;
    if (typeof cancelAnimationFrame === "function") cancelAnimationFrame(this.frame);
    clearTimeout(this.frame);
    this.frame = 0;
  }

  update(): void {
    const view = this.store.current?.view ?? null;
    this.empty.hidden = view !== null || !this.store.current;
    this.legend.hidden = view === null;
    if (!view) {
      this.clearPanels();
      this.renderNotes([], []);
      return;
    }
    const metric = this.store.get("metric");
    const normalized = this.store.get("normalized");
    const drop = this.store.noisingAsDrop;
    this.syncPanels(view);
    for (const p of this.panels) {
      const data = view.panels.find((x) => x.direction === p.direction)!;
      p.norm = computeCells(metric, normalized, data.readouts, data.clean, data.corrupted, view.meta.n_pairs);
      p.values = displayValues(p.norm, p.direction, normalized, drop);
      p.base = baselines(metric, data.clean, data.corrupted, view.meta.n_pairs);
    }
    const scale = scaleFor(this.store.scale, normalized, this.panels.map((p) => p.values));
    this.max = scale.max;
    const width = this.panelsEl.clientWidth || 640;
    const each = this.panels.length > 1 ? Math.max(240, (width - 16) / 2) : width;
    for (const p of this.panels) this.draw(p, view, each);
    this.renderLegend(view, scale.label, normalized);
    this.renderNotes(this.panels.map((p) => p.norm), this.panels.map((p) => p.base));
    if (this.refocus && this.panels.length) {
      this.refocus = false;
      const p = this.panels[0];
      p.focus = p.focus ?? { r: 0, c: 0 };
      p.canvas.focus();
      this.draw(p, view, p.geom ? p.geom.width : each);
    }
  }

  private clearPanels(): void {
    for (const p of this.panels) p.d.dispose();
    this.panels = [];
    this.panelsEl.replaceChildren();
  }

  private syncPanels(view: ViewState): void {
    const dirs = view.meta.directions;
    if (this.panels.length === dirs.length && this.panels.every((p, i) => p.direction === dirs[i])) return;
    this.clearPanels();
    this.panels = dirs.map((direction) => this.makePanel(direction));
    this.panelsEl.replaceChildren(...this.panels.map((p) => p.root));
  }

  private makePanel(direction: Direction): PanelDom {
    const canvas = h("canvas", {
      class: "pw-canvas",
      "data-testid": "pw-heatmap-canvas",
      tabindex: 0,
      role: "grid",
      "aria-label": `${DIRECTION_TITLES[direction]} heatmap: arrow keys move, Enter drills down, Shift+Enter adds to the circuit`,
    });
    const holder = h("div", { class: "pw-heatmap", "data-testid": "pw-heatmap", "data-direction": direction }, canvas);
    const matters = h("div", { class: "pw-matters", "data-testid": "pw-matters" });
    const effect = h("div", { class: "pw-effect", "data-testid": "pw-largest-effect" });
    const caption = h("div", { class: "pw-caption" });
    const root = h(
      "figure",
      { class: "pw-panel" },
      h("figcaption", { title: DIRECTION_MEANING[direction] }, h("strong", { text: DIRECTION_TITLES[direction] }), matters),
      holder,
      effect,
      caption,
    );
    const d = new Disposer();
    const p: PanelDom = { direction, root, holder, canvas, matters, effect, caption, norm: new Float64Array(), values: new Float64Array(), base: { clean: NaN, corrupted: NaN }, geom: null, focus: null, d };
    const cellOf = (e: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      const view = this.store.current?.view;
      if (!p.geom || !view) return null;
      return cellAt(e.clientX - rect.left, e.clientY - rect.top, p.geom, view.grid.nRows, view.grid.nCols);
    };
    d.listen<MouseEvent>(canvas, "mousemove", (e) => {
      const cell = cellOf(e);
      if (cell) this.showTooltip(p, cell.r, cell.c);
      else this.hideTooltip();
    });
    d.listen(canvas, "mouseleave", () => this.hideTooltip());
    d.listen<MouseEvent>(canvas, "click", (e) => {
      const cell = cellOf(e);
      if (!cell) return;
      p.focus = cell;
      this.activate(cell.r, cell.c, e.shiftKey);
    });
    d.listen<KeyboardEvent>(canvas, "keydown", (e) => this.onKey(p, e));
    d.listen(canvas, "blur", () => this.hideTooltip());
    return p;
  }

  private onKey(p: PanelDom, e: KeyboardEvent): void {
    const view = this.store.current?.view;
    if (!view) return;
    const { nRows, nCols } = view.grid;
    const f = p.focus ?? { r: 0, c: 0 };
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (e.key in moves) {
      const [dr, dc] = moves[e.key];
      const step = e.ctrlKey || e.metaKey ? 10 : 1;
      p.focus = { r: Math.min(nRows - 1, Math.max(0, f.r + dr * step)), c: Math.min(nCols - 1, Math.max(0, f.c + dc * step)) };
    } else if (e.key === "Enter") {
      p.focus = f;
      this.activate(f.r, f.c, e.shiftKey);
      if (!e.shiftKey) return;
    } else if (e.key === "Escape") {
      this.hideTooltip();
      return;
    } else {
      return;
    }
    e.preventDefault();
    this.draw(p, view, p.geom ? p.geom.width : 640);
    this.showTooltip(p, p.focus.r, p.focus.c);
  }

  private activate(r: number, c: number, addToCircuit: boolean): void {
    const view = this.store.current?.view;
    if (!view) return;
    const comp = view.grid.component(r, c);
    this.store.pick(comp, view.meta.request);
    if (addToCircuit) {
      this.store.toggleCircuit(pathStep(comp, view.meta.request) ?? comp);
      return;
    }
    const sites = this.store.get("sites");
    const nLayers = Number(this.store.get("info")?.n_layers ?? Infinity);
    const next = drillRequest(comp, view.meta.request.direction, sites, nLayers);
    if (typeof next === "string") {
      this.store.note(next);
      return;
    }
    // Keep keyboard focus in the widget while the finer map runs, then on its first panel.
    this.refocus = true;
    this.el.focus();
    this.store.runView(next, true, drillOptions(comp, view.meta.request.direction, sites, nLayers));
  }

  private theme(): Theme {
    const el = this.el;
    const dark = document.body?.dataset.jpThemeLight === "false" || el.closest("[data-jp-theme-light='false']") !== null;
    return {
      dark,
      fg: cssVar(el, "--jp-ui-font-color1", dark ? "#ddd" : "#333"),
      strong: cssVar(el, "--jp-ui-font-color0", dark ? "#fff" : "#111"),
      accent: cssVar(el, "--jp-brand-color1", "#1976d2"),
      warn: cssVar(el, "--jp-warn-color0", "#e68a00"),
      font: cssVar(el, "--jp-ui-font-family", "system-ui, sans-serif"),
    };
  }

  private draw(p: PanelDom, view: ViewState, width: number): void {
    const grid = view.grid;
    const g = gridGeometry(width, grid);
    p.geom = g;
    p.holder.dataset.rows = String(grid.nRows);
    p.holder.dataset.cols = String(grid.nCols);
    p.holder.dataset.grid = JSON.stringify({ x0: g.x0, y0: g.y0, cw: g.cw, ch: g.ch });
    if (testValuesWanted()) {
      const rows: (number | null)[][] = [];
      for (let r = 0; r < grid.nRows; r++) rows.push(Array.from(p.values.subarray(r * grid.nCols, (r + 1) * grid.nCols), (v) => (Number.isNaN(v) ? null : v)));
      p.holder.dataset.values = JSON.stringify(rows);
    } else {
      delete p.holder.dataset.values;
    }
    const metric = this.store.get("metric");
    const normalized = this.store.get("normalized");
    const drop = this.store.noisingAsDrop;
    p.caption.textContent = `baselines (${METRIC_LABELS[metric]}): clean ${formatValue(p.base.clean)}, corrupted ${formatValue(p.base.corrupted)}`;
    p.matters.textContent = mattersText(p.direction, normalized, drop, p.base);
    const found = largestEffect(p.values, baseValue(p.direction, normalized, drop, p.base));
    const where = found ? describeComponent(grid.component(Math.floor(found.index / grid.nCols), found.index % grid.nCols), this.positionLabels()) : "";
    p.effect.textContent = effectText(found, normalized, METRIC_LABELS[metric], where);
    p.effect.dataset.effect = found ? String(found.effect) : "";
    const canvas = p.canvas;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    canvas.style.width = `${g.width}px`;
    canvas.style.height = `${g.height}px`;
    canvas.width = Math.ceil(g.width * dpr);
    canvas.height = Math.ceil(g.height * dpr);
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const prompts = this.store.get("prompts");
    paintPanel(
      ctx,
      {
        grid,
        geom: g,
        values: p.values,
        normalized: normalized ? p.norm : null,
        max: this.max,
        colCoords: view.meta.coords[grid.colAxis] ?? [],
        colLabels: this.columnLabels(view),
        highlightCols: new Set(prompts ? pairDiffs(prompts, this.store.pair) : []),
        inCircuit: (c) => this.store.inCircuit(c),
        focus: document.activeElement === canvas ? p.focus : null,
      },
      this.theme(),
    );
    const flags = view.estimate?.find((s) => s.direction === p.direction)?.exact;
    if (flags) paintEstimated(ctx, flags, grid.nCols, g, cssVar(this.el, "--jp-ui-font-color1", "#333"));
    p.holder.dataset.exact = flags ? JSON.stringify(Array.from(flags, (f) => (f > 0 ? 1 : 0))) : "";
  }

  /** Position labels of the pair whose tokens are shown. */
  private positionLabels(): string[] {
    const prompts = this.store.get("prompts");
    return prompts ? pairPositionLabels(prompts, this.store.pair) : [];
  }

  /** Column labels; position columns name the shown pair's tokens. */
  private columnLabels(view: ViewState): string[] {
    const grid = view.grid;
    if (grid.colAxis !== "pos" || this.store.pair === 0) return grid.colLabels;
    const labels = this.positionLabels();
    return (view.meta.coords.pos ?? []).map((p, c) => labels[Number(p)] ?? grid.colLabels[c]);
  }

  private renderLegend(view: ViewState, scaleLabel: string, normalized: boolean): void {
    const tallest = Math.max(0, ...this.panels.map((p) => (p.geom ? p.geom.height - p.geom.y0 : 0)));
    paintColorbar(this.colorbar, this.max, Math.max(COLORBAR_MIN, Math.min(COLORBAR_MAX, tallest)), this.theme());
    this.colorbar.dataset.max = String(this.max);
    const beyond = this.panels.some((p) => p.values.some((v) => beyondScale(v, this.max)));
    this.scaleText.textContent = `${scaleLabel}${beyond ? " · ◤ beyond the scale" : ""}`;
    const gapOption = this.scaleSelect.options[0];
    gapOption.disabled = !normalized;
    const mode = this.store.scale.mode;
    this.scaleSelect.value = mode === "gap" && !normalized ? "fit" : mode;
    this.drop.checked = this.store.noisingAsDrop;
    this.dropLabel.hidden = !(normalized && view.meta.directions.includes("noising"));
  }

  private showTooltip(p: PanelDom, r: number, c: number): void {
    const view = this.store.current?.view;
    if (!view || !p.geom) return;
    const comp: ComponentSpec = view.grid.component(r, c);
    const metric = this.store.get("metric");
    const normalized = this.store.get("normalized");
    const data = view.panels.find((x) => x.direction === p.direction)!;
    const i = r * view.grid.nCols + c;
    const raw = meanOverPairs(metric, data.readouts, i * view.meta.n_pairs * N_FIELDS, view.meta.n_pairs);
    const v = p.norm[i];
    const lines = [
      describeComponent(comp, this.positionLabels()),
      Number.isNaN(raw) ? "not run yet" : `${METRIC_LABELS[metric]}: ${raw.toPrecision(6)}${normalized ? ` · normalised ${Number.isNaN(v) ? "n/a" : v.toPrecision(6)}` : ""}`,
      `baselines: clean ${p.base.clean.toPrecision(6)}, corrupted ${p.base.corrupted.toPrecision(6)}`,
      ...(view.estimate ? [view.estimate.find((s) => s.direction === p.direction)?.exact[i] ? "exact value" : "attribution estimate (exact value pending)"] : []),
      `${DIRECTION_TITLES[p.direction]} · click: drill down · shift-click: ${this.store.inCircuit(comp) ? "remove from" : "add to"} circuit`,
    ];
    if (p.values !== p.norm && !Number.isNaN(v)) lines.splice(2, 0, `shown as the drop from clean: 1 − ${v.toPrecision(4)} = ${(1 - v).toPrecision(4)}`);
    if (normalized && isOutsideUnit(v)) lines.splice(2, 0, v < 0 ? "below 0: pushes towards the corrupted behaviour" : "above 1: overshoots the clean behaviour");
    if (beyondScale(p.values[i], this.max)) lines.splice(2, 0, `beyond the colour scale (±${formatValue(this.max, 3)})`);
    this.tooltip.replaceChildren(...lines.map((text, k) => h(k === 0 ? "strong" : "div", { text })));
    this.tooltip.hidden = false;
    const areaRect = this.el.getBoundingClientRect();
    const rect = p.canvas.getBoundingClientRect();
    const x = rect.left - areaRect.left + p.geom.x0 + (c + 1) * p.geom.cw + 8;
    const y = rect.top - areaRect.top + p.geom.y0 + r * p.geom.ch;
    this.tooltip.style.left = `${Math.max(0, Math.min(x, areaRect.width - 260))}px`;
    this.tooltip.style.top = `${y}px`;
  }

  private hideTooltip(): void {
    this.tooltip.hidden = true;
  }

  private renderNotes(values: Float64Array[], bases: Baselines[]): void {
    const notes = guidanceNotes({
      metric: this.store.get("metric"),
      normalized: this.store.get("normalized"),
      values,
      baselines: bases,
      corruption: this.store.get("prompts")?.corruption ?? "",
    });
    this.notes.replaceChildren(...notes.map((text) => h("li", { text })));
    this.notes.hidden = notes.length === 0;
  }
}
