/**
 * Pure conversions between block states (0 skipped / 1 partial / 2 full, [B, H, nQ, nKV] row-major) and
 * PyTorch's ordered block tables. No Tensors here except the final wrapping, so everything is synchronous.
 *
 * Ordering rule (PyTorch's stable descending argsort of each 0/1 row): the valid block indices first in
 * ascending order, then the remaining block indices ascending. The padding is therefore a permutation
 * of the rest, never garbage, so a kernel may prefetch past the count without reading out of range.
 */
import { Tensor } from "../tensor/tensor.ts";
import { BLOCK_FULL, BLOCK_PARTIAL } from "./mask_blocks.ts";

/** Counts and ordered indices of one family (partial or full), flat row-major. */
export interface Ordered {
  readonly num: Int32Array; // [rows]
  readonly idx: Int32Array; // [rows, cols]
}

/**
 * Orders each of `rows` rows of `cols` entries, where `pick(row, col)` says whether the entry is valid.
 */
export function orderRows(rows: number, cols: number, pick: (row: number, col: number) => boolean): Ordered {
  const num = new Int32Array(rows);
  const idx = new Int32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let front = 0;
    for (let c = 0; c < cols; c++) if (pick(r, c)) idx[base + front++] = c;
    num[r] = front;
    let back = front;
    for (let c = 0; c < cols; c++) if (!pick(r, c)) idx[base + back++] = c;
  }
  return { num, idx };
}

/** The eight tables as plain arrays plus the grid sizes they were built for. */
export interface TableSet {
  readonly B: number;
  readonly H: number;
  readonly nQ: number;
  readonly nKV: number;
  readonly kv: Ordered;
  readonly fullKv: Ordered | null;
  readonly q: Ordered;
  readonly fullQ: Ordered | null;
}

/** All tables from a states grid (kv-major from rows, q-major from the transposed grid). */
export function tablesFromStates(states: ArrayLike<number>, B: number, H: number, nQ: number, nKV: number): TableSet {
  const at = (g: number, qb: number, kb: number) => states[(g * nQ + qb) * nKV + kb];
  const G = B * H;
  // kv-major rows are (g, qb); q-major rows are (g, kb).
  const kvRow = (r: number) => [Math.floor(r / nQ), r % nQ] as const;
  const qRow = (r: number) => [Math.floor(r / nKV), r % nKV] as const;
  const kv = orderRows(G * nQ, nKV, (r, c) => { const [g, qb] = kvRow(r); return at(g, qb, c) === BLOCK_PARTIAL; });
  const fullKv = orderRows(G * nQ, nKV, (r, c) => { const [g, qb] = kvRow(r); return at(g, qb, c) === BLOCK_FULL; });
  const q = orderRows(G * nKV, nQ, (r, c) => { const [g, kb] = qRow(r); return at(g, c, kb) === BLOCK_PARTIAL; });
  const fullQ = orderRows(G * nKV, nQ, (r, c) => { const [g, kb] = qRow(r); return at(g, c, kb) === BLOCK_FULL; });
  return { B, H, nQ, nKV, kv, fullKv, q, fullQ };
}

/** Writes `value` into `out` ([G, rows, cols]) at every valid entry of an ordered family. */
export function scatterOrdered(
  out: Int32Array,
  num: ArrayLike<number>,
  idx: ArrayLike<number>,
  rows: number,
  cols: number,
  value: number,
): void {
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < num[r]; i++) out[r * cols + idx[r * cols + i]] = value;
  }
}

/** Transposes an ordered family ([G, nR, nC] counts/indices) into the ordered family of the other axis. */
export function transposeOrdered(
  num: ArrayLike<number>,
  idx: ArrayLike<number>,
  G: number,
  nR: number,
  nC: number,
): Ordered {
  const dense = new Uint8Array(G * nR * nC);
  for (let r = 0; r < G * nR; r++) for (let i = 0; i < num[r]; i++) dense[r * nC + idx[r * nC + i]] = 1;
  return orderRows(G * nC, nR, (row, c) => {
    const g = Math.floor(row / nC), col = row % nC;
    return dense[(g * nR + c) * nC + col] === 1;
  });
}

/** A const i32 tensor over `data` (no copy). */
export function i32(data: Int32Array, shape: readonly number[]): Tensor {
  return new Tensor("const", [], [...shape], "i32", data);
}
