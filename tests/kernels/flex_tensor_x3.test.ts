/**
 * f32 inputs through the tensor family (`x3`: each operand an f16 hi + lo pair under a per-tensor power-of-two scale,
 * three f16 products per matrix product; kernels/flex_forward_tensor_pipe.ts, kernels/abs_max.ts) against the float64
 * oracle, outputs poisoned first. The bar is f32's, not f16's: out within 2e-6 rel. L2 (a plain f32 kernel: ≈ 3e-7;
 * one f16 product per matrix product: ≈ 3e-4, so a lost lo half fails here), lse within 1e-6. Inputs far from 1
 * (×1e-4, ×3e3) check the scales: without them the lo halves of small values fall into f16's subnormals (≈ 1e-5)
 * and large ones overflow. Native on the GPU machine (the whole list), emulated on lavapipe (a slice: each emulated
 * kernel compiles for long there).
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { blockMaskOf } from "./helpers.ts";
import { Effect } from "effect";
import { type Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { cast } from "../../lib/tensor/ops.ts";
import { f32Call, flexNodes, type FlexOptions, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { familyFor, hasNativeMatrices } from "../../lib/lower/flex_tensor_config.ts";
import { familyProblemOf, planFlex } from "../../lib/lower/plan_flex.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import type { KernelOptions } from "../../lib/attention/kernel_options.ts";

const native = !skipReason && hasNativeMatrices(gpu.caps);
const emulable = !skipReason && gpu.caps.features.has("shader-f16");
const noTensorFamily = skipReason || (!native && !emulable ? "the adapter has neither subgroup matrices nor shader-f16"
  : !native && gpu.info.provider !== "dawn" ? "the emulated tensor-family slice runs on the Dawn provider only (CI time)" : false);
const TOL_OUT = 2e-6, TOL_LSE = 1e-6;

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const softcap = (score: Expr) => score.div(20).tanh().mul(20);

interface XCase {
  name: string; B?: number; Hq?: number; Hkv?: number; Sq: number; Skv?: number; D: number; Dv?: number; mask?: MaskMod; block?: number;
  score?: FlexOptions["scoreMod"]; mag?: [number, number, number]; splitKv?: number;
}

/** Uniform in (−m, m): seeded-free fresh inputs, never zeros. */
const rand = (shape: number[], m: number) =>
  tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (Math.random() * 2 - 1) * m), shape);

async function check(c: XCase, opts: KernelOptions = { family: "tensor" }) {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.Sq, Dv = c.Dv ?? c.D;
  const [mq, mk, mv] = c.mag ?? [2, 2, 2];
  const q = rand([B, Hq, c.Sq, c.D], mq), k = rand([B, Hkv, Skv, c.D], mk), v = rand([B, Hkv, Skv, Dv], mv);
  const blockMask = c.mask ? blockMaskOf(c.mask, 1, 1, c.Sq, Skv, c.block ?? 64) : undefined;
  const call = makeFlexCall(q, k, v, { blockMask, scoreMod: c.score, enableGqa: Hq !== Hkv, kernelOptions: { ...opts, splitKv: c.splitKv } });
  expect(familyFor(familyProblemOf(call), gpu.caps, call.kernelOptions)).toBe(native ? "native" : "emulated");
  const labels = planFlex(call, gpu.caps).launches.map((l) => l.label).join(" | ");
  expect(labels).toContain("abs_max");
  expect(labels).toContain("f32x3");
  const { out, lse } = flexNodes(call);
  setPoison(true);
  const [o, l] = await Effect.runPromise(gpu.executor.realize([out, lse]));
  expect(o).toBeInstanceOf(Float32Array);
  const data = (t: unknown) => (t as Tensor).data!;
  const ref = flexReference(call, {
    q: data(q), k: data(k), v: data(v),
    scoreCaptures: call.scoreMod.captures.map(data), maskCaptures: call.blockMask.tracedMask.captures.map(data),
  });
  const errOut = relL2(o, ref.out), errLse = relL2(l, ref.lse);
  expect({ case: c.name, errOut, errLse, ok: errOut <= TOL_OUT && errLse <= TOL_LSE }).toEqual({ case: c.name, errOut, errLse, ok: true });
}

