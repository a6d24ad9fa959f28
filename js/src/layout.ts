// How a view's axes map onto a 2-D grid, and where the grid's cells sit on the canvas.
import { KV_SITES, type ComponentSpec, type ViewMeta } from "./protocol";
import { cellCount } from "./decode";

/** Rows are the product of every axis but the last; columns are the last axis. */
export interface GridLayout {
  nRows: number;
  nCols: number;
  rowAxes: string[];
  colAxis: string;
  rowLabels: string[];
  colLabels: string[];
  /** Rows where the first row axis changes (group separators), excluding 0. */
  groupStarts: number[];
  /** Runs of rows sharing the first row axis (when there are several row axes). */
  groups: { start: number; count: number; label: string }[];
  component(r: number, c: number): ComponentSpec;
}

export function gridLayout(meta: Pick<ViewMeta, "axes" | "shape" | "labels" | "coords" | "fixed" | "site">): GridLayout {
  const axes = meta.axes;
  const colAxis = axes[axes.length - 1];
  const rowAxes = axes.slice(0, -1);
  const rowShape = meta.shape.slice(0, -1);
  const nCols = meta.shape[meta.shape.length - 1] ?? 1;
  const nRows = cellCount(rowShape);
  const rowIndex = (r: number): number[] => {
    const idx = new Array<number>(rowShape.length);
    for (let k = rowShape.length - 1; k >= 0; k--) {
      idx[k] = r % rowShape[k];
      r = Math.floor(r / rowShape[k]);
    }
    return idx;
  };
  const rowLabels: string[] = [];
  const groupStarts: number[] = [];
  const inner = rowShape.length > 1 ? cellCount(rowShape.slice(1)) : 0;
  for (let r = 0; r < nRows; r++) {
    const idx = rowIndex(r);
    rowLabels.push(rowAxes.map((a, k) => meta.labels[a]?.[idx[k]] ?? String(idx[k])).join(" "));
    if (inner > 1 && r > 0 && r % inner === 0) groupStarts.push(r);
  }
  const groups =
    inner > 1
      ? Array.from({ length: rowShape[0] }, (_, g) => ({
          start: g * inner,
          count: inner,
          label: meta.labels[rowAxes[0]]?.[g] ?? String(g),
        }))
      : [];
  const colLabels = (meta.labels[colAxis] ?? []).slice(0, nCols);
  while (colLabels.length < nCols) colLabels.push(String(colLabels.length));
  return {
    nRows,
    nCols,
    rowAxes,
    colAxis,
    rowLabels,
    colLabels,
    groupStarts,
    groups,
    component(r: number, c: number): ComponentSpec {
      const comp: ComponentSpec = { site: meta.site, layer: 0, ...meta.fixed };
      const idx = rowIndex(r);
      rowAxes.forEach((a, k) => assign(comp, a, meta.coords[a]?.[idx[k]] ?? idx[k]));
      assign(comp, colAxis, meta.coords[colAxis]?.[c] ?? c);
      // Keep only the head index space the site uses (a head drill-down fixes both).
      if (KV_SITES.has(comp.site)) delete comp.head;
      else delete comp.kv_head;
      return comp;
    },
  };
}

function assign(comp: ComponentSpec, axis: string, value: number | string | Partial<ComponentSpec>): void {
  if (typeof value === "object") Object.assign(comp, value);
  else if (axis === "site") comp.site = String(value);
  else if (axis === "layer" || axis === "head" || axis === "kv_head" || axis === "pos" || axis === "neuron") comp[axis] = Number(value);
}

/** Cell geometry in CSS px: cell (r, c) spans x0 + c*cw .. x0 + (c+1)*cw, same for rows. */
export interface Geometry {
  x0: number;
  y0: number;
  cw: number;
  ch: number;
  width: number;
  height: number;
  colLabelEvery: number;
  rowLabelEvery: number;
  rotateColLabels: boolean;
}

export const MAX_CELL = 56;
const MAX_GRID_HEIGHT = 620;

export function gridGeometry(width: number, grid: Pick<GridLayout, "nRows" | "nCols" | "rowLabels" | "colLabels">): Geometry {
  const longestRow = Math.max(2, ...grid.rowLabels.slice(0, 500).map((s) => s.length));
  const x0 = Math.min(140, 10 + longestRow * 7);
  const cellWidth = (pad: number) => Math.max(0.05, Math.min(MAX_CELL, (width - x0 - pad) / Math.max(1, grid.nCols)));
  const longestCol = Math.max(1, ...grid.colLabels.slice(0, 500).map((s) => s.length));
  const rotates = (w: number) => longestCol * 6.5 > w - 4;
  // Rotated column labels lean right: leave room so the last one is not clipped (one-column
  // drill views), and fit the cells into what remains so the canvas stays within `width`.
  const lean = Math.min(120, longestCol * 3.6);
  let cw = cellWidth(8);
  const rotateColLabels = rotates(cw);
  const padRight = rotateColLabels && cw >= 9 ? Math.max(8, lean - cw / 2) : 8;
  if (padRight > 8) cw = Math.max(Math.min(cw, 9), cellWidth(padRight));
  const ch = Math.max(2, Math.min(26, Math.floor(MAX_GRID_HEIGHT / Math.max(1, grid.nRows))));
  const y0 = cw >= 9 ? (rotateColLabels ? Math.min(90, 12 + longestCol * 5.5) : 22) : 20;
  return {
    x0,
    y0,
    cw,
    ch,
    width: x0 + cw * grid.nCols + padRight,
    height: y0 + ch * grid.nRows + 4,
    colLabelEvery: cw >= 9 ? 1 : Math.ceil(40 / cw),
    rowLabelEvery: ch >= 10 ? 1 : Math.ceil(12 / ch),
    rotateColLabels,
  };
}

/** The cell under a point (CSS px relative to the canvas), or null. */
export function cellAt(x: number, y: number, g: Geometry, nRows: number, nCols: number): { r: number; c: number } | null {
  const c = Math.floor((x - g.x0) / g.cw);
  const r = Math.floor((y - g.y0) / g.ch);
  if (x < g.x0 || y < g.y0 || r < 0 || c < 0 || r >= nRows || c >= nCols) return null;
  return { r, c };
}
