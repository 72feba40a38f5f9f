/**
 * A paged KV cache (attention-gym's paged attention, camelCase): K and V live in one pool of `nPages`
 * physical pages of `pageSize` tokens, [1, H, nPages·pageSize, D]; a page table maps (batch, logical kv
 * block) → physical page, and its inverse (batch, page) → logical block. Sequences grow by `reserve`, are
 * freed by `erase`, and write tokens by `assign`.
 *
 * Attention runs on the pool itself: a BlockMask over LOGICAL positions (kv block size = pageSize) is
 * converted to physical kv block indices (`convertLogicalBlockMask`: unassigned logical blocks are dropped,
 * so their pages are never read), and the mask / score mods are wrapped so they see logical kv indices
 * (physical → logical through the inverse table, captured as an i32 tensor). A wrapped mask also masks
 * physical entries whose logical index is past the logical kv length.
 *
 * The cache's values are host arrays (a decode loop appends a few tokens per step); `keys()` / `values()`
 * wrap a snapshot as const tensors, taken again only after an `assign`. Page tables are snapshotted into
 * each converted mask: convert again after `reserve` / `erase`.
 */
import { Tensor, tensor } from "../tensor/tensor.ts";
import { type Expr, where } from "../ir/expr.ts";
import type { MaskMod, ScoreMod } from "../mods/trace.ts";
import { BlockMask } from "../blockmask/block_mask.ts";
import { BlockMaskMismatch, InvalidArgument, ShapeError } from "../errors.ts";
import { flexAttention, type FlexOptions } from "./flex_attention.ts";

/**
 * Options of `new PagedKVCache(…)`: pool size, page size, batch slots, heads and head dims.
 *
 * @example
 * ```ts
 * import { PagedKVCache } from "@flex/attention";
 * const cache = new PagedKVCache({ nPages: 64, pageSize: 128, maxBatch: 4, heads: 8, headDim: 64 });
 * ```
 */
export interface PagedKVCacheOptions {
  /** Physical pages in the pool. */
  readonly nPages: number;
  /** Tokens per page; it is the kv block size of every mask used with the cache (default 128). */
  readonly pageSize?: number;
  /** Batch slots (sequences) the page table has rows for. */
  readonly maxBatch: number;
  /** KV heads and head dims of the pool. */
  readonly heads: number;
  /** K's head dim (and V's unless headDimV). */
  readonly headDim: number;
  /** V's head dim (default headDim). */
  readonly headDimV?: number;
}

function posInt(v: unknown, name: string, min = 1): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new InvalidArgument({ message: `PagedKVCache: ${name} must be an integer ≥ ${min}, got ${String(v)}` });
  }
  return v;
}

/**
 * A paged KV cache (see the module comment): a pool of physical pages, a page table per batch slot, and mask / score mods
 * that translate physical kv indices back to logical ones.
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask, PagedKVCache, pagedAttention, randn } from "@flex/attention";
 * const cache = new PagedKVCache({ nPages: 8, pageSize: 32, maxBatch: 1, heads: 2, headDim: 16 });
 * cache.reserve(0, 64);                                                  // batch slot 0: 64 tokens
 * cache.assign(0, 0, randn([1, 2, 64, 16]), randn([1, 2, 64, 16]));        // write them at position 0
 * const mask = await createBlockMask(causalMask, 1, 1, 64, 64, { blockSize: [64, 32] });
 * const out = pagedAttention(randn([1, 2, 64, 16]), cache, mask);
 * ```
 */
export class PagedKVCache {
  /** Physical pages in the pool. */
  readonly nPages: number;
  /** Tokens per page (the kv block size of masks used with the cache). */
  readonly pageSize: number;
  /** Batch slots. */
  readonly maxBatch: number;
  /** KV heads. */
  readonly heads: number;
  /** K's head dim. */
  readonly headDim: number;
  /** V's head dim. */
  readonly headDimV: number;
  /** [maxBatch, nPages]: physical page of (batch, logical block), −1 when unassigned. */
  readonly pageTable: Int32Array;
  /** [maxBatch, nPages]: logical block of (batch, physical page), −1 when the page is not that batch's. */
  readonly physicalToLogical: Int32Array;
  /** Reserved tokens per batch slot (a multiple of pageSize). */
  readonly capacity: Int32Array;
  readonly #free: number[];
  readonly #k: Float32Array;
  readonly #v: Float32Array;
  #kTensor: Tensor | undefined;
  #vTensor: Tensor | undefined;

