// Canvas heatmaps (one per direction), colour bar, tooltip, mouse and keyboard.
import { colorbarTicks, cssColor, divergingColor, formatValue, scaleMax } from "./colors";
import { describeComponent, drillRequest } from "./drill";
import { paintEstimated } from "./estimate";
import { Disposer, h } from "./dom";
import { cellAt, gridGeometry, type Geometry } from "./layout";
import { baselines, computeCells, meanOverPairs, type Baselines } from "./metrics";
import { guidanceNotes, isOutsideUnit } from "./notes";
import { N_FIELDS, type ComponentSpec, type Direction } from "./protocol";
import type { Store, ViewState } from "./store";
import { DIRECTION_MEANING, DIRECTION_TITLES, METRIC_LABELS } from "./text";

interface PanelDom {
  direction: Direction;
  root: HTMLElement;
  holder: HTMLElement;
  canvas: HTMLCanvasElement;
  caption: HTMLElement;
  values: Float64Array;
  base: Baselines;
  geom: Geometry | null;
  focus: { r: number; c: number } | null;
}

function isDark(el: HTMLElement): boolean {
  return document.body?.dataset.jpThemeLight === "false" || el.closest("[data-jp-theme-light='false']") !== null;
}

function cssVar(el: HTMLElement, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

export class HeatmapArea {
  readonly el: HTMLElement;
  readonly notes: HTMLElement;
  private panelsEl: HTMLElement;
  private legend: HTMLElement;
  private colorbar: HTMLCanvasElement;
  private tooltip: HTMLElement;
  private empty: HTMLElement;
  private panels: PanelDom[] = [];
  private max = 1;
  private frame = 0;

  constructor(
    private store: Store,
    private d: Disposer,
  ) {
    this.tooltip = h("div", { class: "pw-tooltip", "data-testid": "pw-tooltip", role: "status", hidden: true });
    this.panelsEl = h("div", { class: "pw-panels" });
    this.colorbar = h("canvas", { class: "pw-colorbar", width: 56, height: 220 });
    this.legend = h("div", { class: "pw-legend" }, this.colorbar);
    this.empty = h("div", { class: "pw-empty", text: "Choose a site and press Run to sweep it." });
    this.notes = h("ul", { class: "pw-notes", "data-testid": "pw-note" });
    this.el = h("div", { class: "pw-heatmap-area" }, this.empty, h("div", { class: "pw-plot" }, this.panelsEl, this.legend), this.tooltip);
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

  update(): void {
    const view = this.store.current?.view ?? null;
    this.empty.hidden = view !== null;
    this.legend.hidden = view === null;
    if (!view) {
      this.panelsEl.replaceChildren();
      this.panels = [];
      this.renderNotes([], []);
      return;
    }
    const metric = this.store.get("metric");
    const normalized = this.store.get("normalized");
    this.syncPanels(view);
    for (const p of this.panels) {
      const data = view.panels.find((x) => x.direction === p.direction)!;
      p.values = computeCells(metric, normalized, data.readouts, data.clean, data.corrupted, view.meta.n_pairs);
      p.base = baselines(metric, data.clean, data.corrupted, view.meta.n_pairs);
    }
    this.max = scaleMax(this.panels.map((p) => p.values));
    const width = this.panelsEl.clientWidth || 640;
    const each = this.panels.length > 1 ? Math.max(240, (width - 16) / 2) : width;
    for (const p of this.panels) this.draw(p, view, each);
    this.drawColorbar(normalized);
    this.renderNotes(this.panels.map((p) => p.values), this.panels.map((p) => p.base));
  }

  private syncPanels(view: ViewState): void {
    const dirs = view.meta.directions;
    if (this.panels.length === dirs.length && this.panels.every((p, i) => p.direction === dirs[i])) return;
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
    const caption = h("div", { class: "pw-caption" });
    const root = h(
      "figure",
      { class: "pw-panel" },
      h("figcaption", { title: DIRECTION_MEANING[direction] }, h("strong", { text: DIRECTION_TITLES[direction] })),
      holder,
      caption,
    );
    const p: PanelDom = { direction, root, holder, canvas, caption, values: new Float64Array(), base: { clean: NaN, corrupted: NaN }, geom: null, focus: null };
    const cellOf = (e: MouseEvent) => {
      const rect = canvas.getBoundingClientRect();
      const view = this.store.current?.view;
      if (!p.geom || !view) return null;
      return cellAt(e.clientX - rect.left, e.clientY - rect.top, p.geom, view.grid.nRows, view.grid.nCols);
    };
    this.d.listen<MouseEvent>(canvas, "mousemove", (e) => {
      const cell = cellOf(e);
      if (cell) this.showTooltip(p, cell.r, cell.c);
      else this.hideTooltip();
    });
    this.d.listen(canvas, "mouseleave", () => this.hideTooltip());
    this.d.listen<MouseEvent>(canvas, "click", (e) => {
      const cell = cellOf(e);
      if (!cell) return;
      p.focus = cell;
      this.activate(cell.r, cell.c, e.shiftKey);
    });
    this.d.listen<KeyboardEvent>(canvas, "keydown", (e) => this.onKey(p, e));
    this.d.listen(canvas, "blur", () => this.hideTooltip());
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
    if (addToCircuit) {
      this.store.toggleCircuit(comp);
      return;
    }
    const next = drillRequest(comp, view.meta.request.direction, this.store.get("sites"));
    if (typeof next === "string") this.store.note(next);
    else this.store.runView(next, true);
  }

  private draw(p: PanelDom, view: ViewState, width: number): void {
    const grid = view.grid;
    const g = gridGeometry(width, grid);
    p.geom = g;
    const rows: (number | null)[][] = [];
    for (let r = 0; r < grid.nRows; r++) {
      const row: (number | null)[] = [];
      for (let c = 0; c < grid.nCols; c++) {
        const v = p.values[r * grid.nCols + c];
        row.push(Number.isNaN(v) ? null : v);
      }
      rows.push(row);
    }
    p.holder.dataset.rows = String(grid.nRows);
    p.holder.dataset.cols = String(grid.nCols);
    p.holder.dataset.values = JSON.stringify(rows);
    p.holder.dataset.grid = JSON.stringify({ x0: g.x0, y0: g.y0, cw: g.cw, ch: g.ch });
    p.caption.textContent = `baselines (${METRIC_LABELS[this.store.get("metric")]}): clean ${formatValue(p.base.clean)}, corrupted ${formatValue(p.base.corrupted)}`;
    const canvas = p.canvas;
    const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    canvas.style.width = `${g.width}px`;
    canvas.style.height = `${g.height}px`;
    canvas.width = Math.ceil(g.width * dpr);
    canvas.height = Math.ceil(g.height * dpr);
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    const dark = isDark(this.el);
    this.paintCells(ctx, p, grid.nRows, grid.nCols, g, dark);
    this.paintLabels(ctx, view, g);
    this.paintMarks(ctx, p, view, g);
    const flags = view.estimate?.find((s) => s.direction === p.direction)?.exact;
    if (flags) paintEstimated(ctx, flags, grid.nCols, g, cssVar(this.el, "--jp-ui-font-color1", "#333"));
    p.holder.dataset.exact = flags ? JSON.stringify(Array.from(flags, (f) => (f > 0 ? 1 : 0))) : "";
  }

  private paintCells(ctx: CanvasRenderingContext2D, p: PanelDom, nRows: number, nCols: number, g: Geometry, dark: boolean): void {
    const image = ctx.createImageData(nCols, nRows);
    for (let i = 0; i < nRows * nCols; i++) {
      const [r, gr, b] = divergingColor(p.values[i], this.max, dark);
      image.data[4 * i] = r;
      image.data[4 * i + 1] = gr;
      image.data[4 * i + 2] = b;
      image.data[4 * i + 3] = 255;
    }
    const off = document.createElement("canvas");
    off.width = nCols;
    off.height = nRows;
    off.getContext("2d")?.putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, g.x0, g.y0, nCols * g.cw, nRows * g.ch);
  }

  private paintLabels(ctx: CanvasRenderingContext2D, view: ViewState, g: Geometry): void {
    const grid = view.grid;
    const fg = cssVar(this.el, "--jp-ui-font-color1", "#333");
    const accent = cssVar(this.el, "--jp-brand-color1", "#1976d2");
    const diffs = new Set(this.store.get("prompts")?.diff_positions ?? []);
    ctx.font = `11px ${cssVar(this.el, "--jp-ui-font-family", "system-ui, sans-serif")}`;
    ctx.fillStyle = fg;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    if (grid.groups.length && g.ch < 10) {
      for (const grp of grid.groups) ctx.fillText(grp.label, g.x0 - 4, g.y0 + (grp.start + grp.count / 2) * g.ch);
    } else {
      for (let r = 0; r < grid.nRows; r += g.rowLabelEvery) ctx.fillText(grid.rowLabels[r], g.x0 - 4, g.y0 + (r + 0.5) * g.ch);
    }
    ctx.strokeStyle = fg;
    ctx.lineWidth = 1;
    for (const r of grid.groupStarts) {
      ctx.beginPath();
      ctx.moveTo(g.x0, g.y0 + r * g.ch);
      ctx.lineTo(g.x0 + grid.nCols * g.cw, g.y0 + r * g.ch);
      ctx.stroke();
    }
    const isPos = grid.colAxis === "pos";
    for (let c = 0; c < grid.nCols; c += g.colLabelEvery) {
      const x = g.x0 + (c + 0.5) * g.cw;
      const pos = Number(view.meta.coords[grid.colAxis]?.[c] ?? c);
      ctx.fillStyle = isPos && diffs.has(pos) ? accent : fg;
      ctx.save();
      ctx.translate(x, g.y0 - 4);
      if (g.rotateColLabels && g.cw >= 9) {
        ctx.rotate(-Math.PI / 3);
        ctx.textAlign = "left";
      } else {
        ctx.textAlign = "center";
        ctx.textBaseline = "bottom";
      }
      const label = grid.colLabels[c];
      ctx.fillText(label.length > 16 ? `${label.slice(0, 15)}…` : label, 0, 0);
      ctx.restore();
      ctx.textBaseline = "middle";
    }
  }

  private paintMarks(ctx: CanvasRenderingContext2D, p: PanelDom, view: ViewState, g: Geometry): void {
    const grid = view.grid;
    const fg = cssVar(this.el, "--jp-ui-font-color0", "#111");
    if (this.store.get("normalized") && g.cw >= 6 && g.ch >= 6) {
      ctx.fillStyle = fg;
      const radius = Math.max(1.5, Math.min(g.cw, g.ch) / 8);
      for (let i = 0; i < p.values.length; i++) {
        const v = p.values[i];
        if (!isOutsideUnit(v)) continue;
        const r = Math.floor(i / grid.nCols);
        const c = i % grid.nCols;
        ctx.beginPath();
        ctx.arc(g.x0 + (c + 0.82) * g.cw, g.y0 + (r + 0.22) * g.ch, radius, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    const circuit = this.store.get("circuit") ?? [];
    if (circuit.length) {
      ctx.strokeStyle = cssVar(this.el, "--jp-warn-color0", "#e68a00");
      ctx.lineWidth = 2;
      for (let r = 0; r < grid.nRows; r++) {
        for (let c = 0; c < grid.nCols; c++) {
          if (this.store.inCircuit(grid.component(r, c))) ctx.strokeRect(g.x0 + c * g.cw + 1, g.y0 + r * g.ch + 1, Math.max(1, g.cw - 2), Math.max(1, g.ch - 2));
        }
      }
    }
    if (p.focus && document.activeElement === p.canvas) {
      ctx.strokeStyle = fg;
      ctx.lineWidth = 2;
      ctx.setLineDash([3, 2]);
      ctx.strokeRect(g.x0 + p.focus.c * g.cw, g.y0 + p.focus.r * g.ch, Math.max(2, g.cw), Math.max(2, g.ch));
      ctx.setLineDash([]);
    }
  }

  private drawColorbar(normalized: boolean): void {
    const canvas = this.colorbar;
    canvas.dataset.max = String(this.max);
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const dark = isDark(this.el);
    const w = canvas.width;
    const hgt = canvas.height;
    const top = 10;
    const bar = hgt - 20;
    ctx.clearRect(0, 0, w, hgt);
    for (let y = 0; y < bar; y++) {
      ctx.fillStyle = cssColor(divergingColor(this.max * (1 - (2 * y) / (bar - 1)), this.max, dark));
      ctx.fillRect(0, top + y, 12, 1);
    }
    ctx.fillStyle = cssVar(this.el, "--jp-ui-font-color1", "#333");
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    for (const t of colorbarTicks(this.max)) {
      const y = top + ((this.max - t) / (2 * this.max)) * (bar - 1);
      ctx.fillRect(12, y, 3, 1);
      ctx.fillText(formatValue(t, 3), 17, y);
    }
    canvas.title = normalized ? "normalised: 1 = clean behaviour, 0 = corrupted; scale reaches the largest |value|" : "scale reaches the largest |value| on screen";
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
    const v = p.values[i];
    const lines = [
      describeComponent(comp, this.store.get("prompts")?.position_labels ?? []),
      Number.isNaN(raw) ? "not run yet" : `${METRIC_LABELS[metric]}: ${raw.toPrecision(6)}${normalized ? ` · normalised ${Number.isNaN(v) ? "n/a" : v.toPrecision(6)}` : ""}`,
      `baselines: clean ${p.base.clean.toPrecision(6)}, corrupted ${p.base.corrupted.toPrecision(6)}`,
      ...(view.estimate ? [view.estimate.find((s) => s.direction === p.direction)?.exact[i] ? "exact value" : "attribution estimate (exact value pending)"] : []),
      `${DIRECTION_TITLES[p.direction]} · click: drill down · shift-click: ${this.store.inCircuit(comp) ? "remove from" : "add to"} circuit`,
    ];
    if (normalized && isOutsideUnit(v)) lines.splice(2, 0, v < 0 ? "below 0: pushes towards the corrupted behaviour" : "above 1: overshoots the clean behaviour");
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
