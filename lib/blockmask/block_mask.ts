/**
 * BlockMask: the block-sparse description of a mask, in PyTorch's layout (BCSR-like), all tables i32 Tensors.
 *
 *   kvNumBlocks     [B, H, nQ]        partial (mask-needing) kv blocks per q block
 *   kvIndices       [B, H, nQ, nKV]   their kv-block indices, first kvNumBlocks entries valid, ascending
 *   fullKvNumBlocks [B, H, nQ]        blocks where the mask is true everywhere (mask_mod skipped there)
 *   fullKvIndices   [B, H, nQ, nKV]
 *   qNumBlocks / qIndices / fullQNumBlocks / fullQIndices: the same, transposed (q-major, for backward)
 *
 * B and H are 1 when the mask broadcasts over batch / heads. nQ = ceil(qLen / blockSize[0]),
 * nKV = ceil(kvLen / blockSize[1]). Edge blocks are padded with `false` (as PyTorch), so a block that
 * sticks out past a length is never "full".
 *
 * Tables are const i32 Tensors; each row lists its valid blocks first, ascending, then the other block
 * indices ascending (PyTorch's stable descending argsort). Partial tables exclude full blocks.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { knownValue } from "../tensor/host_values.ts";
import { type MaskMod, traceMaskMod, type TracedMod } from "../mods/trace.ts";
import { checkMaskArity } from "../mods/mod_checks.ts";
import { Expr } from "../ir/expr.ts";
import { InvalidArgument, ShapeError } from "../errors.ts";
import { BLOCK_EMPTY, BLOCK_FULL, BLOCK_PARTIAL, numBlocks } from "./mask_blocks.ts";
import { i32, scatterOrdered, type TableSet, tablesFromStates, transposeOrdered } from "./tables.ts";
import { checkDisjoint, normalizeKvTables, type TableInput } from "./table_input.ts";
import { renderStates, type ToStringOptions } from "./to_string.ts";
import { blockSizePair, positiveInt } from "./validate.ts";
import { type BlockTablesArg, blockTablesNode, PARTS, partOffsets, partSize, type TablePart } from "./block_tables.ts";

/**
 * The tables of a BlockMask (PyTorch's layout: i32 tensors, kv-major and q-major, partial and full) and its mask mod.
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask } from "@flex/attention";
 * const { kvNumBlocks, kvIndices, blockSize } = await createBlockMask(causalMask, null, null, 256, 256);
 * ```
 */
export interface BlockMaskFields {
  /** [qLen, kvLen] the mask was built for. */
  readonly seqLengths: readonly [number, number];
  /** [q, kv] block size. */
  readonly blockSize: readonly [number, number];
  /** [B, H, nQ]: partial kv blocks per q block. */
  readonly kvNumBlocks: Tensor;
  /** [B, H, nQ, nKV]: their indices, first kvNumBlocks of each row used. */
  readonly kvIndices: Tensor;
  /** [B, H, nQ]: full kv blocks per q block (the mask mod is skipped there); null when not separated. */
  readonly fullKvNumBlocks: Tensor | null;
  /** [B, H, nQ, nKV]: their indices. */
  readonly fullKvIndices: Tensor | null;
  /** [B, H, nKV]: partial q blocks per kv block (the backward's transpose). */
  readonly qNumBlocks: Tensor;
  /** [B, H, nKV, nQ]: their indices. */
  readonly qIndices: Tensor;
  /** [B, H, nKV]: full q blocks per kv block. */
  readonly fullQNumBlocks: Tensor | null;
  /** [B, H, nKV, nQ]: their indices. */
  readonly fullQIndices: Tensor | null;
  /** The user's mask function (used by the kernels on partial blocks). */
  readonly maskMod: MaskMod;
  /** Its trace (the kernel-cache key and the IR the kernels splice in). */
  readonly tracedMask: TracedMod;
}

/**
 * The eight tables in the one order the backward packs them (kv-major partial / full, then q-major partial /
 * full); null where a mask has no full blocks.
 */
export function blockMaskTables(m: BlockMaskFields): (Tensor | null)[] {
  return [m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks, m.fullKvIndices, m.qNumBlocks, m.qIndices, m.fullQNumBlocks, m.fullQIndices];
}

/**
 * Constructor fields; `tracedMask` is traced from `maskMod` when left out.
 *
 * @example
 * ```ts
 * import { BlockMask, causalMask, createBlockMask } from "@flex/attention";
 * const m = await createBlockMask(causalMask, null, null, 256, 256);
 * const same = new BlockMask({ ...m, tracedMask: undefined }); // traced again from m.maskMod
 * ```
 */
export type BlockMaskInit = Omit<BlockMaskFields, "tracedMask"> & { readonly tracedMask?: TracedMod };

/**
 * Options of `BlockMask.fromKvBlocks`.
 *
 * @example
 * ```ts
 * import { BlockMask, tensor } from "@flex/attention";
 * // one q block, attending to kv blocks 0 and 1 (block size 64)
 * const m = BlockMask.fromKvBlocks(tensor([2], [1, 1, 1], { dtype: "i32" }), tensor([0, 1], [1, 1, 1, 2], { dtype: "i32" }), null, null, { blockSize: 64 });
 * ```
 */
