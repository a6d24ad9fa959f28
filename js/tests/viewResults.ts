// Builders of the kernel's view results (request, metadata, float32 buffer), shared by the tests.
import { N_FIELDS, type ViewMeta, type ViewRequest } from "../src/protocol";

/** A denoising resid_pre sweep over every layer and position, with `overrides`. */
export function sweepRequest(overrides: Partial<ViewRequest> = {}): ViewRequest {
  return {
    kind: "sweep",
    site: "resid_pre",
    direction: "denoising",
    layers: null,
    heads: null,
    positions: null,
    neurons: null,
    label: "",
    ...overrides,
  };
}

/** The metadata of a finished one-pair `sweepRequest()` view over (layer, pos), with `overrides`. */
export function viewMeta(overrides: Partial<ViewMeta> = {}): ViewMeta {
  return {
    id: 1,
    status: "done",
    request: sweepRequest(),
    site: "resid_pre",
    kind: "sweep",
    directions: ["denoising"],
    axes: ["layer", "pos"],
    shape: [1, 1],
    labels: {},
    coords: {},
    fixed: {},
    n_pairs: 1,
    done: 0,
    total: 0,
    eta_s: null,
    ...overrides,
  };
}

/** One direction's floats where only the logit differences are set: `cells[c][p]` is cell c's
 * readout for pair p, then the clean baseline `clean[p]` per pair, then corrupted (all 0). */
export function logitDiffPanel(cells: number[][], clean: number[]): Float32Array {
  const nPairs = clean.length;
  const data = new Float32Array((cells.length + 2) * nPairs * N_FIELDS);
  cells.forEach((values, c) => {
    values.forEach((v, p) => {
      data[(c * nPairs + p) * N_FIELDS] = v;
    });
  });
  clean.forEach((v, p) => {
    data[(cells.length * nPairs + p) * N_FIELDS] = v;
  });
  return data;
}

/** The kernel's `result` message for `meta` and its buffer, as `msg:custom` delivers them. */
export function resultMessage(
  meta: ViewMeta,
  data: Float32Array,
): [Record<string, unknown>, DataView[]] {
  return [{ type: "result", id: meta.id, meta, status: meta.status }, [new DataView(data.buffer)]];
}
