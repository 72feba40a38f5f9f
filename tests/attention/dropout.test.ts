/**
 * Attention dropout (`{ dropout: { p, seed } }`): the kernels' mask against the JS hash the float64 oracle uses
 * (read back from the GPU exactly), out / lse / gradients against the oracle on fresh random inputs with
 * poisoned outputs, the oracle's own gradient against finite differences, p = 0 bit-identical to no dropout,
 * the kept fraction and the seed dependence as properties, bad options as typed errors.
 */
import fc from "fast-check";
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import {
  alibi, causalMask, createBlockMask, flexAttention, grad, InvalidArgument, mul, randn, realizeAll, setPoison, sum, type Tensor,
  tensor, vjp,
} from "../../mod.ts";
import { makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { checkDropout, dropFactor, dropRowKey, type DropoutSpec } from "../../lib/attention/dropout.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const noGpu = await gpuSkipReason();
const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
const SLOW = 300_000;

/** The JS mask of row (b, h, q) over Skv keys: the factors the oracle uses. */
function maskRow(d: DropoutSpec, b: number, h: number, q: number, Skv: number): number[] {
  const key = dropRowKey(d.seed, b, h, q);
  return Array.from({ length: Skv }, (_, kv) => dropFactor(d, key, kv));
}

describe("dropout: the mask stream", () => {
  it("kept fraction ≈ 1 − p, and two seeds give different masks (property)", () => {
    fc.assert(fc.property(fc.double({ min: 0.02, max: 0.9, noNaN: true }), fc.integer({ min: 0, max: 2 ** 32 - 2 }), (p, seed) => {
      const a = checkDropout({ p, seed })!, b = checkDropout({ p, seed: seed + 1 })!;
      let kept = 0, differ = 0, n = 0;
      for (let h = 0; h < 2; h++) for (let q = 0; q < 32; q++) {
        const ra = maskRow(a, 1, h, q, 64), rb = maskRow(b, 1, h, q, 64);
        ra.forEach((x, j) => { n++; if (x !== 0) kept++; if ((x !== 0) !== (rb[j] !== 0)) differ++; });
      }
      const sd = Math.sqrt(p * (1 - p) / n);
      // 6σ: a false failure about once in 10^9 runs
      expect(Math.abs(kept / n - (1 - p))).toBeLessThanOrEqual(6 * sd);
      // independent masks differ on 2p(1 − p) of the entries
      expect(differ / n).toBeGreaterThanOrEqual(2 * p * (1 - p) - 6 * Math.sqrt(2 * p * (1 - p) / n));
      expect(differ).toBeGreaterThan(0);
    }), { numRuns: 40 });
  });

  it("masks of neighbouring rows, heads and batches are as different as independent ones", () => {
    const d = checkDropout({ p: 0.5, seed: 42 })!;
    const S = 256;
    const rows = (b: number, h: number) => Array.from({ length: 16 }, (_, q) => maskRow(d, b, h, q, S)).flat();
    const base = rows(0, 0);
    const shiftedQ = Array.from({ length: 16 }, (_, q) => maskRow(d, 0, 0, q + 1, S)).flat();
    for (const other of [shiftedQ, rows(0, 1), rows(1, 0)]) {
      const differ = base.filter((x, i) => (x !== 0) !== (other[i] !== 0)).length / base.length;
      expect(Math.abs(differ - 0.5)).toBeLessThanOrEqual(6 * Math.sqrt(0.25 / base.length));
    }
  });

  it("bad options are typed errors; p = 0 is no dropout", () => {
    const q = randn([1, 1, 8, 16]);
    for (const bad of [{ p: 1, seed: 0 }, { p: -0.1, seed: 0 }, { p: NaN, seed: 0 }, { p: 0.1, seed: 1.5 }, { p: 0.1, seed: -1 },
      { p: 0.1, seed: 2 ** 32 }, { p: 0.1 }, { p: 0.1, seed: 0, extra: 1 }, 0.1, null]) {
      expect(() => flexAttention(q, q, q, { dropout: bad as never })).toThrow(InvalidArgument);
    }
    expect(makeFlexCall(q, q, q, { dropout: { p: 0, seed: 3 } }).dropout).toBeUndefined();
  });

  it.skipIf(noGpu)("the GPU kernel drops exactly the entries of the JS stream (read back through a uniform softmax)", async () => {
    setPoison(true);
    // scale 0: every probability is 1/Skv; v = the identity: out[b, h, i, j] = z_ij / Skv
    const [B, H, S] = [2, 2, 64];
    const eye = new Float32Array(B * H * S * S);
    for (let bh = 0; bh < B * H; bh++) for (let j = 0; j < S; j++) eye[(bh * S + j) * S + j] = 1;
    const v = tensor(eye, [B, H, S, S]);
    const dropout = { p: 0.3, seed: 123456789 };
    const out = await flexAttention(randn([B, H, S, 32]), randn([B, H, S, 32]), v, { scale: 0, dropout }).toArray();
    const d = checkDropout(dropout)!;
    let kept = 0;
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < S; i++) {
      const z = maskRow(d, b, h, i, S);
      for (let j = 0; j < S; j++) {
        const got = out[((b * H + h) * S + i) * S + j] * S;
        expect(Math.abs(got - z[j])).toBeLessThanOrEqual(1e-5 * d.keepScale);
        if (z[j] !== 0) kept++;
      }
    }
    expect(Math.abs(kept / (B * H * S * S) - 0.7)).toBeLessThanOrEqual(0.03);
  }, SLOW);
});

