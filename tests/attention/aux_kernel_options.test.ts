/**
 * `returnAux: true` → { out, lse, maxScore } and the kernel options prescaleQk / rowsGuaranteedSafe, against the
 * float64 oracle on fresh random inputs with poisoned outputs: maxScore also against a naive max written here,
 * through split-KV (the combine merges it), f16 storage and fully masked rows (−∞); maxScore carries no
 * gradient; both kernel options forward and backward; bad values are typed errors on every executor.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import {
  alibi, cast, causalMask, createBlockMask, flexAttention, grad, InvalidArgument, type MaskMod, mul, randn, realizeAll, setPoison,
  softcap, sum, type Tensor, tensor, vjp,
} from "../../mod.ts";
import { makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexForwardSource } from "../../lib/lower/plan_flex.ts";
import { flexBackwardWgsl } from "../../kernels/flex_backward.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const noGpu = await gpuSkipReason();
const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
const SLOW = 300_000;

/** Rows 0..2 attend nothing (maxScore −∞, lse −∞); the others are causal. */
const lateStart: MaskMod = (_b, _h, q, kv) => q.ge(3).and(q.ge(kv));

/** Naive per-row max of softcap(q·k·scale, cap) over kv ≤ q, rows < 3 −∞ (one batch). */
function naiveMax(q: ArrayLike<number>, k: ArrayLike<number>, H: number, S: number, D: number, cap: number): Float64Array {
  const m = new Float64Array(H * S).fill(-Infinity);
  for (let h = 0; h < H; h++) for (let i = 3; i < S; i++) for (let j = 0; j <= i; j++) {
    let d = 0;
    for (let t = 0; t < D; t++) d += q[(h * S + i) * D + t] * k[(h * S + j) * D + t];
    m[h * S + i] = Math.max(m[h * S + i], cap * Math.tanh((d / Math.sqrt(D)) / cap));
  }
  return m;
}

/** Equal −∞ at the same rows, rel. L2 over the finite ones. */
function expectMaxScore(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  const g: number[] = [], w: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (want[i] === -Infinity) expect(got[i]).toBe(-Infinity);
    else { g.push(got[i]); w.push(want[i]); }
  }
  expect(relL2(g, w)).toBeLessThanOrEqual(tol);
}

describe("returnAux: maxScore", () => {
  it("the CPU executor's maxScore is the naive row max of the modded scores; lse and out as with returnLse", async () => {
    const [H, S, D] = [2, 40, 16];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const blockMask = await createBlockMask(lateStart, null, null, S, S, { blockSize: 16 });
    const aux = flexAttention(q, k, v, { blockMask, scoreMod: softcap(3), returnAux: true });
    const plain = flexAttention(q, k, v, { blockMask, scoreMod: softcap(3), returnLse: true });
    const [mx, o1, l1, o2, l2] = await onCpu(aux.maxScore, aux.out, aux.lse, plain.out, plain.lse);
    expectMaxScore(mx, naiveMax(q.data!, k.data!, H, S, D, 3), 1e-6);
    expect(Array.from(o1)).toEqual(Array.from(o2));
    expect(Array.from(l1)).toEqual(Array.from(l2));
    expect(aux.maxScore.shape).toEqual([1, H, S]);
    expect(() => flexAttention(q, k, v, { returnAux: 1 as never })).toThrow(InvalidArgument);
  });

  it.skipIf(noGpu)("GPU maxScore, out and lse vs the oracle: direct, split-KV with dropout, f16 storage; −∞ for masked rows", async () => {
    setPoison(true);
    const [H, S, D] = [2, 70, 32];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const blockMask = await createBlockMask(lateStart, null, null, S, S, { blockSize: 16 });
    const want = naiveMax(q.data!, k.data!, H, S, D, 3);
    const cases = [
      flexAttention(q, k, v, { blockMask, scoreMod: softcap(3), returnAux: true }),
      flexAttention(q, k, v, { blockMask, scoreMod: softcap(3), returnAux: true, dropout: { p: 0.2, seed: 9 }, kernelOptions: { splitKv: 3 } }),
      flexAttention(cast(q, "f16"), cast(k, "f16"), cast(v, "f16"), { blockMask, scoreMod: softcap(3), returnAux: true }),
    ];
    const gpu = await realizeAll(cases.flatMap((c) => [c.out, c.lse, c.maxScore]));
    const ref = await onCpu(...cases.flatMap((c) => [c.out, c.lse, c.maxScore]));
    cases.forEach((_, i) => {
      const f16 = i === 2;
      expect(relL2(gpu[3 * i], ref[3 * i])).toBeLessThanOrEqual(f16 ? 1e-3 : 1e-5);
      expect(relL2(gpu[3 * i + 1], ref[3 * i + 1])).toBeLessThanOrEqual(1e-5);
      expectMaxScore(gpu[3 * i + 2], ref[3 * i + 2], 1e-6);
      expectMaxScore(gpu[3 * i + 2], f16 ? ref[3 * i + 2] : want, f16 ? 1e-6 : 1e-5);
    });
    // the masked rows' out is exactly 0
    for (let d = 0; d < D; d++) expect(gpu[3][d]).toBe(0);
  }, SLOW);

  it("maxScore carries no gradient: adding it to the loss leaves dq unchanged", async () => {
    const [H, S, D] = [1, 16, 16];
    const k = randn([1, H, S, D]), v = randn([1, H, S, D]), w = randn([1, H, S, D]);
    const base = (q: Tensor) => {
      const r = flexAttention(q, k, v, { returnAux: true });
      return { main: sum(mul(r.out, w)), max: sum(r.maxScore) };
    };
    const q = randn([1, H, S, D]);
    const [g1] = await onCpu(grad((q: Tensor) => base(q).main)(q)[0]);
    const [, back] = vjp((q: Tensor) => { const b = base(q); return [b.main, b.max]; }, q);
    const [g2] = await onCpu(back([tensor([1], []), tensor([1], [])])[0]);
    expect(relL2(g2, g1)).toBeLessThanOrEqual(1e-7);
  });
});