export interface FromKvBlocksOptions {
  /** One size for both axes or [q, kv]; default 128. */
  readonly blockSize?: number | readonly [number, number];
  /** Applied by the kernels on partial blocks; default: the noop mask (every entry kept). */
  readonly maskMod?: MaskMod;
  /** [qLen, kvLen]; default: the table sizes times the block size. */
  readonly seqLengths?: readonly [number, number];
}

/**
 * Options of `BlockMask.fromStates`: the grid's sizes and the mask mod.
 *
 * @example
 * ```ts
 * import { BlockMask, noopMask } from "@flex/attention";
 * // 0 skipped, 1 partial, 2 full: a 2×2 lower triangle of 64-blocks
 * const m = BlockMask.fromStates([1, 0, 2, 1], { B: 1, H: 1, qLen: 128, kvLen: 128, blockSize: [64, 64], maskMod: noopMask });
 * ```
 */
export interface FromStatesOptions {
  /** Batch size of the grid (1: broadcast). */
  readonly B: number;
  /** Heads of the grid (1: broadcast). */
  readonly H: number;
  /** Query length. */
  readonly qLen: number;
  /** Key/value length. */
  readonly kvLen: number;
  /** [q, kv] block size. */
  readonly blockSize: readonly [number, number];
  /** The mask mod the kernels apply on partial blocks. */
  readonly maskMod: MaskMod;
  /** Its trace, when already known. */
  readonly tracedMask?: TracedMod;
}

/** Default-mask grids up to this many blocks get host tables at call time (≤ 16 KiB a table, S ≤ 8192 at 128). */
export const EAGER_NOOP_BLOCKS = 4096;

function noopMask(_b: Expr, _h: Expr, _q: Expr, _kv: Expr): boolean { return true; }
const NOOP_TRACED = traceMaskMod(noopMask);

function list(xs: readonly number[]): string { return `[${xs.join(", ")}]`; }
function dims(t: Tensor | null): string { return t ? list(t.shape) : "null"; }

function expectShape(name: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new ShapeError({ message: `BlockMask: ${name} must have shape [${shape}], got [${t.shape}]` });
  }
  if (t.dtype !== "i32") throw new ShapeError({ message: `BlockMask: ${name} must be an i32 tensor, got ${t.dtype}` });
}

/** A table's values: its data, or the value an executor realized for it (a lazy table after a realize). */
/** Counts of a table with host values: integers in [0, n], and partial + full ≤ n per row (else InvalidArgument). */
function checkCounts(name: string, t: Tensor, full: Tensor | null, fullName: string, n: number): void {
  const a = knownValue(t), b = full ? knownValue(full) : undefined;
  const bad = (which: string, i: number, v: number) => {
    throw new InvalidArgument({ message: `BlockMask: ${which}[${i}] = ${v} is outside [0, ${n}] (there are ${n} blocks in a row)` });
  };
  if (a) for (let i = 0; i < a.length; i++) if (!(Number.isInteger(a[i]) && a[i] >= 0 && a[i] <= n)) bad(name, i, a[i]);
  if (b) for (let i = 0; i < b.length; i++) if (!(Number.isInteger(b[i]) && b[i] >= 0 && b[i] <= n)) bad(fullName, i, b[i]);
  if (a && b) {
    for (let i = 0; i < a.length; i++) {
      if (a[i] + b[i] > n) {
        throw new InvalidArgument({ message: `BlockMask: row ${i} has ${a[i]} ${name} + ${b[i]} ${fullName} > ${n} blocks` });
      }
    }
  }
}

function constData(name: string, t: Tensor): Int32Array {
  const d = knownValue(t);
  if (!d) {
    throw new InvalidArgument({
      message: `BlockMask: ${name} is a lazy tensor not realized yet (the lazy default mask of a large flexAttention call); ` +
        `realize it first (await ${name}.toArray()) or build the mask with createBlockMask`,
    });
  }
  return d as Int32Array;
}

/**
 * A slice index: an integer (the dim stays, size 1), a [start, stop) range (Python's start:stop), or null (all).
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, 2, 4, 512, 512);
 * const part = mask.slice(null, [1, 3], 0); // every batch, heads 1–2, q block 0
 * ```
 */
export type SliceIndex = number | readonly [number, number] | null | undefined;

/** What one dim of a slice keeps: the table rows read, and how the new index maps to the old one. */
interface DimPick {
  readonly rows: number[];
  /** The old index of new index 0 (the mask mod sees new + start), or null when the dim is untouched. */
  readonly start: number | null;
  /** An integer index: the mask mod sees this constant (batch / head) instead of new + start. */
  readonly fixed: boolean;
}

/**
 * Normalizes one slice index over a dim of `size` table rows (negative counts from the end, as in Python).
 * A broadcast dim (B or H of 1) takes any index ≥ 0 and any range, keeps size 1 and reads row 0.
 */
