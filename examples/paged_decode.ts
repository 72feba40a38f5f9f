/**
 * `deno run -A examples/paged_decode.ts`: a paged KV cache serving three sequences of different lengths.
 * The prompts' K/V are written into pages taken in a scattered, descending order; then each decode step appends one
 * token per sequence (a new page when one fills up), builds the step's BlockMask over LOGICAL positions
 * (each row sees its own sequence up to its current position) and attends over the physical page pool with
 * pagedAttention. Each step is checked against plain flexAttention over the dense logical sequences.
 * (Random vectors stand in for a model's projections.)
 */
import { createBlockMask, type Expr, flexAttention, pagedAttention, PagedKVCache, randn, tensor } from "../mod.ts";

const [H, D, PAGE] = [4, 32, 16];
const prompts = [37, 5, 70];
const cache = new PagedKVCache({ nPages: 24, pageSize: PAGE, maxBatch: prompts.length, heads: H, headDim: D });

// the full logical sequences (prompt + generated), per slot [H, len, D], kept only for the check
const seqK: number[][][] = prompts.map(() => []), seqV: number[][][] = prompts.map(() => []);
const vec = () => Array.from(randn([D]).data!);

/** Appends n new tokens to slot b: in the cache and in the dense copy. */
function append(b: number, n: number) {
  const len = seqK[b].length ? seqK[b][0].length / D : 0;
  // new pages from the top of the free list: a sequence's pages end up scattered and out of order
  const need = Math.ceil((len + n) / PAGE) - cache.capacity[b] / PAGE;
  cache.reserve(b, len + n, need > 0 ? [...cache.freePages].sort((x, y) => y - x).slice(0, need) : undefined);
  const k: number[] = [], v: number[] = [];
  for (let h = 0; h < H; h++) {
    seqK[b][h] ??= [];
    seqV[b][h] ??= [];
    for (let i = 0; i < n; i++) {
      const kv = vec(), vv = vec();
      k.push(...kv); v.push(...vv);
      seqK[b][h].push(...kv); seqV[b][h].push(...vv);
    }
  }
  cache.assign(b, len, k, v);
}

// interleaved prompt writes scatter each sequence's pages over the pool
for (let chunk = 0; chunk < 5; chunk++) {
  prompts.forEach((p, b) => {
    const n = Math.min(PAGE, p - chunk * PAGE);
    if (n > 0) append(b, n);
  });
}
console.log("page table (logical block → page) per sequence:");
prompts.forEach((_, b) => console.log(`  seq ${b}:`, Array.from(cache.pageTable.subarray(b * cache.nPages, (b + 1) * cache.nPages)).filter((p) => p >= 0)));

const L = cache.nPages * PAGE; // logical kv length of the masks (the longest a sequence can grow)
for (let step = 0; step < 4; step++) {
  prompts.forEach((_, b) => append(b, 1));
  const lens = seqK.map((s) => s[0].length / D);
  const last = tensor(lens.map((n) => n - 1), [lens.length], { dtype: "i32" });
  // one query per sequence at its newest position: it sees every logical position up to it
  const mask = await createBlockMask((b: Expr, _h: Expr, _q: Expr, kv: Expr) => kv.le(last.at(b)), lens.length, null, 1, L, { blockSize: [16, PAGE] });
  const q = randn([lens.length, H, 1, D]);
  const t0 = performance.now();
  const out = await pagedAttention(q, cache, mask).toArray();
  const ms = performance.now() - t0;
  // the same attention over dense logical K/V (each row padded to L; the mask hides the padding)
  const pad = (s: number[][][]) =>
    tensor(s.flatMap((hs) => hs.flatMap((row) => [...row, ...new Array(L * D - row.length).fill(0)])), [lens.length, H, L, D]);
  const ref = await flexAttention(q, pad(seqK), pad(seqV), { blockMask: mask }).toArray();
  const err = Array.from(out).reduce((m, x, i) => Math.max(m, Math.abs(x - ref[i])), 0);
  console.log(`step ${step}: lengths [${lens}], pages in use ${cache.nPages - cache.freePages.length}, ${ms.toFixed(1)} ms, max |paged − dense| = ${err.toExponential(2)}`);
  if (!(err < 1e-4)) throw new Error(`paged attention differs from dense attention by ${err}`);
}
cache.erase(1);
console.log(`erased sequence 1: ${cache.freePages.length} pages free`);
