/**
 * The PyTorch BlockMask API pieces: q-block slicing (`slice(b, h, qBlock)`), `separateFullBlocks: false`,
 * `fromKvBlocks` from the kv tables alone, `numel`. Each mask is used in flexAttention (forward) on the selected
 * provider (outputs poisoned) and compared with the float64 CPU oracle run on the original mask.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { BlockMask, createBlockMask, type Expr, flexAttention, InvalidArgument, randn, type Tensor, tensor } from "../../mod.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
async function onDevice(...ts: Tensor[]): Promise<Float32Array[]> {
  setPoison(true);
  try { return await Promise.all(ts.map((t) => t.toArray() as Promise<Float32Array>)); } finally { setPoison(false); }
}

// causal within a head-dependent window: every block state occurs, and b / h matter
const mask = (b: Expr, h: Expr, q: Expr, kv: Expr) => q.ge(kv).and(q.sub(kv).le(h.mul(40).add(b.mul(17)).add(50)));
const [B, H, S, D, BS] = [2, 2, 200, 16, 32];

/** Rows [r0, r1) of batches `bs` of a [B, H, S, X] array. */
function rows(data: ArrayLike<number>, X: number, bs: number[], r0: number, r1: number): Float64Array {
  const out: number[] = [];
  for (const b of bs) for (let h = 0; h < H; h++) for (let r = r0; r < r1; r++) {
    for (let x = 0; x < X; x++) out.push(data[((b * H + h) * S + r) * X + x]);
  }
  return Float64Array.from(out);
}
const asTensor = (d: Float64Array, shape: number[]) => tensor(Array.from(d), shape);

describe("BlockMask API gaps through flexAttention", () => {
  it("slice over q blocks (ranges and integers, with b / h) attends exactly the original rows", async () => {
    const m = await createBlockMask(mask, B, H, S, S, { blockSize: BS });
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
    const [ref] = await onCpu(flexAttention(q, k, v, { blockMask: m }));
    const cases: [number | null, [number, number] | number, number[], number, number][] = [
      [null, [2, 5], [0, 1], 64, 160], // q blocks 2..4 of both batches
      [1, 6, [1], 192, 200], // the last (short) q block of batch 1
      [0, [-2, 99], [0], 160, 200], // Python-style negative start, clamped stop
    ];
    for (const [b, qb, bs, r0, r1] of cases) {
      const s = m.slice(b, null, qb);
      expect(s.seqLengths).toEqual([r1 - r0, S]);
      expect(s.shape).toEqual([bs.length, H, r1 - r0, S]);
      expect(s.numel()).toBe(bs.length * H * (r1 - r0) * S);
      const qs = asTensor(rows(q.data!, D, bs, r0, r1), [bs.length, H, r1 - r0, D]);
      const kb = b === null ? k : asTensor(rows(k.data!, D, bs, 0, S), [1, H, S, D]);
      const vb = b === null ? v : asTensor(rows(v.data!, D, bs, 0, S), [1, H, S, D]);
      const [got] = await onDevice(flexAttention(qs, kb, vb, { blockMask: s }));
      expect(relL2(got, rows(ref, D, bs, r0, r1))).toBeLessThanOrEqual(1e-4);
    }
    expect(() => m.slice(null, null, [3, 3])).toThrow(InvalidArgument);
    expect(() => m.slice(null, null, 7)).toThrow(InvalidArgument);
    expect(() => m.slice(null, null, 1.5)).toThrow(InvalidArgument);
  }, 300_000);

  it("separateFullBlocks: false and fromKvBlocks(kv tables only) give the oracle's out", async () => {
    const m = await createBlockMask(mask, B, H, S, S, { blockSize: BS });
    const partialOnly = await createBlockMask(mask, B, H, S, S, { blockSize: BS, separateFullBlocks: false });
    expect(partialOnly.fullKvNumBlocks).toBeNull();
    expect(partialOnly.fullQIndices).toBeNull();
    expect(Array.from(partialOnly.toDense().data!)).toEqual(Array.from(m.toDense().data!));
    expect(Array.from(partialOnly.toStates()).includes(2)).toBe(false);
    expect(Array.from(m.toStates()).includes(2)).toBe(true);
    const fromKv = BlockMask.fromKvBlocks(m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks, m.fullKvIndices, {
      blockSize: BS, maskMod: mask, seqLengths: [S, S],
    });
    expect(Array.from(fromKv.qIndices.data!)).toEqual(Array.from(m.qIndices.data!));
    expect(Array.from(fromKv.fullQNumBlocks!.data!)).toEqual(Array.from(m.fullQNumBlocks!.data!));
    // forward only: the backward's walk of lazily given / computed q tables is covered by lazy_default.test.ts
    // (a backward kernel costs ~30 s to compile on lavapipe)
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
    const [ref] = await onCpu(flexAttention(q, k, v, { blockMask: m }));
    for (const bm of [partialOnly, fromKv]) {
      const [got] = await onDevice(flexAttention(q, k, v, { blockMask: bm }));
      expect(relL2(got, ref)).toBeLessThanOrEqual(1e-4);
    }
  }, 300_000);
});

releaseGpuAfterAll();