function pickDim(value: SliceIndex, size: number, broadcast: boolean, name: string): DimPick {
  const who = "BlockMask.slice";
  if (value === null || value === undefined) return { rows: [...Array(size).keys()], start: null, fixed: false };
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new InvalidArgument({ message: `${who}: ${name} must be an integer, a [start, stop) pair or null, got ${value}` });
    if (broadcast) {
      if (value < 0) throw new InvalidArgument({ message: `${who}: ${name} ${value} is negative on a broadcast dim (use an index ≥ 0)` });
      return { rows: [0], start: value, fixed: true };
    }
    const v = value < 0 ? value + size : value;
    if (v < 0 || v >= size) throw new InvalidArgument({ message: `${who}: ${name} ${value} is outside [${-size}, ${size})` });
    return { rows: [v], start: v, fixed: true };
  }
  if (!Array.isArray(value) || value.length !== 2 || !value.every(Number.isInteger)) {
    throw new InvalidArgument({ message: `${who}: ${name} must be an integer, a [start, stop) pair of integers or null, got ${String(value)}` });
  }
  let [a, b] = value as readonly [number, number];
  if (broadcast) {
    if (a < 0 || b <= a) throw new InvalidArgument({ message: `${who}: ${name} range [${a}, ${b}) on a broadcast dim needs 0 ≤ start < stop` });
    return { rows: [0], start: a, fixed: false };
  }
  // Python's clamping of start:stop
  a = Math.min(size, Math.max(0, a < 0 ? a + size : a));
  b = Math.min(size, Math.max(0, b < 0 ? b + size : b));
  if (b <= a) throw new InvalidArgument({ message: `${who}: ${name} range [${value[0]}, ${value[1]}) selects nothing of ${size} (a mask cannot be empty)` });
  return { rows: Array.from({ length: b - a }, (_, i) => a + i), start: a, fixed: false };
}

/** The rows (b, h, r) of a [B, H, R, inner] table, each dim picked by a row list. */
function pickRows(t: Tensor, bs: number[], hs: number[], rs: number[] | null): Tensor {
  const [, H, R, ...rest] = t.shape;
  const inner = rest.reduce((x, y) => x * y, 1);
  const data = constData("table", t);
  const rows = rs ?? [...Array(R).keys()];
  const out = new Int32Array(bs.length * hs.length * rows.length * inner);
  let o = 0;
  for (const bi of bs) for (const hi of hs) for (const r of rows) {
    const at = ((bi * H + hi) * R + r) * inner;
    out.set(data.subarray(at, at + inner), o);
    o += inner;
  }
  return i32(out, [bs.length, hs.length, rows.length, ...rest]);
}

/**
 * The block-sparse mask, PyTorch's `BlockMask` in camelCase. Build one with `createBlockMask`,
 * `BlockMask.fromKvBlocks` or `BlockMask.noop`; all tables are const i32 Tensors.
 *
 * @example
 * ```ts
 * import { BlockMask, causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 512, 512);
 * console.log(mask.toString(), mask.sparsity()); // 4×4 blocks, 37.5 % skipped
 * const head0 = mask.slice(0, 0);
 * const all = BlockMask.noop(512, 512);      // every block (edges partial)
 * ```
 */
export class BlockMask implements BlockMaskFields {
  /** [qLen, kvLen] the mask was built for. */
  readonly seqLengths: readonly [number, number];
  /** [q, kv] block size. */
  readonly blockSize: readonly [number, number];
  /** [B, H, nQ]: partial kv blocks per q block. */
  readonly kvNumBlocks: Tensor;
  /** [B, H, nQ, nKV]: their indices, first kvNumBlocks of each row used. */
  readonly kvIndices: Tensor;
  /** [B, H, nQ]: full kv blocks per q block; null when not separated. */
  readonly fullKvNumBlocks: Tensor | null;
  /** [B, H, nQ, nKV]: their indices. */
  readonly fullKvIndices: Tensor | null;
  /** [B, H, nKV]: partial q blocks per kv block. */
  readonly qNumBlocks: Tensor;
  /** [B, H, nKV, nQ]: their indices. */
  readonly qIndices: Tensor;
  /** [B, H, nKV]: full q blocks per kv block. */
  readonly fullQNumBlocks: Tensor | null;
  /** [B, H, nKV, nQ]: their indices. */
  readonly fullQIndices: Tensor | null;
  /** The mask mod the kernels apply on partial blocks. */
  readonly maskMod: MaskMod;
  /** Its trace (the kernel-cache key). */
  readonly tracedMask: TracedMod;
  #states: Int32Array | undefined;

