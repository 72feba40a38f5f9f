/**
 * Shared helpers of the grad tests: synchronous BlockMasks (CPU block states), random data, float64
 * central finite differences, and the scalar loss the reference backward is checked on.
 */
import { Tensor } from "../../lib/tensor/tensor.ts";
import { rng } from "../../lib/tensor/tensor.ts";
import { BlockMask } from "../../lib/blockmask/block_mask.ts";
import { maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { type MaskMod, traceMaskMod } from "../../lib/mods/trace.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReference, type FlexInputs } from "../../lib/runtime/cpu/flex_reference.ts";

/** A BlockMask built now on the CPU (createBlockMask is async and needs a realizer). */
export function blockMaskOf(maskMod: MaskMod, B: number, H: number, qLen: number, kvLen: number, block = 4): BlockMask {
  const traced = traceMaskMod(maskMod);
  const captures = traced.captures.map((c) => (c as Tensor).data!);
  const blockSize: [number, number] = [block, block];
  const states = maskBlockStatesCpu({ mask: traced, B, H, qLen, kvLen, blockSize }, captures);
  return BlockMask.fromStates(states, { B, H, qLen, kvLen, blockSize, maskMod, tracedMask: traced });
}

/** Uniform values in [lo, hi) from a seeded generator, as an f32 tensor of `shape`. */
export function uniform(shape: readonly number[], seed: number, lo = -1, hi = 1): Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor("const", [], [...shape], "f32", Float32Array.from({ length: n }, () => lo + (hi - lo) * r()));
}

/** A fresh seed per run (inputs are never the same twice), printed on failure through the test name. */
export const freshSeed = (): number => (Math.random() * 2 ** 31) >>> 0;

/** Central differences of `loss` with respect to every entry of `x` (mutated and restored in place). */
export function finiteDiff(x: Float64Array, loss: () => number, h = 1e-5): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + h; const up = loss();
    x[i] = x0 - h; const down = loss();
    x[i] = x0;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/** Mutable float64 copies of a call's inputs (for finite differences). */
export interface F64Inputs {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  scoreCaptures: Float64Array[];
  maskCaptures: Float64Array[];
}

export function f64Inputs(call: FlexCall): F64Inputs {
  const data = (t: unknown) => Float64Array.from((t as Tensor).data!);
  return {
    q: data(call.q), k: data(call.k), v: data(call.v),
    scoreCaptures: call.scoreMod.captures.map(data),
    maskCaptures: call.blockMask.tracedMask.captures.map(data),
  };
}

/** L = Σ out·wOut + Σ_{finite lse} lse·wLse (wLse optional): the scalar the backward is checked on. */
export function flexLoss(call: FlexCall, x: FlexInputs, wOut: ArrayLike<number>, wLse?: ArrayLike<number>): number {
  const { out, lse } = flexReference(call, x);
  let l = 0;
  for (let i = 0; i < out.length; i++) l += out[i] * wOut[i];
  if (wLse) for (let i = 0; i < lse.length; i++) if (Number.isFinite(lse[i])) l += lse[i] * wLse[i];
  return l;
}
