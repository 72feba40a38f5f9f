/**
 * The paged KV cache: attention over the physical page pool (pages assigned in shuffled order, free pages
 * holding NaN so a read of one would show) equals dense attention over the logical sequences, computed by
 * the float64 oracle — prefill with a causal ∧ sliding-window ∧ length mask and a score mod that reads the
 * kv index, then a decode step after appending a token. Plus the page bookkeeping and the typed errors.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import {
  BlockMask, BlockMaskMismatch, causalMask, createBlockMask, type Expr, flexAttention, InvalidArgument, pagedAttention, PagedKVCache,
  randn, type Tensor, tensor,
} from "../../mod.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
async function onDevice(t: Tensor): Promise<ArrayLike<number>> {
  setPoison(true);
  try { return await t.toArray(); } finally { setPoison(false); }
}

const [H, D, PS, P] = [2, 16, 16, 12];
const rand = (n: number) => Array.from(randn([n]).data!);

/** Logical K (or V) of the batch rows, [rows, H, L, D]: each slot's tokens, then finite filler past its length. */
function dense(seqs: number[][], lens: number[], L: number): Tensor {
  const out: number[] = [];
  seqs.forEach((s, i) => {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < L; t++) {
        for (let d = 0; d < D; d++) out.push(t < lens[i] ? s[(h * lens[i] + t) * D + d] : 7);
      }
    }
  });
  return tensor(out, [seqs.length, H, L, D]);
}

/** Per-head tokens [H, n, D] of `seq` ([H, len, D]) from position `from`. */
function tokens(seq: number[], len: number, from: number, n: number): number[] {
  const out: number[] = [];
  for (let h = 0; h < H; h++) out.push(...seq.slice((h * len + from) * D, (h * len + from + n) * D));
  return out;
}

const score = (s: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) => s.add(q.sub(kv).mul(h.add(1)).mul(0.02));