  /**
   * A BlockMask from its tables (validated); most users call `createBlockMask` or `BlockMask.fromKvBlocks`.
   */
  constructor(f: BlockMaskInit) {
    const [qLen, kvLen] = f.seqLengths;
    positiveInt(qLen, "seqLengths[0]", "BlockMask");
    positiveInt(kvLen, "seqLengths[1]", "BlockMask");
    const [bq, bkv] = blockSizePair([...f.blockSize], "BlockMask");
    if ((f.fullKvNumBlocks === null) !== (f.fullKvIndices === null) || (f.fullQNumBlocks === null) !== (f.fullQIndices === null) ||
      (f.fullKvNumBlocks === null) !== (f.fullQNumBlocks === null)) {
      throw new InvalidArgument({ message: "BlockMask: the full-block tables must be all given or all null" });
    }
    if (f.kvNumBlocks.rank !== 3) {
      throw new ShapeError({ message: `BlockMask: kvNumBlocks must be [B, H, nQ], got [${f.kvNumBlocks.shape}]` });
    }
    const [B, H] = f.kvNumBlocks.shape;
    const nQ = numBlocks(qLen, bq), nKV = numBlocks(kvLen, bkv);
    expectShape("kvNumBlocks", f.kvNumBlocks, [B, H, nQ]);
    expectShape("kvIndices", f.kvIndices, [B, H, nQ, nKV]);
    expectShape("qNumBlocks", f.qNumBlocks, [B, H, nKV]);
    expectShape("qIndices", f.qIndices, [B, H, nKV, nQ]);
    if (f.fullKvNumBlocks) expectShape("fullKvNumBlocks", f.fullKvNumBlocks, [B, H, nQ]);
    if (f.fullKvIndices) expectShape("fullKvIndices", f.fullKvIndices, [B, H, nQ, nKV]);
    if (f.fullQNumBlocks) expectShape("fullQNumBlocks", f.fullQNumBlocks, [B, H, nKV]);
    if (f.fullQIndices) expectShape("fullQIndices", f.fullQIndices, [B, H, nKV, nQ]);
    if (typeof f.maskMod !== "function") throw new InvalidArgument({ message: "BlockMask: maskMod must be a function" });
    // the kernels' block walks trust each row's count (lib/runtime/ROBUSTNESS.md): counts with host values must lie in
    // [0, n] and partial + full ≤ n per row (a lazy table from createBlockMask is correct by construction)
    checkCounts("kvNumBlocks", f.kvNumBlocks, f.fullKvNumBlocks, "fullKvNumBlocks", nKV);
    checkCounts("qNumBlocks", f.qNumBlocks, f.fullQNumBlocks, "fullQNumBlocks", nQ);
    this.seqLengths = [qLen, kvLen];
    this.blockSize = [bq, bkv];
    this.kvNumBlocks = f.kvNumBlocks;
    this.kvIndices = f.kvIndices;
    this.fullKvNumBlocks = f.fullKvNumBlocks;
    this.fullKvIndices = f.fullKvIndices;
    this.qNumBlocks = f.qNumBlocks;
    this.qIndices = f.qIndices;
    this.fullQNumBlocks = f.fullQNumBlocks;
    this.fullQIndices = f.fullQIndices;
    this.maskMod = f.maskMod;
    this.tracedMask = f.tracedMask ?? traceMaskMod(f.maskMod);
  }

  /** [B, H, qLen, kvLen]; B and H are 1 where the mask broadcasts. */
  get shape(): [number, number, number, number] {
    const [B, H] = this.kvNumBlocks.shape;
    return [B, H, this.seqLengths[0], this.seqLengths[1]];
  }
  /** q blocks: ceil(qLen / blockSize[0]). */
  get numQBlocks(): number { return this.kvIndices.shape[2]; }
  /** kv blocks: ceil(kvLen / blockSize[1]). */
  get numKvBlocks(): number { return this.kvIndices.shape[3]; }
  /** PyTorch's `numel()`: the elements of the mask's shape, B·H·qLen·kvLen (sparsity not counted). */
  numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Blocks the kernels compute (partial + full) summed over every (b, h, q block). */
  get numComputedBlocks(): number {
    let n = 0;
    for (const t of [this.kvNumBlocks, this.fullKvNumBlocks]) if (t) for (const v of constData("num", t)) n += v;
    return n;
  }

  // ------------------------------------------------------------------ constructors

  /** Every table from a states grid [B, H, nQ, nKV] (0 skipped / 1 partial / 2 full). Pure and synchronous. */
  static fromStates(states: ArrayLike<number>, o: FromStatesOptions): BlockMask {
    const nQ = numBlocks(o.qLen, o.blockSize[0]), nKV = numBlocks(o.kvLen, o.blockSize[1]);
    if (states.length !== o.B * o.H * nQ * nKV) {
      throw new ShapeError({ message: `BlockMask.fromStates: ${states.length} states for a [${o.B}, ${o.H}, ${nQ}, ${nKV}] grid` });
    }
    return BlockMask.fromTables(tablesFromStates(states, o.B, o.H, nQ, nKV), o);
  }

  /**
   * A BlockMask over the packed value of a `blockTables` node (every part, or the partial ones only when
   * `separateFull` is false): the tables are views of `packed`, no copy.
   */
  static fromPacked(packed: Int32Array, a: BlockTablesArg, maskMod: MaskMod, tracedMask?: TracedMod): BlockMask {
    const offs = partOffsets(a);
    const nQ = numBlocks(a.qLen, a.blockSize[0]), nKV = numBlocks(a.kvLen, a.blockSize[1]);
    const kvShape = [a.B, a.H, nQ, nKV], qShape = [a.B, a.H, nKV, nQ];
    const part = (p: TablePart, shape: number[]) => {
      const o = offs.get(p);
      return o === undefined ? null : i32(packed.subarray(o, o + partSize(a, p)), shape);
    };
    const need = (p: TablePart, shape: number[]) => {
      const t = part(p, shape);
      if (!t) throw new InvalidArgument({ message: `BlockMask.fromPacked: the packed tables lack ${p}` });
      return t;
    };
    return new BlockMask({
      seqLengths: [a.qLen, a.kvLen],
      blockSize: a.blockSize,
      kvNumBlocks: need("kvNum", kvShape.slice(0, 3)),
      kvIndices: need("kvIdx", kvShape),
      fullKvNumBlocks: part("fullKvNum", kvShape.slice(0, 3)),
      fullKvIndices: part("fullKvIdx", kvShape),
      qNumBlocks: need("qNum", qShape.slice(0, 3)),
      qIndices: need("qIdx", qShape),
      fullQNumBlocks: part("fullQNum", qShape.slice(0, 3)),
      fullQIndices: part("fullQIdx", qShape),
      maskMod,
      tracedMask,
    });
  }