  /** An empty cache: every page free, every slot without pages. */
  constructor(o: PagedKVCacheOptions) {
    if (!o || typeof o !== "object") throw new InvalidArgument({ message: "PagedKVCache: give { nPages, pageSize, maxBatch, heads, headDim }" });
    this.nPages = posInt(o.nPages, "nPages");
    this.pageSize = posInt(o.pageSize ?? 128, "pageSize");
    this.maxBatch = posInt(o.maxBatch, "maxBatch");
    this.heads = posInt(o.heads, "heads");
    this.headDim = posInt(o.headDim, "headDim");
    this.headDimV = posInt(o.headDimV ?? o.headDim, "headDimV");
    const n = this.maxBatch * this.nPages;
    this.pageTable = new Int32Array(n).fill(-1);
    this.physicalToLogical = new Int32Array(n).fill(-1);
    this.capacity = new Int32Array(this.maxBatch);
    this.#free = [...Array(this.nPages).keys()];
    const slots = this.heads * this.nPages * this.pageSize;
    // free pages hold NaN: a kernel that read a page not assigned to the row's sequence would turn its output NaN
    this.#k = new Float32Array(slots * this.headDim).fill(NaN);
    this.#v = new Float32Array(slots * this.headDimV).fill(NaN);
  }

  /** Pages not assigned to any batch slot. */
  get freePages(): readonly number[] { return [...this.#free]; }

  #batch(b: number, who: string): number {
    if (!Number.isInteger(b) || b < 0 || b >= this.maxBatch) {
      throw new InvalidArgument({ message: `PagedKVCache.${who}: batch index ${b} is outside [0, ${this.maxBatch})` });
    }
    return b;
  }

  /**
   * Grows batch slot `b` to hold `seqLen` tokens, taking free pages (`pages`: which ones, e.g. a shuffled
   * order; default the lowest free pages). Never shrinks (use erase).
   */
  reserve(b: number, seqLen: number, pages?: readonly number[]): void {
    this.#batch(b, "reserve");
    posInt(seqLen, "seqLen", 0);
    const have = this.capacity[b] / this.pageSize;
    const need = Math.ceil(seqLen / this.pageSize) - have;
    if (need <= 0) return;
    if (need > this.#free.length) {
      throw new InvalidArgument({
        message: `PagedKVCache.reserve: batch ${b} needs ${need} more pages for ${seqLen} tokens but ${this.#free.length} are free; ` +
          `erase finished sequences or build the cache with more nPages`,
      });
    }
    const take = pages ? [...pages] : [...this.#free].sort((x, y) => x - y).slice(0, need);
    if (take.length !== need) throw new InvalidArgument({ message: `PagedKVCache.reserve: ${take.length} pages given, ${need} needed` });
    for (const p of take) {
      if (!this.#free.includes(p)) throw new InvalidArgument({ message: `PagedKVCache.reserve: page ${p} is not free` });
    }
    take.forEach((p, i) => {
      this.#free.splice(this.#free.indexOf(p), 1);
      this.pageTable[b * this.nPages + have + i] = p;
      this.physicalToLogical[b * this.nPages + p] = have + i;
      this.#fillPage(p, 0); // a reserved page's unwritten slots are finite: masked entries of a visited block are still read
    });
    this.#kTensor = this.#vTensor = undefined;
    this.capacity[b] = (have + need) * this.pageSize;
  }

  /** Frees every page of batch slot `b` (their contents become NaN again: nothing may read them). */
  erase(b: number): void {
    this.#batch(b, "erase");
    for (let j = 0; j < this.nPages; j++) {
      const p = this.pageTable[b * this.nPages + j];
      if (p < 0) continue;
      this.#free.push(p);
      this.pageTable[b * this.nPages + j] = -1;
      this.physicalToLogical[b * this.nPages + p] = -1;
      this.#fillPage(p, NaN);
    }
    this.capacity[b] = 0;
    this.#kTensor = this.#vTensor = undefined;
  }

  #fillPage(p: number, value: number): void {
    const ps = this.pageSize, S = this.nPages * ps;
    for (let h = 0; h < this.heads; h++) {
      this.#k.fill(value, (h * S + p * ps) * this.headDim, (h * S + (p + 1) * ps) * this.headDim);
      this.#v.fill(value, (h * S + p * ps) * this.headDimV, (h * S + (p + 1) * ps) * this.headDimV);
    }
  }

  /** The physical slot (row of the pool) of logical position `pos` of batch `b`. */
  physicalPosition(b: number, pos: number): number {
    this.#batch(b, "physicalPosition");
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.capacity[b]) {
      throw new InvalidArgument({ message: `PagedKVCache: position ${pos} of batch ${b} is outside its ${this.capacity[b]} reserved tokens; reserve(${b}, ${pos + 1}) first` });
    }
    return this.pageTable[b * this.nPages + Math.floor(pos / this.pageSize)] * this.pageSize + (pos % this.pageSize);
  }

  /**
   * Writes n tokens of batch `b` at logical positions `start … start+n−1`: `k` is [H, n, D] and `v`
   * [H, n, Dv], row-major (a Tensor with data or an array).
   */
  assign(b: number, start: number, k: Tensor | ArrayLike<number>, v: Tensor | ArrayLike<number>): void {
    const kd = k instanceof Tensor ? k.data : k, vd = v instanceof Tensor ? v.data : v;
    if (!kd || !vd) throw new InvalidArgument({ message: "PagedKVCache.assign: k and v must be constants (realize them first: await t.toArray())" });
    const H = this.heads, D = this.headDim, Dv = this.headDimV;
    if (kd.length % (H * D) !== 0 || vd.length / (H * Dv) !== kd.length / (H * D)) {
      throw new ShapeError({ message: `PagedKVCache.assign: k has ${kd.length} values and v ${vd.length}; expected [${H}, n, ${D}] and [${H}, n, ${Dv}]` });
    }
    const n = kd.length / (H * D), S = this.nPages * this.pageSize;
    const slots = Array.from({ length: n }, (_, i) => this.physicalPosition(b, start + i));
    for (let h = 0; h < H; h++) {
      slots.forEach((slot, i) => {
        this.#k.set(Array.prototype.slice.call(kd, (h * n + i) * D, (h * n + i + 1) * D), (h * S + slot) * D);
        this.#v.set(Array.prototype.slice.call(vd, (h * n + i) * Dv, (h * n + i + 1) * Dv), (h * S + slot) * Dv);
      });
    }
    this.#kTensor = this.#vTensor = undefined;
  }

  /** The K pool [1, H, nPages·pageSize, D] as a const tensor (a snapshot). */
  keys(): Tensor {
    return this.#kTensor ??= tensor(this.#k.slice(), [1, this.heads, this.nPages * this.pageSize, this.headDim]);
  }
  /** The V pool [1, H, nPages·pageSize, Dv] as a const tensor (a snapshot). */
  values(): Tensor {
    return this.#vTensor ??= tensor(this.#v.slice(), [1, this.heads, this.nPages * this.pageSize, this.headDimV]);
  }

  /** Rows `batchIdx` of the inverse table, as the i32 tensor the wrapped mods capture ([n, nPages]). */
  #inverse(batchIdx: readonly number[]): Tensor {
    const out = new Int32Array(batchIdx.length * this.nPages);
    batchIdx.forEach((b, i) => out.set(this.physicalToLogical.subarray(b * this.nPages, (b + 1) * this.nPages), i * this.nPages));
    return tensor(out, [batchIdx.length, this.nPages], { dtype: "i32" });
  }

