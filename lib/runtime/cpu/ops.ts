/**
 * The CPU executor's dispatch table: one entry per Tensor op, total over the op registry
 * (`satisfies CpuOpTable`: the compiler refuses a missing op; each entry sees its own `node.arg` type).
 * Tests may pass a table with some entries wrapped (`{ ...CPU_OPS, flexOut: … }`).
 */
import type { Op, Tensor, TypedData } from "../../tensor/tensor.ts";
import type { FlexCall } from "../../attention/flex_attention.ts";
import { maskBlockStatesCpu } from "../../blockmask/mask_blocks.ts";
import { blockTablesCpu } from "../../blockmask/block_tables.ts";
import { flexReference } from "./flex_reference.ts";
import { GRAD_CPU_OPS } from "./grad_ops.ts";
import { TENSOR_CPU_OPS } from "./tensor_ops.ts";
import { denseReference } from "./dense_reference.ts";
import { toF16Data } from "../../tensor/dtype.ts";
import { progress } from "../progress.ts";
import type { MaskBlocksArg } from "../../blockmask/mask_blocks.ts";

/** A progress bar (on a terminal only) for a CPU mask build of more than 2^28 entries (seconds of work), else none. */
function bigMaskProgress(a: MaskBlocksArg): ((done: number, total: number) => void) | undefined {
  if (a.B * a.H * a.qLen * a.kvLen <= 2 ** 28) return undefined;
  let bar: ReturnType<typeof progress> | undefined;
  return (done, total) => {
    bar ??= progress(`createBlockMask ${a.qLen}×${a.kvLen}`, total);
    if (done % 16 === 0 || done === total) bar.update(done);
  };
}

/** What an op sees: its node, its inputs' values (in `node.inputs` order) and a per-realize memo. */
export interface CpuOpContext<O extends Op = Op> {
  readonly node: Tensor<O>;
  readonly inputs: readonly TypedData[];
  /** Lookup of any already realized node's value (inputs are always realized first). */
  readonly valueOf: (t: Tensor) => TypedData;
  /** Shared across one realize: lets the two outputs of one fused call share one evaluation. */
  readonly memo: Map<unknown, unknown>;
}

export type CpuOp<O extends Op = Op> = (ctx: CpuOpContext<O>) => TypedData;

/** A complete table: one rule per op of the registry. */
export type CpuOpTable = { readonly [O in Op]: CpuOp<O> };

/**
 * One float64 evaluation per FlexCall per realize, stored as the GPU stores it: out in the inputs' dtype
 * (f16 inputs → f16 out), lse f32. The oracle reads the f16 values themselves.
 */
function flexResult(ctx: CpuOpContext<"flexOut" | "flexLse" | "flexMaxScore">): { out: TypedData; lse: Float32Array; maxScore: Float32Array } {
  const call: FlexCall = ctx.node.arg;
  const hit = ctx.memo.get(call) as { out: TypedData; lse: Float32Array; maxScore: Float32Array } | undefined;
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
  const out = call.q.dtype === "f16" ? toF16Data(r.out) : Float32Array.from(r.out);
  const result = { out, lse: Float32Array.from(r.lse), maxScore: Float32Array.from(r.maxScore) };
  ctx.memo.set(call, result);
  return result;
}

export const CPU_OPS = {
  const: ({ node }) => node.arg,
  flexOut: (ctx) => flexResult(ctx).out,
  flexLse: (ctx) => flexResult(ctx).lse,
  flexMaxScore: (ctx) => flexResult(ctx).maxScore,
  maskBlocks: ({ node, inputs }) => maskBlockStatesCpu(node.arg, inputs, bigMaskProgress(node.arg)),
  blockTables: ({ node, inputs }) => blockTablesCpu(node.arg, inputs[0]),
  // the materialized-mask baseline (lib/attention/baselines.ts), inputs [q, k, v, mask?]
  denseAttention: ({ node, inputs }) => denseReference(node.arg, inputs[0], inputs[1], inputs[2], inputs[3]),
  // a device probe measures hardware; on the CPU it has no meaningful value: zeros
  fmaProbe: ({ node }) => new Float32Array(node.size),
  // the autodiff glue ops, cast and flexGrad
  ...GRAD_CPU_OPS,
  // the tensor ops (broadcasting elementwise, reductions, matmul, copies)
  ...TENSOR_CPU_OPS,
} satisfies CpuOpTable;