  /** The mask of a table set (internal). */
  private static fromTables(t: TableSet, o: Omit<FromStatesOptions, "B" | "H">): BlockMask {
    const { B, H, nQ, nKV } = t;
    const kvShape = [B, H, nQ, nKV], qShape = [B, H, nKV, nQ];
    return new BlockMask({
      seqLengths: [o.qLen, o.kvLen],
      blockSize: o.blockSize,
      kvNumBlocks: i32(t.kv.num, kvShape.slice(0, 3)),
      kvIndices: i32(t.kv.idx, kvShape),
      fullKvNumBlocks: t.fullKv ? i32(t.fullKv.num, kvShape.slice(0, 3)) : null,
      fullKvIndices: t.fullKv ? i32(t.fullKv.idx, kvShape) : null,
      qNumBlocks: i32(t.q.num, qShape.slice(0, 3)),
      qIndices: i32(t.q.idx, qShape),
      fullQNumBlocks: t.fullQ ? i32(t.fullQ.num, qShape.slice(0, 3)) : null,
      fullQIndices: t.fullQ ? i32(t.fullQ.idx, qShape) : null,
      maskMod: o.maskMod,
      tracedMask: o.tracedMask,
    });
  }

  /**
   * PyTorch's `from_kv_blocks`: a BlockMask from kv-major tables (kept as given, after validation), with the
   * q-major tables built as their exact transposition. Tables may drop leading dims ([nQ], [nQ, nKV]).
   */
  static fromKvBlocks(
    kvNumBlocks: TableInput,
    kvIndices: TableInput,
    fullKvNumBlocks: TableInput | null = null,
    fullKvIndices: TableInput | null = null,
    options: FromKvBlocksOptions = {},
  ): BlockMask {
    if ((fullKvNumBlocks === null || fullKvNumBlocks === undefined) !== (fullKvIndices === null || fullKvIndices === undefined)) {
      throw new InvalidArgument({ message: "fromKvBlocks: fullKvNumBlocks and fullKvIndices must be both given or both omitted" });
    }
    const kv = normalizeKvTables("kvNumBlocks", "kvIndices", kvNumBlocks, kvIndices);
    const full = fullKvNumBlocks && fullKvIndices
      ? normalizeKvTables("fullKvNumBlocks", "fullKvIndices", fullKvNumBlocks, fullKvIndices)
      : null;
    if (full) {
      if (full.B !== kv.B || full.H !== kv.H || full.nQ !== kv.nQ || full.nKV !== kv.nKV) {
        throw new ShapeError({ message: `fromKvBlocks: fullKvIndices [${full.idx.shape}] must match kvIndices [${kv.idx.shape}]` });
      }
      checkDisjoint(kv, full);
    }
    const blockSize = blockSizePair(options.blockSize, "fromKvBlocks");
    const maskMod = options.maskMod ?? noopMask;
    if (typeof maskMod !== "function") throw new InvalidArgument({ message: "fromKvBlocks: maskMod must be a function" });
    checkMaskArity(maskMod, "fromKvBlocks: maskMod");
    const seq = options.seqLengths ?? [kv.nQ * blockSize[0], kv.nKV * blockSize[1]];
    const qLen = positiveInt(seq[0], "seqLengths[0]", "fromKvBlocks"), kvLen = positiveInt(seq[1], "seqLengths[1]", "fromKvBlocks");
    if (numBlocks(qLen, blockSize[0]) !== kv.nQ || numBlocks(kvLen, blockSize[1]) !== kv.nKV) {
      throw new ShapeError({
        message: `fromKvBlocks: lengths (${qLen}, ${kvLen}) with block size [${blockSize}] need a ` +
          `[${numBlocks(qLen, blockSize[0])}, ${numBlocks(kvLen, blockSize[1])}] block grid, the tables have [${kv.nQ}, ${kv.nKV}]`,
      });
    }
    const G = kv.B * kv.H, qShape = [kv.B, kv.H, kv.nKV, kv.nQ];
    const q = transposeOrdered(kv.num.data!, kv.idx.data!, G, kv.nQ, kv.nKV);
    const fullQ = full ? transposeOrdered(full.num.data!, full.idx.data!, G, kv.nQ, kv.nKV) : null;
    return new BlockMask({
      seqLengths: [qLen, kvLen],
      blockSize,
      kvNumBlocks: kv.num,
      kvIndices: kv.idx,
      fullKvNumBlocks: full ? full.num : null,
      fullKvIndices: full ? full.idx : null,
      qNumBlocks: i32(q.num, qShape.slice(0, 3)),
      qIndices: i32(q.idx, qShape),
      fullQNumBlocks: fullQ ? i32(fullQ.num, qShape.slice(0, 3)) : null,
      fullQIndices: fullQ ? i32(fullQ.idx, qShape) : null,
      maskMod,
      tracedMask: maskMod === noopMask ? NOOP_TRACED : undefined,
    });
  }

