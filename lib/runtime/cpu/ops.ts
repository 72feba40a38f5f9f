/**
 * The CPU executor's dispatch table: one entry per Tensor op. Others register their ops here
 * (`CPU_OPS.myOp = ...`) so the CPU executor realizes them without edits to executor.ts.
 */
import type { Tensor, TypedData } from "../../tensor/tensor.ts";
import type { FlexCall } from "../../attention/flex_attention.ts";
import { maskBlockStatesCpu, type MaskBlocksArg } from "../../blockmask/mask_blocks.ts";
import { flexReference } from "./flex_reference.ts";
import { GRAD_CPU_OPS } from "./grad_ops.ts";
import { denseReference } from "./dense_reference.ts";
import type { DenseAttentionArg } from "../../attention/baselines.ts";

/** What an op sees: its node, its inputs' values (in `node.inputs` order) and a per-realize memo. */
export interface CpuOpContext {
  readonly node: Tensor;
  readonly inputs: readonly TypedData[];
  /** Lookup of any already realized node's value (inputs are always realized first). */
  readonly valueOf: (t: Tensor) => TypedData;
  /** Shared across one realize: lets the two outputs of one fused call share one evaluation. */
  readonly memo: Map<unknown, unknown>;
}

export type CpuOp = (ctx: CpuOpContext) => TypedData;

function constOp({ node }: CpuOpContext): TypedData {
  return node.arg as TypedData;
}

/** One float64 evaluation per FlexCall per realize, converted to f32 as the GPU outputs are. */
function flexResult(ctx: CpuOpContext): { out: Float32Array; lse: Float32Array } {
  const call = ctx.node.arg as FlexCall;
  const hit = ctx.memo.get(call) as { out: Float32Array; lse: Float32Array } | undefined;
  if (hit) return hit;
  const m = call.blockMask;
  const v = ctx.valueOf;
  const r = flexReference(call, {
    q: v(call.q), k: v(call.k), v: v(call.v),
    scoreCaptures: (call.scoreMod.captures as Tensor[]).map(v),
    maskCaptures: (m.tracedMask.captures as Tensor[]).map(v),
  }, {
    kvNum: v(m.kvNumBlocks), kvIdx: v(m.kvIndices),
    fullNum: m.fullKvNumBlocks ? v(m.fullKvNumBlocks) : null,
    fullIdx: m.fullKvIndices ? v(m.fullKvIndices) : null,
  });
  const result = { out: Float32Array.from(r.out), lse: Float32Array.from(r.lse) };
  ctx.memo.set(call, result);
  return result;
}

function maskBlocksOp({ node, inputs }: CpuOpContext): TypedData {
  return maskBlockStatesCpu(node.arg as MaskBlocksArg, inputs);
}

/** The materialized-mask baseline (lib/attention/baselines.ts), inputs [q, k, v, mask?]. */
function denseAttentionOp({ node, inputs }: CpuOpContext): TypedData {
  const [q, k, v, mask] = inputs;
  return denseReference(node.arg as DenseAttentionArg, q, k, v, mask);
}

/** A device probe (lib/lower/probes.ts) measures hardware; on the CPU it has no meaningful value: zeros. */
function probeOp({ node }: CpuOpContext): TypedData {
  return new Float32Array(node.size);
}

export const CPU_OPS: Record<string, CpuOp> = {
  const: constOp,
  flexOut: (ctx) => flexResult(ctx).out,
  flexLse: (ctx) => flexResult(ctx).lse,
  maskBlocks: maskBlocksOp,
  denseAttention: denseAttentionOp,
  fmaProbe: probeOp,
  // the autodiff glue ops and flexGrad (their context is a structural subset of CpuOpContext)
  ...GRAD_CPU_OPS,
};
