/**
 * Attention sinks, mergeAttention and KV batch broadcast against independent references: a naive float64
 * softmax with the sink in the denominator; full attention vs the merge of two disjoint key halves; a batch-1
 * K/V vs the same K/V repeated per batch. On the selected provider (outputs poisoned) and the CPU oracle.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import {
  causalMask, createBlockMask, expand, flexAttention, grad, InvalidArgument, mergeAttention, mul, randn, ShapeError, sum,
  type Tensor, tensor, vjp,
} from "../../mod.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));

/** Naive float64 causal attention with one sink logit per head: returns out and lse. */
function naiveSinks(q: Float32Array, k: Float32Array, v: Float32Array, sinks: ArrayLike<number>, H: number, S: number, D: number) {
  const out = new Float64Array(H * S * D), lse = new Float64Array(H * S), scale = 1 / Math.sqrt(D);
  for (let h = 0; h < H; h++) for (let i = 0; i < S; i++) {
    const s: number[] = [];
    for (let j = 0; j <= i; j++) {
      let d = 0;
      for (let t = 0; t < D; t++) d += q[(h * S + i) * D + t] * k[(h * S + j) * D + t];
      s.push(d * scale);
    }
    const m = Math.max(...s, sinks[h]);
    const den = s.reduce((a, x) => a + Math.exp(x - m), 0) + Math.exp(sinks[h] - m);
    lse[h * S + i] = m + Math.log(den);
    for (let t = 0; t < D; t++) out[(h * S + i) * D + t] = s.reduce((a, x, j) => a + Math.exp(x - m) * v[(h * S + j) * D + t], 0) / den;
  }
  return { out, lse };
}

describe("attention sinks", () => {
  it("out and lse equal a naive softmax with the sink in the denominator (GPU and CPU)", async () => {
    setPoison(true);
    const [H, S, D] = [3, 40, 16];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const sinks = tensor([0.5, -1, 2], [H]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
    const { out, lse } = flexAttention(q, k, v, { blockMask, sinks, returnLse: true });
    const ref = naiveSinks(q.data as Float32Array, k.data as Float32Array, v.data as Float32Array, sinks.data!, H, S, D);
    const [go, gl] = [await out.toArray(), await lse.toArray()];
    const [co, cl] = await onCpu(out, lse);
    for (const [o, l] of [[go, gl], [co, cl]]) {
      expect(relL2(o, ref.out)).toBeLessThanOrEqual(1e-5);
      expect(relL2(l, ref.lse)).toBeLessThanOrEqual(1e-6);
    }
  });

  it("the sinks' gradient equals central finite differences of the float64 loss", async () => {
    const [H, S, D] = [2, 24, 16];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]), w = randn([1, H, S, D]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 8 });
    const loss = (s: Tensor) => sum(mul(flexAttention(q, k, v, { blockMask, sinks: s }), w));
    const s0 = [0.3, -0.7];
    const [g] = await onCpu(grad(loss)(tensor(s0, [H]))[0]);
    const f = (s: number[]) => {
      const r = naiveSinks(q.data as Float32Array, k.data as Float32Array, v.data as Float32Array, s, H, S, D);
      return r.out.reduce((a, x, i) => a + x * (w.data as Float32Array)[i], 0);
    };
    const eps = 1e-4;
    const fd = s0.map((_, h) => (f(s0.map((x, i) => x + (i === h ? eps : 0))) - f(s0.map((x, i) => x - (i === h ? eps : 0)))) / (2 * eps));
    expect(relL2(g, fd)).toBeLessThanOrEqual(1e-4);
  });

  it("bad sinks are typed errors", () => {
    const q = randn([1, 2, 8, 16]);
    expect(() => flexAttention(q, q, q, { sinks: tensor([1, 2, 3], [3]) })).toThrow(ShapeError);
    expect(() => flexAttention(q, q, q, { sinks: [1, 2] as never })).toThrow(InvalidArgument);
  });
});

describe("mergeAttention", () => {
  it("merging two disjoint key halves (one empty for early causal rows) equals attention over all keys", async () => {
    setPoison(true);
    const [H, S, D] = [2, 64, 16];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const half = S / 2;
    const lo = await createBlockMask((_b, _h, qi, kv) => qi.ge(kv).and(kv.lt(half)), null, null, S, S, { blockSize: 16 });
    const hi = await createBlockMask((_b, _h, qi, kv) => qi.ge(kv).and(kv.ge(half)), null, null, S, S, { blockSize: 16 });
    const full = flexAttention(q, k, v, { blockMask: await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 }), returnLse: true });
    const merged = mergeAttention([
      flexAttention(q, k, v, { blockMask: lo, returnLse: true }),
      flexAttention(q, k, v, { blockMask: hi, returnLse: true }),
    ]);
    const [mo, ml, fo, fl] = [await merged.out.toArray(), await merged.lse.toArray(), await full.out.toArray(), await full.lse.toArray()];
    expect(relL2(mo, fo)).toBeLessThanOrEqual(1e-5);
    expect(relL2(ml, fl)).toBeLessThanOrEqual(1e-6);
    expect(() => mergeAttention([])).toThrow(InvalidArgument);
  });
});

describe("KV batch broadcast", () => {
  it("k, v of batch 1 serve every batch of q: equal to the repeated K/V, forward and gradients", async () => {
    setPoison(true);
    const [B, H, S, D] = [3, 2, 32, 16];
    const q = randn([B, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]), w = randn([B, H, S, D]);
    const shared = flexAttention(q, k, v);
    const repeated = flexAttention(q, expand(k, [B, H, S, D]), expand(v, [B, H, S, D]));
    expect(relL2(await shared.toArray(), await repeated.toArray())).toBeLessThanOrEqual(1e-6);
    const [, back] = vjp((k: Tensor, v: Tensor) => sum(mul(flexAttention(q, k, v), w)), k, v);
    const [dk, dv] = back(tensor([1], []));
    expect(dk.shape).toEqual([1, H, S, D]);
    const [, backR] = vjp((k: Tensor, v: Tensor) => sum(mul(flexAttention(q, expand(k, [B, H, S, D]), expand(v, [B, H, S, D])), w)), k, v);
    const [dkR, dvR] = backR(tensor([1], []));
    expect(relL2(await dk.toArray(), await dkR.toArray())).toBeLessThanOrEqual(1e-6);
    expect(relL2(await dv.toArray(), await dvR.toArray())).toBeLessThanOrEqual(1e-6);
    expect(() => flexAttention(q, randn([2, H, S, D]), randn([2, H, S, D]))).toThrow(ShapeError);
  });
});

releaseGpuAfterAll();
