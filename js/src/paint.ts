// Canvas painting of one heatmap panel and of the colour bar; no state, no listeners.
import { colorbarTicks, cssColor, divergingColor, formatValue } from "./colors";
import type { Geometry, GridLayout } from "./layout";
import { isOutsideUnit } from "./notes";
import type { ComponentSpec } from "./protocol";
import { beyondScale } from "./scale";

export interface Theme {
  dark: boolean;
  fg: string;
  strong: string;
  accent: string;
  warn: string;
  font: string;
}

export interface PanelPaint {
  grid: GridLayout;
  geom: Geometry;
  values: ArrayLike<number>;
  /** Normalised values (dots mark those outside [0, 1]); null for raw views. */
  normalized: ArrayLike<number> | null;
  max: number;
  colCoords: (number | string | object)[];
  colLabels: string[];
  highlightCols: Set<number>;
  inCircuit: (c: ComponentSpec) => boolean;
  focus: { r: number; c: number } | null;
}

export function paintPanel(ctx: CanvasRenderingContext2D, p: PanelPaint, theme: Theme): void {
  const { geom: g } = p;
  ctx.clearRect(0, 0, g.width, g.height);
  paintCells(ctx, p, theme);
  paintLabels(ctx, p, theme);
  paintMarks(ctx, p, theme);
}

function paintCells(ctx: CanvasRenderingContext2D, p: PanelPaint, theme: Theme): void {
  const { nRows, nCols } = p.grid;
  const image = ctx.createImageData(nCols, nRows);
  for (let i = 0; i < nRows * nCols; i++) {
    const [r, gr, b] = divergingColor(p.values[i], p.max, theme.dark);
    image.data.set([r, gr, b, 255], 4 * i);
  }
  const off = document.createElement("canvas");
  off.width = nCols;
  off.height = nRows;
  off.getContext("2d")?.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, p.geom.x0, p.geom.y0, nCols * p.geom.cw, nRows * p.geom.ch);
}

function paintLabels(ctx: CanvasRenderingContext2D, p: PanelPaint, theme: Theme): void {
  const { grid, geom: g } = p;
  ctx.font = `11px ${theme.font}`;
  ctx.fillStyle = theme.fg;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  if (grid.groups.length && g.ch < 10) {
    for (const grp of grid.groups) ctx.fillText(grp.label, g.x0 - 4, g.y0 + (grp.start + grp.count / 2) * g.ch);
  } else {
    for (let r = 0; r < grid.nRows; r += g.rowLabelEvery) ctx.fillText(grid.rowLabels[r], g.x0 - 4, g.y0 + (r + 0.5) * g.ch);
  }
  ctx.strokeStyle = theme.fg;
  ctx.lineWidth = 1;
  for (const r of grid.groupStarts) {
    ctx.beginPath();
    ctx.moveTo(g.x0, g.y0 + r * g.ch);
    ctx.lineTo(g.x0 + grid.nCols * g.cw, g.y0 + r * g.ch);
    ctx.stroke();
  }
  const isPos = grid.colAxis === "pos";
  for (let c = 0; c < grid.nCols; c += g.colLabelEvery) {
    const pos = Number(p.colCoords[c] ?? c);
    ctx.fillStyle = isPos && p.highlightCols.has(pos) ? theme.accent : theme.fg;
    ctx.save();
    ctx.translate(g.x0 + (c + 0.5) * g.cw, g.y0 - 4);
    if (g.rotateColLabels && g.cw >= 9) {
      ctx.rotate(-Math.PI / 3);
      ctx.textAlign = "left";
    } else {
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
    }
    const label = p.colLabels[c] ?? grid.colLabels[c];
    ctx.fillText(label.length > 16 ? `${label.slice(0, 15)}…` : label, 0, 0);
    ctx.restore();
    ctx.textBaseline = "middle";
  }
}

function paintMarks(ctx: CanvasRenderingContext2D, p: PanelPaint, theme: Theme): void {
  const { grid, geom: g } = p;
  const big = g.cw >= 6 && g.ch >= 6;
  if (big) {
    ctx.fillStyle = theme.strong;
    const radius = Math.max(1.5, Math.min(g.cw, g.ch) / 8);
    const corner = Math.max(3, Math.min(g.cw, g.ch) / 3);
    for (let i = 0; i < p.values.length; i++) {
      const r = Math.floor(i / grid.nCols);
      const c = i % grid.nCols;
      const x = g.x0 + c * g.cw;
      const y = g.y0 + r * g.ch;
      if (p.normalized && isOutsideUnit(p.normalized[i])) {
        ctx.beginPath();
        ctx.arc(x + 0.82 * g.cw, y + 0.22 * g.ch, radius, 0, 2 * Math.PI);
        ctx.fill();
      }
      if (beyondScale(p.values[i], p.max)) {
        // Beyond the colour scale: a corner triangle (the colour itself stops at the end).
        ctx.beginPath();
        ctx.moveTo(x, y);
        ctx.lineTo(x + corner, y);
        ctx.lineTo(x, y + corner);
        ctx.closePath();
        ctx.fill();
      }
    }
  }
  ctx.strokeStyle = theme.warn;
  ctx.lineWidth = 2;
  for (let r = 0; r < grid.nRows; r++) {
    for (let c = 0; c < grid.nCols; c++) {
      if (p.inCircuit(grid.component(r, c))) ctx.strokeRect(g.x0 + c * g.cw + 1, g.y0 + r * g.ch + 1, Math.max(1, g.cw - 2), Math.max(1, g.ch - 2));
    }
  }
  if (p.focus) {
    ctx.strokeStyle = theme.strong;
    ctx.lineWidth = 2;
    ctx.setLineDash([3, 2]);
    ctx.strokeRect(g.x0 + p.focus.c * g.cw, g.y0 + p.focus.r * g.ch, Math.max(2, g.cw), Math.max(2, g.ch));
    ctx.setLineDash([]);
  }
}

/** Colour bar of height `height` CSS px from -max to +max, ticks labelled inside the canvas. */
export function paintColorbar(canvas: HTMLCanvasElement, max: number, height: number, theme: Theme): void {
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  const width = 76;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.ceil(width * dpr);
  canvas.height = Math.ceil(height * dpr);
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const top = 8;
  const bar = Math.max(20, height - 2 * top);
  for (let y = 0; y < bar; y++) {
    ctx.fillStyle = cssColor(divergingColor(max * (1 - (2 * y) / (bar - 1)), max, theme.dark));
    ctx.fillRect(0, top + y, 12, 1);
  }
  ctx.fillStyle = theme.fg;
  ctx.font = `10px ${theme.font}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  const ticks = bar < 70 ? [-max, 0, max] : colorbarTicks(max);
  for (const t of ticks) {
    const y = top + ((max - t) / (2 * max)) * (bar - 1);
    ctx.fillRect(12, y, 3, 1);
    ctx.fillText(formatValue(t, 3), 17, y);
  }
}