describe("dropout: forward and backward vs the float64 oracle", () => {
  it.skipIf(noGpu)("out and lse (causal, GQA, B=2, odd length); lse equals the undropped one; p = 0 is bit-identical", async () => {
    setPoison(true);
    const [B, Hq, Hkv, S, D] = [2, 4, 2, 72, 32];
    const q = randn([B, Hq, S, D]), k = randn([B, Hkv, S, D]), v = randn([B, Hkv, S, D]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 32 });
    const opts = { blockMask, enableGqa: true, returnLse: true } as const;
    const drop = flexAttention(q, k, v, { ...opts, dropout: { p: 0.2, seed: 99 } });
    const plain = flexAttention(q, k, v, opts);
    const zero = flexAttention(q, k, v, { ...opts, dropout: { p: 0, seed: 5 } });
    const gpu = await realizeAll([drop.out, drop.lse, plain.out, plain.lse, zero.out, zero.lse]);
    const ref = await onCpu(drop.out, drop.lse);
    expect(relL2(gpu[0], ref[0])).toBeLessThanOrEqual(1e-5);
    expect(relL2(gpu[1], ref[1])).toBeLessThanOrEqual(1e-6);
    expect(relL2(gpu[1], gpu[3])).toBeLessThanOrEqual(1e-7); // dropout leaves lse alone
    expect(relL2(gpu[0], gpu[2])).toBeGreaterThan(0.1); // and does change out
    expect(Array.from(gpu[4])).toEqual(Array.from(gpu[2]));
    expect(Array.from(gpu[5])).toEqual(Array.from(gpu[3]));
  }, SLOW);

  it.skipIf(noGpu)("dq, dk, dv and a learnable alibi slope, with out and lse cotangents (GQA, causal)", async () => {
    const [Hq, Hkv, S, D] = [4, 2, 64, 32];
    const q = randn([1, Hq, S, D]), k = randn([1, Hkv, S, D]), v = randn([1, Hkv, S, D]);
    const slopes = tensor(Float32Array.from({ length: Hq }, () => 0.05 + 0.4 * Math.random()), [Hq]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 32 });
    const [, back] = vjp((q, k, v, s) => flexAttention(q, k, v, {
      blockMask, enableGqa: true, returnLse: true, scoreMod: alibi(s), dropout: { p: 0.3, seed: 2024 },
    }), q, k, v, slopes);
    const grads = back({ out: randn([1, Hq, S, D]), lse: randn([1, Hq, S]) });
    setPoison(true);
    const gpu = await realizeAll(grads);
    const ref = await onCpu(...grads);
    ["dq", "dk", "dv", "dslopes"].forEach((name, i) => {
      const e = relL2(gpu[i], ref[i]);
      if (!(e <= 1e-3)) throw new Error(`${name}: rel. L2 ${e} > 1e-3`);
    });
  }, SLOW);

  it.skipIf(noGpu)("sinks keep their gradient under dropout (GPU vs the CPU executor)", async () => {
    const [H, S, D] = [2, 48, 32];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]), w = randn([1, H, S, D]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
    const loss = (q: Tensor, s: Tensor) => sum(mul(flexAttention(q, k, v, { blockMask, sinks: s, dropout: { p: 0.25, seed: 7 } }), w));
    const grads = grad(loss)(q, tensor([0.4, -0.6], [H]));
    setPoison(true);
    const gpu = await realizeAll(grads);
    const ref = await onCpu(...grads);
    expect(relL2(gpu[0], ref[0])).toBeLessThanOrEqual(1e-3);
    expect(relL2(gpu[1], ref[1])).toBeLessThanOrEqual(1e-4);
  }, SLOW);

  it("the oracle's dropout gradient equals central finite differences of its forward (float64)", () => {
    const [H, S, D] = [2, 12, 16];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const call = makeFlexCall(q, k, v, { dropout: { p: 0.4, seed: 31337 } });
    const w = Float64Array.from({ length: H * S * D }, () => Math.random() - 0.5);
    const u = Float64Array.from({ length: H * S }, () => Math.random() - 0.5);
    const base = { q: Float64Array.from(q.data!), k: Float64Array.from(k.data!), v: Float64Array.from(v.data!), scoreCaptures: [], maskCaptures: [] };
    const loss = (x: typeof base) => {
      const r = flexReference(call, x);
      return r.out.reduce((a, o, i) => a + o * w[i], 0) + r.lse.reduce((a, l, i) => a + l * u[i], 0);
    };
    const g = flexReferenceBwd(call, { ...base, dOut: w, dLse: u });
    const eps = 1e-5;
    for (const [name, grads] of [["q", g.dq], ["k", g.dk], ["v", g.dv]] as const) {
      for (const i of [0, 37, 101, 250, H * S * D - 1]) {
        const plus = { ...base, [name]: base[name].slice() }, minus = { ...base, [name]: base[name].slice() };
        plus[name][i] += eps; minus[name][i] -= eps;
        const fd = (loss(plus) - loss(minus)) / (2 * eps);
        expect(Math.abs(fd - grads[i])).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(fd));
      }
    }
    // the mask matters: without dropout the gradient differs
    const plain = flexReferenceBwd(makeFlexCall(q, k, v), { ...base, dOut: w, dLse: u });
    expect(relL2(plain.dv, g.dv)).toBeGreaterThan(0.1);
  });
});

releaseGpuAfterAll();
