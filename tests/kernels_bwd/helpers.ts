/**
 * Shared pieces of the GPU backward tests: build a case through the public API (flexAttention + vjp,
 * cotangents given to `back` directly), realize the gradients on the GPU with poisoned outputs, and compute
 * the float64 oracle (flexReferenceBwd) on the same inputs.
 */
import {
  createBlockMask, type FlexOptions, flexAttention, type MaskMod, realizeAll, type ScoreMod, setPoison, type Tensor, tensor, vjp,
} from "../../mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { relL2 } from "../harness.ts";

export interface GradCase {
  B?: number;
  Hq?: number;
  Hkv?: number;
  Sq: number;
  Skv?: number;
  D?: number;
  Dv?: number;
  maskMod?: MaskMod;
  blockSize?: number | [number, number];
  /** Learnable f32 tensors the score mod captures (differentiated as vjp primals after q, k, v). */
  params?: (dims: { Hq: number; Sq: number; Skv: number }) => Tensor[];
  scoreMod?: (params: Tensor[], dims: { Hq: number; Sq: number; Skv: number }) => ScoreMod;
  /** Put a cotangent on lse too. */
  withLse?: boolean;
  /** q, k, v and dO stored as f16 (the oracle reads the f16 values); f32 by default. */
  dtype?: "f16";
  kernelOptions?: FlexOptions["kernelOptions"];
  /** Realize each gradient alone with toArray() instead of all in one realize. */
  oneByOne?: boolean;
  /** Called with the gradient graph before it is realized (e.g. to assert what the plan holds). */
  inspect?: (grads: readonly Tensor[]) => void | Promise<void>;
}

export interface GradResult {
  readonly names: string[];
  readonly gpu: Float32Array[];
  readonly ref: Float64Array[];
  readonly errors: Record<string, number>;
}

const dataOf = (t: unknown) => (t as Tensor).data!;

function uniform(shape: number[], lo: number, hi: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * Math.random()), shape);
}

export async function runGradCase(c: GradCase): Promise<GradResult> {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Sq = c.Sq, Skv = c.Skv ?? Sq, D = c.D ?? 64, Dv = c.Dv ?? D;
  const dt = c.dtype ? { dtype: c.dtype } : {};
  const q = randn([B, Hq, Sq, D], dt), k = randn([B, Hkv, Skv, D], dt), v = randn([B, Hkv, Skv, Dv], dt);
  const params = c.params?.({ Hq, Sq, Skv }) ?? [];
  const blockMask = c.maskMod ? await createBlockMask(c.maskMod, 1, 1, Sq, Skv, { blockSize: c.blockSize }) : undefined;
  const options = (ps: Tensor[]): Omit<FlexOptions, "returnLse"> => ({
    blockMask, enableGqa: Hq !== Hkv, scoreMod: c.scoreMod?.(ps, { Hq, Sq, Skv }), ...(c.kernelOptions ? { kernelOptions: c.kernelOptions } : {}),
  });
  const dOut = randn([B, Hq, Sq, Dv], dt);
  const dLse = uniform([B, Hq, Sq], -1, 1);
  let grads: Tensor[];
  let call: FlexCall;
  if (c.withLse) {
    const [y, back] = vjp((q, k, v, ...ps) => flexAttention(q, k, v, { ...options(ps), returnLse: true }), q, k, v, ...params);
    call = y.out.arg as FlexCall;
    grads = back({ out: dOut, lse: dLse });
  } else {
    const [y, back] = vjp((q, k, v, ...ps) => flexAttention(q, k, v, options(ps)), q, k, v, ...params);
    call = y.arg as FlexCall;
    grads = back(dOut);
  }
  await c.inspect?.(grads);
  setPoison(true);
  const gpu = (c.oneByOne
    ? await Promise.all(grads.map((g) => g.toArray()))
    : await realizeAll(grads)) as Float32Array[];
  const ref = flexReferenceBwd(call, {
    q: dataOf(q), k: dataOf(k), v: dataOf(v),
    scoreCaptures: call.scoreMod.captures.map(dataOf),
    maskCaptures: call.blockMask.tracedMask.captures.map(dataOf),
    dOut: dataOf(dOut), dLse: c.withLse ? dataOf(dLse) : null,
  });
  const refs = [ref.dq, ref.dk, ref.dv, ...params.map((p) => ref.dScoreCaptures[call.scoreMod.captures.indexOf(p)]!)];
  const names = ["dq", "dk", "dv", ...params.map((_, i) => `dparam${i}`)];
  const errors: Record<string, number> = {};
  names.forEach((n, i) => { errors[n] = relL2(gpu[i], refs[i]); });
  return { names, gpu, ref: refs, errors };
}

/** Largest error over the gradients (Infinity if any NaN). */
export function worst(r: GradResult): number {
  return Math.max(...Object.values(r.errors));
}
