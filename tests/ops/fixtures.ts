/**
 * Shared pieces of the ops tests: fresh random inputs (never all zeros), the CPU executor as the reference,
 * the GPU through the default runtime (FLEX_WEBGPU picks the provider) with outputs poisoned, and a
 * synchronous BlockMask built from the CPU block states.
 */
import { Effect } from "effect";
import { rng, Tensor, type TypedData } from "../../lib/tensor/tensor.ts";
import { realizeCpu } from "../../lib/runtime/cpu/executor.ts";
import { Gpu, realizeAll, runWithGpu } from "../../lib/runtime/mod.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { BlockMask } from "../../lib/blockmask/block_mask.ts";
import { maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { type MaskMod, traceMaskMod } from "../../lib/mods/trace.ts";

/** A fresh seed per call: inputs differ on every run. */
/** The dims of one attention case (the ops suites' case records extend it). */
export interface AttnDims {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  Skv: number;
  D: number;
}

export const freshSeed = (): number => (Math.random() * 2 ** 31) >>> 0;

/** f32 values uniform in [lo, hi). */
export function randF32(shape: readonly number[], lo = -1, hi = 1): Tensor {
  const r = rng(freshSeed());
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor("const", [], [...shape], "f32", Float32Array.from({ length: n }, () => lo + (hi - lo) * r()));
}

/** i32 values uniform in [lo, hi], never 0 (so a zero-filled output cannot pass). */
export function randI32(shape: readonly number[], lo = -1000, hi = 1000): Tensor {
  const r = rng(freshSeed());
  const n = shape.reduce((a, b) => a * b, 1);
  return new Tensor("const", [], [...shape], "i32", Int32Array.from({ length: n }, () => Math.floor(lo + (hi - lo + 1) * r()) || 1));
}

/** The CPU executor's values (the default CPU_OPS table). */
export function cpu(...roots: Tensor[]): TypedData[] {
  return realizeCpu(roots);
}

/** The GPU's values through the default runtime, every output poisoned with NaN first. */
export function gpu(...roots: Tensor[]): Promise<TypedData[]> {
  setPoison(true);
  return realizeAll(roots);
}

/** The default runtime's device (null on the CPU) and executor, e.g. to build a second executor on it. */
export function gpuService() {
  return runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
}

/** A BlockMask built now on the CPU (no realizer needed). */
export function blockMaskOf(maskMod: MaskMod, B: number, H: number, qLen: number, kvLen: number, block = 128): BlockMask {
  const traced = traceMaskMod(maskMod);
  const captures = traced.captures.map((c) => (c as Tensor).data!);
  const blockSize: [number, number] = [block, block];
  const states = maskBlockStatesCpu({ mask: traced, B, H, qLen, kvLen, blockSize }, captures);
  return BlockMask.fromStates(states, { B, H, qLen, kvLen, blockSize, maskMod, tracedMask: traced });
}
