// Binary buffers from the kernel (little-endian float32) -> typed arrays.
import { N_FIELDS, type CircuitMeta, type Direction, type ViewMeta } from "./protocol";

export type Bytes = DataView | ArrayBuffer | ArrayBufferView;

/** Readouts of one direction of a view: cells x pairs x fields, plus the two baselines. */
export interface Panel {
  direction: Direction;
  readouts: Float32Array;
  clean: Float32Array;
  corrupted: Float32Array;
}

export interface CircuitEntry {
  direction: Direction;
  which: "circuit" | "complement";
  readouts: Float32Array;
  clean: Float32Array;
  corrupted: Float32Array;
}

/** A float32 view of the bytes; copies when the offset isn't 4-byte aligned. */
export function toFloat32(bytes: Bytes): Float32Array {
  if (bytes instanceof ArrayBuffer) return new Float32Array(bytes.slice(0, bytes.byteLength & ~3));
  const { buffer, byteOffset, byteLength } = bytes;
  const n = byteLength >> 2;
  if (byteOffset % 4 === 0) return new Float32Array(buffer, byteOffset, n);
  return new Float32Array(buffer.slice(byteOffset, byteOffset + n * 4) as ArrayBuffer);
}

export function cellCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Split a view's buffer into one Panel per direction; throws if the size is wrong. */
export function splitView(meta: ViewMeta, bytes: Bytes): Panel[] {
  const data = toFloat32(bytes);
  const base = meta.n_pairs * N_FIELDS;
  const size = cellCount(meta.shape) * base;
  // Attribution views append per direction the estimate and a flag per cell (estimate.ts).
  const extra = meta.method === "attribution" ? meta.directions.length * cellCount(meta.shape) * (base + 1) : 0;
  const expected = meta.directions.length * (size + 2 * base) + extra;
  if (data.length !== expected) {
    throw new Error(`view buffer holds ${data.length} floats, expected ${expected}`);
  }
  let offset = 0;
  const take = (n: number) => data.subarray(offset, (offset += n));
  return meta.directions.map((direction) => ({
    direction,
    readouts: take(size),
    clean: take(base),
    corrupted: take(base),
  }));
}

/** Split a circuit check's buffer into its (direction, circuit|complement) entries. */
export function splitCircuit(meta: CircuitMeta, bytes: Bytes): CircuitEntry[] {
  const data = toFloat32(bytes);
  const base = meta.n_pairs * N_FIELDS;
  if (data.length !== meta.entries.length * 3 * base) {
    throw new Error(`circuit buffer holds ${data.length} floats, expected ${meta.entries.length * 3 * base}`);
  }
  let offset = 0;
  const take = (n: number) => data.subarray(offset, (offset += n));
  return meta.entries.map((e) => ({ ...e, readouts: take(base), clean: take(base), corrupted: take(base) }));
}
