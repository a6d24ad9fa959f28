import { describe, expect, it } from "vitest";
import { cellAt, gridGeometry, gridLayout } from "../src/layout";

const headByPos = {
  site: "head_by_pos",
  axes: ["layer", "head", "pos"],
  shape: [2, 3, 4],
  labels: { layer: ["L4", "L5"], head: ["H0", "H1", "H2"], pos: ["0: a", "1: b", "2: c", "3: d"] },
  coords: { layer: [4, 5], head: [0, 1, 2], pos: [0, 1, 2, 3] },
  fixed: {},
};

describe("grid layout", () => {
  it("puts the last axis on columns and groups rows by the first axis", () => {
    const g = gridLayout(headByPos);
    expect([g.nRows, g.nCols]).toEqual([6, 4]);
    expect(g.rowLabels[4]).toBe("L5 H1");
    expect(g.colLabels[2]).toBe("2: c");
    expect(g.groupStarts).toEqual([3]);
    expect(g.groups.map((x) => x.label)).toEqual(["L4", "L5"]);
    expect(g.component(4, 2)).toEqual({ site: "head_by_pos", layer: 5, head: 1, pos: 2 });
  });

  it("maps layer x pos and head-part views to components", () => {
    const resid = gridLayout({ site: "resid_pre", axes: ["layer", "pos"], shape: [3, 2], labels: {}, coords: { layer: [0, 1, 2], pos: [5, 6] }, fixed: {} });
    expect(resid.component(2, 1)).toEqual({ site: "resid_pre", layer: 2, pos: 6 });
    expect(resid.rowLabels).toEqual(["0", "1", "2"]);
    const parts = gridLayout({
      site: "head",
      axes: ["site", "pos"],
      shape: [4, 2],
      labels: { site: ["q", "k", "v", "pattern"], pos: ["0", "1"] },
      coords: { site: ["head_q", "head_k", "head_v", "head_pattern"], pos: [0, 1] },
      fixed: { layer: 2, head: 3, kv_head: 1 },
    });
    expect(parts.component(0, 1)).toEqual({ site: "head_q", layer: 2, head: 3, pos: 1 });
    expect(parts.component(1, 1)).toEqual({ site: "head_k", layer: 2, kv_head: 1, pos: 1 });
    expect(parts.component(3, 0)).toEqual({ site: "head_pattern", layer: 2, head: 3, pos: 0 });
  });

  it("names key/value heads of a k/v sweep as kv_head", () => {
    const kv = gridLayout({ site: "head_v", axes: ["layer", "kv_head"], shape: [2, 2], labels: {}, coords: { layer: [0, 1], kv_head: [0, 1] }, fixed: {} });
    expect(kv.component(0, 1)).toEqual({ site: "head_v", layer: 0, kv_head: 1 });
  });

  it("computes geometry whose cell centres hit the right cells", () => {
    const g = gridLayout(headByPos);
    const geom = gridGeometry(500, g);
    expect(geom.cw).toBeGreaterThan(0);
    expect(geom.ch).toBeGreaterThanOrEqual(2);
    for (const [r, c] of [[0, 0], [5, 3], [2, 1]]) {
      const x = geom.x0 + (c + 0.5) * geom.cw;
      const y = geom.y0 + (r + 0.5) * geom.ch;
      expect(cellAt(x, y, geom, g.nRows, g.nCols)).toEqual({ r, c });
    }
    expect(cellAt(geom.x0 - 1, geom.y0 + 1, geom, g.nRows, g.nCols)).toBeNull();
  });

  it("keeps huge grids (neurons) within a readable canvas", () => {
    const neurons = gridLayout({ site: "neuron", axes: ["layer", "neuron"], shape: [12, 3072], labels: {}, coords: {}, fixed: {} });
    const geom = gridGeometry(800, neurons);
    expect(geom.width).toBeLessThanOrEqual(800 + 1);
    expect(geom.colLabelEvery).toBeGreaterThan(1);
    expect(cellAt(geom.x0 + 3071.5 * geom.cw, geom.y0 + 0.5 * geom.ch, geom, 12, 3072)).toEqual({ r: 0, c: 3071 });
  });

  it("keeps rotated column labels inside the canvas and the canvas inside its width", () => {
    const labels = ["10: Kate/Henry", "11: gave", "12: a", "13: flower", "14: to"];
    const five = { nRows: 3, nCols: 5, rowLabels: ["L0", "L1", "L2"], colLabels: labels };
    for (const width of [300, 390, 640]) expect(gridGeometry(width, five).width).toBeLessThanOrEqual(width + 1);
    const one = gridGeometry(640, { nRows: 4, nCols: 1, rowLabels: ["q", "k", "v", "pattern"], colLabels: ["10: Kate/Henry"] });
    expect(one.rotateColLabels).toBe(true);
    // a label of n characters leans about 3.3 px per character right of its column's centre
    expect(one.width - (one.x0 + one.cw / 2)).toBeGreaterThanOrEqual(14 * 3.3);
  });
});