// one emulated case in CI (its two kernels, the optimistic walk and the plain one, compile for ~1 min on lavapipe)
const SLICE: XCase[] = [
  // 19 key tiles: past the first flush of the matrices' partial O (every 16 tiles) into the f32 sums
  { name: "kv ≤ q + 200 + softcap, GQA 4:2, ragged 100×300, D32, q ×1e-4 k ×3e3 v ×3e3", Hq: 4, Hkv: 2, Sq: 100, Skv: 300, D: 32, mask: (_b, _h, q, kv) => kv.le(q.add(200)), score: softcap, block: 128, mag: [1e-4, 3e3, 3e3] },
];
const FULL: XCase[] = [
  ...SLICE,
  { name: "noop D64", Sq: 64, D: 64 },
  { name: "noop D64, 64-blocks (BM 64)", Sq: 200, D: 64, mask: (_b, _h, q, _kv) => q.ge(0), block: 64 },
  ...[32, 64, 80, 128].map((D) => ({ name: `causal D${D}`, Sq: 256, D, mask: causal, block: 128 })),
  { name: "noop D128, cross lengths 192×320", Sq: 192, Skv: 320, D: 128, block: 128 },
  { name: "noop S512, tiny inputs (×1e-6)", Sq: 512, D: 64, block: 128, mag: [1e-6, 1e-6, 1e-6] },
  { name: "softcap + causal, ragged 333", Sq: 333, D: 64, mask: causal, score: softcap, block: 128 },
  { name: "GQA 8:2, D80, ragged 130×257", Hq: 8, Hkv: 2, Sq: 130, Skv: 257, D: 80 },
  { name: "fully masked rows (q < 16 attend nothing)", Sq: 128, D: 64, mask: (_b, _h, q, kv) => q.ge(16).and(q.ge(kv)) },
  { name: "split-KV 4", Sq: 128, Skv: 2048, D: 64, block: 128, splitKv: 4 },
  // the max grows along kv by ≈ 38 (≫ the optimistic walk's span): the second walk, its rescale of both accumulator sets
  { name: "max growing along kv (the rescaling walk)", Sq: 256, Skv: 384, D: 64, block: 128, score: (s, _b, _h, _q, kv) => s.add(kv.mul(0.1)) },
];

describe("f32 through the tensor family (x3) vs the float64 oracle", () => {
  const run = it.skipIf(noTensorFamily);
  for (const c of native ? FULL : SLICE) run(`${native ? "native" : "emulated"}: ${c.name}`, async () => void await check(c));
  // the default for f32 where the adapter has subgroup matrices; "ieee" keeps the portable family
  it.skipIf(skipReason)("family choice: f32 auto → tensor (x3) natively, else portable; f32Precision \"ieee\" → portable", () => {
    const q = rand([1, 1, 128, 64], 1);
    const auto = makeFlexCall(q, q, q, {});
    expect(familyFor(familyProblemOf(auto), gpu.caps, auto.kernelOptions)).toBe(native ? "native" : "portable");
    const ieee = makeFlexCall(q, q, q, { kernelOptions: { f32Precision: "ieee" } });
    expect(familyFor(familyProblemOf(ieee), gpu.caps, ieee.kernelOptions)).toBe("portable");
    expect(() => makeFlexCall(q, q, q, { kernelOptions: { f32Precision: "tf32" as never } })).toThrow(/f32Precision/);
    // an f16 call's f32 twin (its portable path) stays on the scalar kernel
    const h = rand([1, 1, 128, 64], 1);
    const twin = f32Call(makeFlexCall(cast(h, "f16"), cast(h, "f16"), cast(h, "f16"), {}));
    expect(familyFor(familyProblemOf(twin), gpu.caps, twin.kernelOptions)).toBe("portable");
    const forced = makeFlexCall(q, q, q, { kernelOptions: { family: "tensor", f32Precision: "ieee" } });
    expect(() => familyFor(familyProblemOf(forced), gpu.caps, forced.kernelOptions)).toThrow(/f16x3/);
  });
});

releaseGpuAfterAll();
