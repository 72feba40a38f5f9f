/**
 * The fused GPU backward (dq, dk, dv, captured-tensor gradients) against the float64 oracle
 * (flexReferenceBwd) on fresh random inputs, through the public API: vjp of flexAttention, cotangents
 * given to `back`, gradients realized with poisoned outputs. Rel. L2 ≤ 1e-3 (DESIGN.md §4).
 */
import { describe, expect } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { nativeHalf } from "../native_slice.ts";
import {
  alibi, CaptureOutOfRange, causalMask, customOp, deviceInfo, documentMask, type Expr, flexAttention, type MaskMod, prefixLm,
  randn, realizeAll, setPoison, slidingWindow, softcap, softcapApprox, type Tensor, tensor, UndefinedDerivative, vjp,
} from "../../mod.ts";
import { docIdsFromOffsets } from "../../lib/mods/gallery/jagged.ts";
import { type GradCase, runGradCase } from "./helpers.ts";

const noGpu = await gpuSkipReason();
const TOL = 1e-3;
// A new mod compiles new kernels: Dawn's SPIR-V takes lavapipe (LLVM, 2 shared cores) minutes per kernel.
const SLOW = 900_000;

const rand = (shape: number[], lo: number, hi: number): Tensor =>
  tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => lo + (hi - lo) * Math.random()), shape);

async function check(c: GradCase): Promise<void> {
  expect((await deviceInfo()).provider).not.toBe("cpu");
  const r = await runGradCase(c);
  for (const n of r.names) {
    if (!(r.errors[n] <= TOL)) throw new Error(`${n}: rel. L2 ${r.errors[n]} > ${TOL} (all: ${JSON.stringify(r.errors)})`);
  }
}

/** Rows 0..2 attend nothing: their lse is −∞ and their gradients must be exact zeros. */
const lateStart: MaskMod = (_b, _h, q, kv) => q.ge(3).and(q.ge(kv));

const CASES: [string, GradCase][] = [
  ["noop mask, B=2, D=64", { B: 2, Sq: 128, D: 64 }],
  ["causal, odd length 100, D=32", { Sq: 100, D: 32, maskMod: causalMask, blockSize: 32 }],
  ["sliding window (w=40), odd length 300", { Hq: 1, Sq: 300, D: 32, maskMod: slidingWindow(40), blockSize: 64 }],
  ["prefix LM (n=30), S=150", { Sq: 150, D: 32, maskMod: prefixLm(30), blockSize: 32 }],
  ["document mask, S=200", { Sq: 200, D: 32, maskMod: documentMask(docIdsFromOffsets([0, 40, 100, 200])), blockSize: 64 }],
  ["alibi with learnable slopes (causal)", {
    Hq: 4, Sq: 96, D: 32, maskMod: causalMask, blockSize: 32,
    params: ({ Hq }) => [rand([Hq], 0.05, 0.5)],
    scoreMod: ([slopes]) => alibi(slopes),
  }],
  ["softcap (tanh, cap 2)", { Sq: 128, D: 64, scoreMod: () => softcap(2) }],
  ["softcapApprox (tanhApprox custom op)", { Sq: 128, D: 64, maskMod: causalMask, blockSize: 64, scoreMod: () => softcapApprox(2) }],
  ["relative-position bias table read twice, Sq=70 ≠ Skv=90", {
    Sq: 70, Skv: 90, D: 32, blockSize: 32,
    params: ({ Sq, Skv }) => [rand([Sq + Skv - 1], -1, 1)],
    scoreMod: ([table], { Sq, Skv }) => (s: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) =>
      s.add(table.at(q.sub(kv).add(Skv - 1))).add(table.at(kv.sub(q).add(Sq - 1)).mul(s)),
  }],
  ["per-head bias [H, Sq] plus softcap, with an lse cotangent", {
    Sq: 64, D: 32, withLse: true, maskMod: causalMask, blockSize: 32,
    params: ({ Hq, Sq }) => [rand([Hq, Sq], -1, 1)],
    scoreMod: ([bias]) => (s: Expr, _b: Expr, h: Expr, q: Expr) => s.div(0.8).tanh().mul(0.8).add(bias.at(h, q)),
  }],
  ["GQA (Hq 4, Hkv 2), causal", { Hq: 4, Hkv: 2, Sq: 80, D: 32, maskMod: causalMask, blockSize: 32 }],
  ["cross attention Sq=100, Skv=300", { Hq: 1, Sq: 100, Skv: 300, D: 32, blockSize: 64 }],
  ["fully masked rows (zero grads), with an lse cotangent", { Sq: 40, D: 32, maskMod: lateStart, blockSize: 16, withLse: true }],
  ["D=128, causal", { Hq: 1, Sq: 64, D: 128, maskMod: causalMask, blockSize: 32 }],
  ["D=16, Dv=32", { Hq: 1, Sq: 48, D: 16, Dv: 32, blockSize: 16 }],
  ["lse cotangent only on a noop mask, realized one by one with toArray()", { Sq: 60, D: 32, withLse: true, oneByOne: true }],
];

describe("flex backward on the GPU vs the float64 oracle", () => {
  // the deno/native pass: every other case (tests/native_slice.ts)
  const gpuCase = nativeHalf(noGpu);
  for (const [name, c] of CASES) gpuCase(name, () => check(c), SLOW);

  gpuCase("fully masked rows get exact zero gradients", async () => {
    const r = await runGradCase({ Sq: 40, D: 32, maskMod: lateStart, blockSize: 16 });
    const dq = r.gpu[0];
    for (let h = 0; h < 2; h++) for (let i = 0; i < 3; i++) for (let d = 0; d < 32; d++) expect(dq[(h * 40 + i) * 32 + d]).toBe(0);
    expect(r.errors.dq).toBeLessThanOrEqual(TOL);
  }, SLOW);

  gpuCase("a NaN derivative at an attended entry fails with UndefinedDerivative", async () => {
    // d/dx = sqrt(x − 1000): NaN for every realistic score
    const bad = customOp({ name: "bad_grad", wgsl: "return x0;", cpu: (x) => x, grad: ([x], g) => [g.mul(x.sub(1000).sqrt())] });
    const q = randn([1, 1, 32, 16]), k = randn([1, 1, 32, 16]), v = randn([1, 1, 32, 16]);
    const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { scoreMod: (s) => bad(s) }), q, k, v);
    setPoison(true);
    await expect(realizeAll(back(randn([1, 1, 32, 16])))).rejects.toBeInstanceOf(UndefinedDerivative);
  }, SLOW);

  gpuCase("a captured tensor read out of range in the backward fails with CaptureOutOfRange", async () => {
    const table = rand([20], -1, 1); // q reaches 31
    const q = randn([1, 1, 32, 16]), k = randn([1, 1, 32, 16]), v = randn([1, 1, 32, 16]);
    const [, back] = vjp((q, k, v, t) => flexAttention(q, k, v, { scoreMod: (s, _b, _h, qi) => s.add(t.at(qi)) }), q, k, v, table);
    await expect(realizeAll(back(randn([1, 1, 32, 16])))).rejects.toBeInstanceOf(CaptureOutOfRange);
  }, SLOW);
});

releaseGpuAfterAll();