  /**
   * The mask of "no mask": B = H = 1, the noop mask mod, synchronous (flexAttention's default).
   * Blocks inside both lengths are full; an edge block that sticks out past a length is partial, as
   * createBlockMask(noopMask) would build it, so no full block ever reaches past the data.
   */
  static noop(qLen: number, kvLen: number, blockSize: number | readonly [number, number] = 128): BlockMask {
    positiveInt(qLen, "qLen", "BlockMask.noop");
    positiveInt(kvLen, "kvLen", "BlockMask.noop");
    const [bq, bkv] = blockSizePair(blockSize, "BlockMask.noop");
    const nQ = numBlocks(qLen, bq), nKV = numBlocks(kvLen, bkv);
    const states = new Int32Array(nQ * nKV);
    for (let i = 0; i < nQ; i++) {
      for (let j = 0; j < nKV; j++) {
        const inside = (i + 1) * bq <= qLen && (j + 1) * bkv <= kvLen;
        states[i * nKV + j] = inside ? BLOCK_FULL : BLOCK_PARTIAL;
      }
    }
    return BlockMask.fromStates(states, {
      B: 1, H: 1, qLen, kvLen, blockSize: [bq, bkv], maskMod: noopMask, tracedMask: NOOP_TRACED,
    });
  }

  /**
   * The noop mask with lazy tables: each table is a `blockTables` node of the noop grid, computed at realize
   * (on the device for a GPU executor), so building it costs nothing on the host, whatever the lengths.
   * Its views (toStates, sparsity, …) need the tables realized first.
   */
  static lazyNoop(qLen: number, kvLen: number, blockSize: number | readonly [number, number] = 128): BlockMask {
    positiveInt(qLen, "qLen", "BlockMask.lazyNoop");
    positiveInt(kvLen, "kvLen", "BlockMask.lazyNoop");
    const bs = blockSizePair(blockSize, "BlockMask.lazyNoop");
    const a: BlockTablesArg = { B: 1, H: 1, qLen, kvLen, blockSize: bs, source: "noop", separateFull: true, parts: PARTS };
    const nQ = numBlocks(qLen, bs[0]), nKV = numBlocks(kvLen, bs[1]);
    const part = (p: TablePart, shape: number[]) => blockTablesNode({ ...a, parts: [p] }, undefined, shape);
    return new BlockMask({
      seqLengths: [qLen, kvLen],
      blockSize: bs,
      kvNumBlocks: part("kvNum", [1, 1, nQ]),
      kvIndices: part("kvIdx", [1, 1, nQ, nKV]),
      fullKvNumBlocks: part("fullKvNum", [1, 1, nQ]),
      fullKvIndices: part("fullKvIdx", [1, 1, nQ, nKV]),
      qNumBlocks: part("qNum", [1, 1, nKV]),
      qIndices: part("qIdx", [1, 1, nKV, nQ]),
      fullQNumBlocks: part("fullQNum", [1, 1, nKV]),
      fullQIndices: part("fullQIdx", [1, 1, nKV, nQ]),
      maskMod: noopMask,
      tracedMask: NOOP_TRACED,
    });
  }

  /**
   * flexAttention's mask when none is given: `noop` (host tables) for grids up to EAGER_NOOP_BLOCKS blocks,
   * `lazyNoop` above, so a call never builds (S/128)² entries on the host before anything is realized.
   */
  static defaultFor(qLen: number, kvLen: number): BlockMask {
    return numBlocks(qLen, 128) * numBlocks(kvLen, 128) <= EAGER_NOOP_BLOCKS ? BlockMask.noop(qLen, kvLen) : BlockMask.lazyNoop(qLen, kvLen);
  }

  // ------------------------------------------------------------------ views

  /** States [B, H, nQ, nKV]: 0 skipped, 1 partial, 2 full (a fresh copy; tables must be constants). */
  toStates(): Int32Array {
    if (!this.#states) {
      const [B, H] = this.shape, nQ = this.numQBlocks, nKV = this.numKvBlocks;
      const s = new Int32Array(B * H * nQ * nKV);
      scatterOrdered(s, constData("kvNumBlocks", this.kvNumBlocks), constData("kvIndices", this.kvIndices), B * H * nQ, nKV, BLOCK_PARTIAL);
      if (this.fullKvNumBlocks && this.fullKvIndices) {
        scatterOrdered(
          s, constData("fullKvNumBlocks", this.fullKvNumBlocks), constData("fullKvIndices", this.fullKvIndices),
          B * H * nQ, nKV, BLOCK_FULL,
        );
      }
      this.#states = s;
    }
    return this.#states.slice();
  }