  /** (valid, logical kv index) of physical kv index `kv` for the call's batch row `b`. */
  #logical(inv: Tensor, b: Expr, kv: Expr): [Expr, Expr] {
    const ps = this.pageSize;
    const block = inv.at(b, kv.floorDiv(ps));
    const valid = block.ge(0);
    // an unassigned page maps to 0, never to a negative index (the mods may index captured tensors with it)
    return [valid, where(valid, block.mul(ps).add(kv.mod(ps)), 0)];
  }

  /**
   * attention-gym's get_mask_mod: `maskMod` over logical indices, as a mask mod over physical kv indices,
   * false on pages not assigned to the batch row and past the logical kv length `kvLen`.
   */
  getMaskMod(maskMod: MaskMod, kvLen: number, batchIdx: readonly number[] = this.#defaultBatch()): MaskMod {
    const inv = this.#inverse(this.#checkBatchIdx(batchIdx, "getMaskMod"));
    // the length is a captured value, not a literal: a mask over a longer logical length reuses the kernel
    const len = tensor([posInt(kvLen, "kvLen")], [1], { dtype: "i32" });
    const fn: MaskMod = (b, h, q, kv) => {
      const [valid, logical] = this.#logical(inv, b, kv);
      return valid.and(logical.lt(len.at(0))).and(maskMod(b, h, q, logical));
    };
    Object.defineProperty(fn, "name", { value: `paged(${maskMod.name || "mask"})` });
    return fn;
  }

  /** attention-gym's get_score_mod: `scoreMod` over logical indices, as a score mod over physical kv indices. */
  getScoreMod(scoreMod: ScoreMod, batchIdx: readonly number[] = this.#defaultBatch()): ScoreMod {
    const inv = this.#inverse(this.#checkBatchIdx(batchIdx, "getScoreMod"));
    const fn: ScoreMod = (s, b, h, q, kv) => scoreMod(s, b, h, q, this.#logical(inv, b, kv)[1]);
    Object.defineProperty(fn, "name", { value: `paged(${scoreMod.name || "score"})` });
    return fn;
  }

  #defaultBatch(): number[] { return [...Array(this.maxBatch).keys()]; }

  #checkBatchIdx(batchIdx: readonly number[], who: string): readonly number[] {
    if (!Array.isArray(batchIdx) || batchIdx.length === 0) {
      throw new InvalidArgument({ message: `PagedKVCache.${who}: batchIdx must be a non-empty array of batch slots` });
    }
    batchIdx.forEach((b) => this.#batch(b, who));
    return batchIdx;
  }

  /**
   * attention-gym's convert_logical_block_mask: the BlockMask of the same attention over the physical pool.
   * Row i of the result is batch slot `batchIdx[i]` (default 0 … maxBatch−1); the logical mask's kv block
   * size must be pageSize and its batch 1 (broadcast) or batchIdx.length. Logical blocks without a page are
   * dropped; the mask mod is wrapped (getMaskMod) so partial blocks see logical indices.
   */
  convertLogicalBlockMask(mask: BlockMask, batchIdx: readonly number[] = this.#defaultBatch()): BlockMask {
    if (!(mask instanceof BlockMask)) throw new InvalidArgument({ message: "convertLogicalBlockMask: give a BlockMask over logical positions" });
    const rows = this.#checkBatchIdx(batchIdx, "convertLogicalBlockMask");
    const [bq, bkv] = mask.blockSize;
    if (bkv !== this.pageSize) {
      throw new BlockMaskMismatch({
        message: `convertLogicalBlockMask: the mask's kv block size ${bkv} must equal the page size ${this.pageSize}; ` +
          `build it with createBlockMask(..., { blockSize: [${bq}, ${this.pageSize}] })`,
      });
    }
    const [mB, mH, qLen, kvLen] = mask.shape, nQ = mask.numQBlocks, nKVl = mask.numKvBlocks, P = this.nPages;
    if (mB !== 1 && mB !== rows.length) {
      throw new BlockMaskMismatch({ message: `convertLogicalBlockMask: the mask's batch ${mB} is neither 1 nor the ${rows.length} batch rows` });
    }
    if (nKVl > P) throw new BlockMaskMismatch({ message: `convertLogicalBlockMask: the mask has ${nKVl} logical kv blocks but the cache only ${P} pages` });
    const convert = (num: Tensor | null, idx: Tensor | null) => {
      if (!num || !idx) return null;
      const n = num.data as Int32Array, ix = idx.data as Int32Array;
      if (!n || !ix) throw new InvalidArgument({ message: "convertLogicalBlockMask: the mask's tables must be realized constants" });
      const outNum = new Int32Array(rows.length * mH * nQ), outIdx = new Int32Array(rows.length * mH * nQ * P);
      const used = new Uint8Array(P);
      rows.forEach((b, i) => {
        for (let h = 0; h < mH; h++) for (let qb = 0; qb < nQ; qb++) {
          const src = ((mB === 1 ? 0 : i) * mH + h) * nQ + qb, dst = (i * mH + h) * nQ + qb;
          used.fill(0);
          let k = 0;
          for (let t = 0; t < n[src]; t++) {
            const page = this.pageTable[b * P + ix[src * nKVl + t]];
            if (page >= 0) { outIdx[dst * P + k++] = page; used[page] = 1; }
          }
          outNum[dst] = k;
          for (let p = 0; p < P; p++) if (!used[p]) outIdx[dst * P + k++] = p; // the rest, ascending (valid padding)
        }
      });
      return { num: { data: outNum, shape: [rows.length, mH, nQ] }, idx: { data: outIdx, shape: [rows.length, mH, nQ, P] } };
    };
    const part = convert(mask.kvNumBlocks, mask.kvIndices)!, full = convert(mask.fullKvNumBlocks, mask.fullKvIndices);
    return BlockMask.fromKvBlocks(part.num, part.idx, full?.num ?? null, full?.idx ?? null, {
      blockSize: [bq, this.pageSize],
      maskMod: this.getMaskMod(mask.maskMod, kvLen, rows),
      seqLengths: [qLen, P * this.pageSize],
    });
  }
}