describe("kernelOptions.prescaleQk and rowsGuaranteedSafe", () => {
  it("are validated at construction (every executor) and change the generated WGSL", () => {
    const q = randn([1, 2, 32, 32]);
    expect(() => flexAttention(q, q, q, { kernelOptions: { prescaleQk: 1 as never } })).toThrow(InvalidArgument);
    expect(() => flexAttention(q, q, q, { kernelOptions: { rowsGuaranteedSafe: "yes" as never } })).toThrow(InvalidArgument);
    const src = (o: object) => flexForwardSource(makeFlexCall(q, q, q, { kernelOptions: o }), DEFAULT_CAPABILITIES).code;
    const plain = src({}), pre = src({ prescaleQk: true }), safe = src({ rowsGuaranteedSafe: true });
    expect(plain).toContain("s0 *= P.q_scale;");
    expect(pre).not.toContain("s0 *= P.q_scale;");
    expect(pre).toContain("* P.q_scale; }");
    expect(plain).toContain("let empty = l_tot == RV(0.0);");
    expect(safe).not.toContain("let empty");
    const cfg = { family: "portable", D: 32, Dv: 32, BA: 16, TA: 1, G: 4, BB: 16, DK: 16, NV: 16 } as const;
    const hooks = { preamble: "", scoreMod: "", maskMod: "", scoreModGrad: "", identityScore: true, capReads: 0, capCode: "" };
    expect(flexBackwardWgsl("dq", cfg, hooks, undefined, { rowsSafe: true })).not.toContain("ld.x != POS_INF");
    expect(flexBackwardWgsl("dq", cfg, hooks, undefined, { prescaleQk: true })).not.toContain("s[j] * P.scale");
  });

  it.skipIf(noGpu)("prescaleQk: forward and gradients (alibi slopes captured) vs the oracle, and ≈ the default", async () => {
    const [H, S, D] = [2, 64, 32];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const slopes = tensor([0.3, 0.1], [H]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 32 });
    const f = (prescaleQk: boolean) => (q: Tensor, k: Tensor, v: Tensor, s: Tensor) =>
      flexAttention(q, k, v, { blockMask, scoreMod: alibi(s), kernelOptions: { prescaleQk } });
    const dOut = randn([1, H, S, D]);
    const [y, back] = vjp(f(true), q, k, v, slopes);
    const [y0] = vjp(f(false), q, k, v, slopes);
    const grads = back(dOut);
    setPoison(true);
    const gpu = await realizeAll([y, y0, ...grads]);
    const ref = await onCpu(y, ...grads);
    expect(relL2(gpu[0], ref[0])).toBeLessThanOrEqual(1e-5);
    expect(relL2(gpu[0], gpu[1])).toBeLessThanOrEqual(1e-5);
    for (let i = 0; i < 4; i++) expect(relL2(gpu[2 + i], ref[1 + i])).toBeLessThanOrEqual(1e-3);
  }, SLOW);

  it.skipIf(noGpu)("rowsGuaranteedSafe on a mask with no empty rows: forward (direct and split-KV) and gradients vs the oracle", async () => {
    const [H, S, D] = [2, 72, 32];
    const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 32 });
    const f = (q: Tensor, k: Tensor, v: Tensor) =>
      flexAttention(q, k, v, { blockMask, returnLse: true, kernelOptions: { rowsGuaranteedSafe: true } });
    const split = flexAttention(q, k, v, { blockMask, returnLse: true, kernelOptions: { rowsGuaranteedSafe: true, splitKv: 2 } });
    const [y, back] = vjp(f, q, k, v);
    const grads = back({ out: randn([1, H, S, D]), lse: randn([1, H, S]) });
    setPoison(true);
    const outs = [y.out, y.lse, split.out, split.lse, ...grads];
    const gpu = await realizeAll(outs);
    const ref = await onCpu(...outs);
    outs.forEach((_, i) => expect(relL2(gpu[i], ref[i])).toBeLessThanOrEqual(i < 4 ? 1e-5 : 1e-3));
  }, SLOW);
});

releaseGpuAfterAll();