  /** PyTorch's `to_dense`: i32 [B, H, nQ, nKV], 1 where a block is computed (partial or full), else 0. */
  toDense(): Tensor {
    const s = this.toStates();
    return i32(s.map((v) => (v === BLOCK_EMPTY ? 0 : 1)), [...this.shape.slice(0, 2), this.numQBlocks, this.numKvBlocks]);
  }

  /** % of (q block, kv block) pairs skipped over the real block grid, within [0, 100]. */
  sparsity(): number {
    const [B, H] = this.shape;
    const total = B * H * this.numQBlocks * this.numKvBlocks;
    return Math.min(100, Math.max(0, 100 * (1 - this.numComputedBlocks / total)));
  }

  /** The block picture (PyTorch's `to_string`): `██` full, `░░` partial, `  ` skipped, per (b, h). */
  toString(options: ToStringOptions = {}): string {
    const [B, H] = this.shape;
    return renderStates(this.toStates(), B, H, this.numQBlocks, this.numKvBlocks, options);
  }

  /** A one-glance summary (PyTorch's `__repr__`): table shapes, block size, shape, sparsity, mask name. */
  repr(): string {
    return [
      "BlockMask(",
      `    kvNumBlocks=${dims(this.kvNumBlocks)},`,
      `    kvIndices=${dims(this.kvIndices)},`,
      `    fullKvNumBlocks=${dims(this.fullKvNumBlocks)},`,
      `    fullKvIndices=${dims(this.fullKvIndices)},`,
      `    qNumBlocks=${dims(this.qNumBlocks)},`,
      `    qIndices=${dims(this.qIndices)},`,
      `    fullQNumBlocks=${dims(this.fullQNumBlocks)},`,
      `    fullQIndices=${dims(this.fullQIndices)},`,
      `    blockSize=${list(this.blockSize)},`,
      `    shape=${list(this.shape)},`,
      `    sparsity=${this.sparsity().toFixed(2)}%,`,
      `    maskMod=${this.tracedMask.name}`,
      ")",
    ].join("\n");
  }

  /** PyTorch's `as_tuple()` (flattened). */
  asTuple(): readonly [
    number, number, Tensor, Tensor, Tensor | null, Tensor | null, Tensor, Tensor, Tensor | null, Tensor | null,
    number, number, MaskMod,
  ] {
    return [
      this.seqLengths[0], this.seqLengths[1], this.kvNumBlocks, this.kvIndices, this.fullKvNumBlocks, this.fullKvIndices,
      this.qNumBlocks, this.qIndices, this.fullQNumBlocks, this.fullQIndices, this.blockSize[0], this.blockSize[1], this.maskMod,
    ];
  }

  // ------------------------------------------------------------------ derived masks

  /**
   * PyTorch's `mask[b, h, qBlock]` (`__getitem__`): each index an integer (that dim stays, with size 1, as the
   * kernels take 4-D tables), a `[start, stop)` range (Python's start:stop, negative from the end) or null /
   * omitted (all). Slicing q blocks makes a mask over the selected query rows (qLen becomes their count); the
   * q-major tables are rebuilt from the kv ones. Unlike PyTorch (whose sliced mask loses its mask_mod), the
   * mask mod is kept with the indices mapped back (a constant for an integer batch / head, `q + start·blockSize`
   * for q blocks), so the sliced mask means exactly what the original meant there.
   */
  slice(b?: SliceIndex, h?: SliceIndex, qBlock?: SliceIndex): BlockMask {
    const [B, H] = this.shape, nQ = this.numQBlocks, nKV = this.numKvBlocks;
    const [bq] = this.blockSize;
    const pb = pickDim(b, B, B === 1, "b"), ph = pickDim(h, H, H === 1, "h"), pq = pickDim(qBlock, nQ, false, "qBlock");
    if (pb.start === null && ph.start === null && pq.start === null) return this;
    const qLen = pq.start === null ? this.seqLengths[0] : Math.min((pq.start + pq.rows.length) * bq, this.seqLengths[0]) - pq.start * bq;
    const kvRows = pq.start === null ? null : pq.rows;
    const kvPick = (t: Tensor | null) => (t ? pickRows(t, pb.rows, ph.rows, kvRows) : null);
    const kvNum = kvPick(this.kvNumBlocks)!, kvIdx = kvPick(this.kvIndices)!;
    const fullNum = kvPick(this.fullKvNumBlocks), fullIdx = kvPick(this.fullKvIndices);
    const G = pb.rows.length * ph.rows.length, nQ2 = pq.rows.length;
    const qShape = [pb.rows.length, ph.rows.length, nKV, nQ2];
    const qTables = (num: Tensor | null, idx: Tensor | null, qNum: Tensor | null, qIdx: Tensor | null): [Tensor, Tensor] | null => {
      if (!num || !idx || !qNum || !qIdx) return null;
      if (pq.start === null) return [pickRows(qNum, pb.rows, ph.rows, null), pickRows(qIdx, pb.rows, ph.rows, null)];
      const t = transposeOrdered(constData("kvNumBlocks", num), constData("kvIndices", idx), G, nQ2, nKV);
      return [i32(t.num, qShape.slice(0, 3)), i32(t.idx, qShape)];
    };
    const q = qTables(kvNum, kvIdx, this.qNumBlocks, this.qIndices)!;
    const fullQ = qTables(fullNum, fullIdx, this.fullQNumBlocks, this.fullQIndices);
    const orig = this.maskMod;
    const mapBH = (p: DimPick, x: Expr) => (p.start === null ? x : p.fixed ? Expr.const(p.start) : p.start === 0 ? x : x.add(p.start));
    const qOff = pq.start === null ? 0 : pq.start * bq;
    const sliced: MaskMod = (b_, h_, q_, kv) => orig(mapBH(pb, b_), mapBH(ph, h_), qOff === 0 ? q_ : q_.add(qOff), kv);
    const show = (name: string, p: DimPick, v: SliceIndex) =>
      p.start === null ? "" : p.fixed ? `${name}=${p.start}` : `${name}=${(v as readonly number[]).join(":")}`;
    const label = [show("b", pb, b), show("h", ph, h), show("qBlock", pq, qBlock)].filter(Boolean).join(", ");
    Object.defineProperty(sliced, "name", { value: `${this.tracedMask.name}[${label}]` });
    return new BlockMask({
      seqLengths: [qLen, this.seqLengths[1]],
      blockSize: this.blockSize,
      kvNumBlocks: kvNum,
      kvIndices: kvIdx,
      fullKvNumBlocks: fullNum,
      fullKvIndices: fullIdx,
      qNumBlocks: q[0],
      qIndices: q[1],
      fullQNumBlocks: fullQ ? fullQ[0] : null,
      fullQIndices: fullQ ? fullQ[1] : null,
      maskMod: sliced,
    });
  }