/**
 * Options of `pagedAttention`: flexAttention's (but the BlockMask, given separately) and each q row's batch slot.
 *
 * @example
 * ```ts
 * import { BlockMask, PagedKVCache, pagedAttention, randn } from "@flex/attention";
 * const cache = new PagedKVCache({ nPages: 4, pageSize: 32, maxBatch: 2, heads: 1, headDim: 16 });
 * cache.reserve(1, 32);
 * cache.assign(1, 0, randn([1, 1, 32, 16]), randn([1, 1, 32, 16]));
 * // one decode row for batch slot 1
 * const out = pagedAttention(randn([1, 1, 1, 16]), cache, BlockMask.noop(1, 32, [1, 32]), { batchIdx: [1] });
 * ```
 */
export interface PagedAttentionOptions extends Omit<FlexOptions, "blockMask"> {
  /** Batch slot of each row of q (default 0 … B−1). */
  readonly batchIdx?: readonly number[];
}

/**
 * flexAttention of q [B, Hq, Sq, D] over the cache's pages: `blockMask` is over logical positions (kv block
 * size = pageSize), converted with convertLogicalBlockMask; the score mod is wrapped to see logical indices.
 *
 * @example
 * ```ts
 * // see PagedKVCache's example
 * ```
 */
export function pagedAttention(q: Tensor, cache: PagedKVCache, blockMask: BlockMask, options: PagedAttentionOptions & { returnLse: true }): { out: Tensor; lse: Tensor };
/** pagedAttention returning `out`. */
export function pagedAttention(q: Tensor, cache: PagedKVCache, blockMask: BlockMask, options?: PagedAttentionOptions): Tensor;
export function pagedAttention(q: Tensor, cache: PagedKVCache, blockMask: BlockMask, options: PagedAttentionOptions = {}): Tensor | { out: Tensor; lse: Tensor } {
  if (!(cache instanceof PagedKVCache)) throw new InvalidArgument({ message: "pagedAttention: cache must be a PagedKVCache" });
  if (!(q instanceof Tensor) || q.rank !== 4) throw new ShapeError({ message: "pagedAttention: q must be a 4-D [B, Hq, Sq, D] Tensor" });
  const { batchIdx = [...Array(q.shape[0]).keys()], scoreMod, ...rest } = options;
  if (batchIdx.length !== q.shape[0]) {
    throw new ShapeError({ message: `pagedAttention: batchIdx lists ${batchIdx.length} slots for q's batch ${q.shape[0]}` });
  }
  const physical = cache.convertLogicalBlockMask(blockMask, batchIdx);
  return flexAttention(q, cache.keys(), cache.values(), {
    ...rest,
    blockMask: physical,
    scoreMod: scoreMod ? cache.getScoreMod(scoreMod, batchIdx) : undefined,
  });
}
