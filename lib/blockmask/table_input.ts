/**
 * Normalizes user-given block tables (for `BlockMask.fromKvBlocks`) to 4-D / 3-D const i32 Tensors and
 * validates them, so a bad table fails here with a typed error instead of inside a kernel.
 */
import { Tensor } from "../tensor/tensor.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

/**
 * A const i32 Tensor, or flat data with its shape.
 *
 * @example
 * ```ts
 * import { BlockMask } from "@flex/attention";
 * const m = BlockMask.fromKvBlocks({ data: [1], shape: [1] }, { data: [0], shape: [1, 1] });
 * ```
 */
export type TableInput = Tensor | { readonly data: ArrayLike<number>; readonly shape: readonly number[] };

/** Reads a table as (data, shape), refusing lazy tensors and non-integer data. */
function readTable(name: string, t: TableInput): { data: Int32Array; shape: number[]; tensor?: Tensor } {
  if (t instanceof Tensor) {
    if (t.dtype !== "i32") throw new DTypeError({ message: `fromKvBlocks: ${name} must be an i32 tensor, got ${t.dtype}` });
    const d = t.data;
    if (!d) {
      throw new InvalidArgument({
        message: `fromKvBlocks: ${name} is a lazy tensor (op ${t.op}); realize it first (await t.toArray()) and pass the values`,
      });
    }
    return { data: d as Int32Array, shape: [...t.shape], tensor: t };
  }
  if (!t || typeof t !== "object" || !("data" in t) || !Array.isArray(t.shape)) {
    throw new InvalidArgument({ message: `fromKvBlocks: ${name} must be a Tensor or { data: Int32Array, shape }` });
  }
  const shape = [...t.shape];
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new ShapeError({ message: `fromKvBlocks: ${name} has an invalid shape [${shape}]` });
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) {
    throw new ShapeError({ message: `fromKvBlocks: ${name} has ${t.data.length} values but shape [${shape}] needs ${n}` });
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isInteger(t.data[i])) throw new DTypeError({ message: `fromKvBlocks: ${name} holds a non-integer (${t.data[i]})` });
  }
  return { data: t.data instanceof Int32Array ? t.data : Int32Array.from(t.data), shape };
}

/** The validated kv tables, always [B, H, nQ] and [B, H, nQ, nKV]. */
export interface KvTables {
  readonly num: Tensor;
  readonly idx: Tensor;
  readonly B: number;
  readonly H: number;
  readonly nQ: number;
  readonly nKV: number;
}

/** Pads a shape to `rank` with leading 1s (PyTorch lets tables drop the batch / head dims). */
function toRank(shape: number[], rank: number): number[] {
  return [...Array(rank - shape.length).fill(1), ...shape];
}

export function normalizeKvTables(numName: string, idxName: string, numIn: TableInput, idxIn: TableInput): KvTables {
  const num = readTable(numName, numIn), idx = readTable(idxName, idxIn);
  if (idx.shape.length < 2 || idx.shape.length > 4) {
    throw new ShapeError({ message: `fromKvBlocks: ${idxName} must have 2 to 4 dims ([B, H,] nQ, nKV), got [${idx.shape}]` });
  }
  const expectNum = idx.shape.slice(0, -1);
  if (num.shape.length !== expectNum.length || num.shape.some((s, i) => s !== expectNum[i])) {
    throw new ShapeError({
      message: `fromKvBlocks: ${numName} must have shape [${expectNum}] to match ${idxName} [${idx.shape}], got [${num.shape}]`,
    });
  }
  const [B, H, nQ, nKV] = toRank(idx.shape, 4);
  if (nQ < 1 || nKV < 1 || B < 1 || H < 1) {
    throw new ShapeError({ message: `fromKvBlocks: ${idxName} has an empty dimension: [${idx.shape}]` });
  }
  checkRows(numName, idxName, num.data, idx.data, B * H * nQ, nKV);
  const num4 = num.tensor && num.shape.length === 3 ? num.tensor : new Tensor("const", [], [B, H, nQ], "i32", num.data);
  const idx4 = idx.tensor && idx.shape.length === 4 ? idx.tensor : new Tensor("const", [], [B, H, nQ, nKV], "i32", idx.data);
  return { num: num4, idx: idx4, B, H, nQ, nKV };
}

/** Counts within [0, nKV], every index within [0, nKV), no block listed twice among a row's valid entries. */
function checkRows(numName: string, idxName: string, num: Int32Array, idx: Int32Array, rows: number, nKV: number): void {
  const seen = new Int32Array(nKV).fill(-1);
  for (let r = 0; r < rows; r++) {
    if (num[r] < 0 || num[r] > nKV) {
      throw new InvalidArgument({ message: `fromKvBlocks: ${numName} row ${r} is ${num[r]}; it must be within [0, ${nKV}]` });
    }
    for (let i = 0; i < nKV; i++) {
      const v = idx[r * nKV + i];
      if (v < 0 || v >= nKV) {
        throw new InvalidArgument({ message: `fromKvBlocks: ${idxName} row ${r} holds block ${v}, outside [0, ${nKV})` });
      }
      if (i < num[r]) {
        if (seen[v] === r) throw new InvalidArgument({ message: `fromKvBlocks: ${idxName} row ${r} lists block ${v} twice` });
        seen[v] = r;
      }
    }
  }
}

/** A row must not list a block both as partial and as full. */
export function checkDisjoint(partial: KvTables, full: KvTables): void {
  const rows = partial.B * partial.H * partial.nQ, nKV = partial.nKV;
  const pn = partial.num.data!, pi = partial.idx.data!, fn = full.num.data!, fi = full.idx.data!;
  const mark = new Int32Array(nKV).fill(-1);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < pn[r]; i++) mark[pi[r * nKV + i]] = r;
    for (let i = 0; i < fn[r]; i++) {
      if (mark[fi[r * nKV + i]] === r) {
        throw new InvalidArgument({
          message: `fromKvBlocks: row ${r} lists kv block ${fi[r * nKV + i]} both as partial and as full`,
        });
      }
    }
  }
}