describe("paged KV cache", () => {
  it("prefill and a decode step over shuffled pages equal dense attention on the logical sequences (oracle)", async () => {
    const cache = new PagedKVCache({ nPages: P, pageSize: PS, maxBatch: 3, heads: H, headDim: D });
    // slot 0: 70 tokens, slot 1: 20 (another sequence, must not leak in), slot 2: 48; pages 3 and 8 stay free (NaN)
    const lens = [70, 20, 48];
    cache.reserve(0, 70, [9, 2, 7, 0, 11]);
    cache.reserve(1, 20, [4, 6]);
    cache.reserve(2, 48, [10, 1, 5]);
    expect([...cache.freePages].sort((a, b) => a - b)).toEqual([3, 8]);
    const ks = lens.map((n) => rand(H * (n + 1) * D)), vs = lens.map((n) => rand(H * (n + 1) * D)); // +1: the decoded token
    lens.forEach((n, b) => cache.assign(b, 0, tokens(ks[b], n + 1, 0, n), tokens(vs[b], n + 1, 0, n)));

    // prefill: rows = slots 0 and 2, 70 queries each, logical kv length 80
    const rows = [0, 2], Sq = 70, L = 80;
    const window = (lens: Tensor) => (b: Expr, _h: Expr, q: Expr, kv: Expr) => q.ge(kv).and(q.sub(kv).le(40)).and(kv.lt(lens.at(b)));
    // the paged call's mask lets row 1 (slot 2, 48 tokens in 3 pages) see up to 80: its logical blocks 3 and 4
    // have no page and must be dropped, never read (a free page holds NaN); the oracle's mask stops at 48
    const logical = await createBlockMask(window(tensor([70, 80], [2], { dtype: "i32" })), 2, null, Sq, L, { blockSize: [16, PS] });
    const exact = await createBlockMask(window(tensor([70, 48], [2], { dtype: "i32" })), 2, null, Sq, L, { blockSize: [16, PS] });
    const q = randn([2, H, Sq, D]);
    const physical = cache.convertLogicalBlockMask(logical, rows);
    // every listed physical block is a page of that row's slot
    const own = rows.map((b) => new Set(Array.from(cache.pageTable.subarray(b * P, (b + 1) * P)).filter((p) => p >= 0)));
    const num = physical.kvNumBlocks.data!, idx = physical.kvIndices.data!, nQ = physical.numQBlocks;
    for (let r = 0; r < 2 * nQ; r++) for (let t = 0; t < num[r]; t++) expect(own[Math.floor(r / nQ)].has(idx[r * P + t])).toBe(true);
    const got = await onDevice(pagedAttention(q, cache, logical, { scoreMod: score, batchIdx: rows }));
    const seqK = rows.map((b) => tokens(ks[b], lens[b] + 1, 0, lens[b])), seqV = rows.map((b) => tokens(vs[b], lens[b] + 1, 0, lens[b]));
    const rowLens = rows.map((b) => lens[b]);
    const [want] = await onCpu(flexAttention(q, dense(seqK, rowLens, L), dense(seqV, rowLens, L), { blockMask: exact, scoreMod: score }));
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
    expect(relL2(got, want)).toBeLessThanOrEqual(1e-4);

    // decode: append one token to each row's slot (slot 2 grows onto a new page), one query per row
    cache.reserve(0, 71);
    cache.reserve(2, 49, [8]);
    for (const b of rows) cache.assign(b, lens[b], tokens(ks[b], lens[b] + 1, lens[b], 1), tokens(vs[b], lens[b] + 1, lens[b], 1));
    const pos = tensor(rows.map((b) => lens[b]), [2], { dtype: "i32" });
    const decodeMask = (b: Expr, _h: Expr, _q: Expr, kv: Expr) => kv.le(pos.at(b));
    const step = await createBlockMask(decodeMask, 2, null, 1, L, { blockSize: [16, PS] });
    const q1 = randn([2, H, 1, D]);
    const got1 = await onDevice(pagedAttention(q1, cache, step, { scoreMod: score, batchIdx: rows }));
    const newLens = rows.map((b) => lens[b] + 1);
    const [want1] = await onCpu(flexAttention(q1, dense(rows.map((b) => ks[b]), newLens, L), dense(rows.map((b) => vs[b]), newLens, L), {
      blockMask: step, scoreMod: score,
    }));
    expect(Array.from(got1).every(Number.isFinite)).toBe(true);
    expect(relL2(got1, want1)).toBeLessThanOrEqual(1e-4);
  }, 300_000);

  it("reserve / erase keep the page table and its inverse consistent; bad calls are typed errors", async () => {
    const cache = new PagedKVCache({ nPages: 6, pageSize: 4, maxBatch: 2, heads: 1, headDim: 16 });
    cache.reserve(0, 9); // 3 pages: 0, 1, 2
    cache.reserve(1, 4, [5]);
    expect(Array.from(cache.pageTable.subarray(0, 3))).toEqual([0, 1, 2]);
    expect(cache.physicalPosition(0, 6)).toBe(1 * 4 + 2);
    expect(cache.physicalPosition(1, 3)).toBe(5 * 4 + 3);
    cache.erase(0);
    expect(Array.from(cache.pageTable.subarray(0, 6)).every((p) => p === -1)).toBe(true);
    expect(Array.from(cache.physicalToLogical.subarray(0, 6)).every((p) => p === -1)).toBe(true);
    cache.reserve(1, 13); // 3 more pages for slot 1: the lowest free ones
    expect(Array.from(cache.pageTable.subarray(6, 10))).toEqual([5, 0, 1, 2]);
    for (let j = 0; j < 4; j++) expect(cache.physicalToLogical[6 + cache.pageTable[6 + j]]).toBe(j);
    expect(() => cache.reserve(0, 100)).toThrow(InvalidArgument); // 25 pages, 2 free
    expect(() => cache.reserve(0, 4, [5])).toThrow(InvalidArgument); // page 5 is slot 1's
    expect(() => cache.assign(0, 0, new Float32Array(16), new Float32Array(16))).toThrow(InvalidArgument); // nothing reserved
    expect(() => cache.reserve(2, 4)).toThrow(InvalidArgument);
    const wrongBlock = await createBlockMask(causalMask, null, null, 8, 16, { blockSize: 8 });
    expect(() => cache.convertLogicalBlockMask(wrongBlock, [1])).toThrow(BlockMaskMismatch);
    expect(() => cache.convertLogicalBlockMask(BlockMask.noop(8, 100, 4), [1])).toThrow(BlockMaskMismatch); // 25 blocks > 6 pages
  });
});

releaseGpuAfterAll();