  /**
   * PyTorch's `_adjust`: the same mask for new lengths, re-slicing or padding the block grid. Blocks whose
   * covered region is unchanged keep their state; a block that grew, and every new block, becomes partial
   * (the mask mod decides there); a full block that now sticks out past a length becomes partial.
   * Exact only when the mask does not depend on the lengths (e.g. causal, sliding window; not a mask
   * that reads qLen / kvLen or a captured tensor sized to the old lengths): otherwise build a new mask.
   */
  adjust(newQLen: number, newKvLen: number): BlockMask {
    positiveInt(newQLen, "newQLen", "BlockMask.adjust");
    positiveInt(newKvLen, "newKvLen", "BlockMask.adjust");
    const [qLen, kvLen] = this.seqLengths;
    if (newQLen === qLen && newKvLen === kvLen) return this;
    const [bq, bkv] = this.blockSize;
    const [B, H] = this.shape, nQ = this.numQBlocks, nKV = this.numKvBlocks;
    const nQ2 = numBlocks(newQLen, bq), nKV2 = numBlocks(newKvLen, bkv);
    const old = this.toStates();
    const out = new Int32Array(B * H * nQ2 * nKV2);
    const end = (i: number, size: number, len: number) => Math.min((i + 1) * size, len);
    for (let g = 0; g < B * H; g++) {
      for (let i = 0; i < nQ2; i++) {
        for (let j = 0; j < nKV2; j++) {
          let s = BLOCK_PARTIAL;
          if (i < nQ && j < nKV) {
            const grew = end(i, bq, newQLen) > end(i, bq, qLen) || end(j, bkv, newKvLen) > end(j, bkv, kvLen);
            const sticksOut = (i + 1) * bq > newQLen || (j + 1) * bkv > newKvLen;
            s = old[(g * nQ + i) * nKV + j];
            if (grew || (s === BLOCK_FULL && sticksOut)) s = BLOCK_PARTIAL;
          }
          out[(g * nQ2 + i) * nKV2 + j] = s;
        }
      }
    }
    const withFull = this.fullKvNumBlocks !== null;
    const t = tablesFromStates(out, B, H, nQ2, nKV2);
    return BlockMask.fromTables(withFull ? t : { ...t, fullKv: null, fullQ: null }, {
      qLen: newQLen, kvLen: newKvLen, blockSize: this.blockSize, maskMod: this.maskMod, tracedMask: this.tracedMask,
    });
  }
}

/**
 * What `console.log(mask)` shows (Deno, Node, Bun): shape, block size, grid, sparsity and the mask mod's name,
 * e.g. `BlockMask(shape [1, 1, 256, 256], block 128×128, 2×2 blocks, sparsity 25.0%, maskMod causal)`, instead of
 * the raw tables. A mask whose tables are not realized yet says so instead of a sparsity.
 */
export function describeBlockMask(m: BlockMask): string {
  let sparsity: string;
  try {
    sparsity = `sparsity ${m.sparsity().toFixed(1)}%`;
  } catch {
    sparsity = "sparsity unknown (tables not realized)";
  }
  return `BlockMask(shape ${list(m.shape)}, block ${m.blockSize[0]}×${m.blockSize[1]}, ` +
    `${m.numQBlocks}×${m.numKvBlocks} blocks, ${sparsity}, maskMod ${m.tracedMask.name})`;
}

// set on the prototype (not class members) so the public type stays free of symbol keys
for (const key of [Symbol.for("Deno.customInspect"), Symbol.for("nodejs.util.inspect.custom")]) {
  Object.defineProperty(BlockMask.prototype, key, {
    value: function (this: BlockMask) { return describeBlockMask(this); },
    writable: true, configurable: true, enumerable: false,
  });
}
