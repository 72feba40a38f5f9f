/**
 * CPU implementations of the autodiff ops (lib/tensor/ops.ts and lib/passes/flex_grad.ts; the broadcasting
 * add / sub / mul / expand are in tensor_ops.ts with the other elementwise ops), in the CPU
 * executor's table shape (lib/runtime/cpu/ops.ts `CpuOp`: `(ctx) => TypedData`, inputs in `node.inputs`
 * order, `memo` shared across one realize). Merge with `Object.assign(CPU_OPS, GRAD_CPU_OPS)`.
 *
 * Arithmetic runs in float64 and is stored as f32 (as the GPU does). All flexGrad nodes of one backward
 * share a single float64 evaluation through the memo.
 */
import type { Op, Tensor, TypedData } from "../../tensor/tensor.ts";
import type { GradTensorOp } from "../../tensor/ops.ts";
import { flexBwdLayout, packedLayout } from "../../passes/flex_grad.ts";
import { flexReferenceBwd, type FlexBwdResult } from "./flex_reference_bwd.ts";
import { fromValues } from "../../tensor/dtype.ts";

/** What a grad op reads of the executor's context (a structural subset of ops.ts's CpuOpContext). */
export interface GradOpContext<O extends Op = Op> {
  readonly node: Tensor<O>;
  readonly inputs: readonly TypedData[];
  readonly memo: Map<unknown, unknown>;
}

export type GradCpuOp<O extends Op = Op> = (ctx: GradOpContext<O>) => TypedData;

function unary<O extends Op>(f: (x: number, node: Tensor<O>) => number): GradCpuOp<O> {
  return ({ node, inputs }) => {
    const out = new Float64Array(node.size);
    const a = inputs[0];
    for (let i = 0; i < out.length; i++) out[i] = f(a[i], node);
    return fromValues(node.dtype, out);
  };
}

function flexBackward(ctx: GradOpContext<"flexGrad">): FlexBwdResult {
  const { bwd } = ctx.node.arg;
  const hit = ctx.memo.get(bwd) as FlexBwdResult | undefined;
  if (hit) return hit;
  const L = flexBwdLayout(bwd);
  const x = ctx.inputs;
  const nScore = bwd.call.scoreMod.captures.length;
  const nMask = bwd.call.blockMask.tracedMask.captures.length;
  const result = flexReferenceBwd(bwd.call, {
    q: x[L.q], k: x[L.k], v: x[L.v],
    dOut: x[L.dOut], dLse: L.dLse >= 0 ? x[L.dLse] : null,
    scoreCaptures: x.slice(L.scoreCaptures, L.scoreCaptures + nScore),
    maskCaptures: x.slice(L.maskCaptures, L.maskCaptures + nMask),
  }, {
    kvNum: x[L.kvNum], kvIdx: x[L.kvIdx],
    fullNum: L.fullNum >= 0 ? x[L.fullNum] : null,
    fullIdx: L.fullIdx >= 0 ? x[L.fullIdx] : null,
  });
  ctx.memo.set(bwd, result);
  return result;
}

function flexGradOp(ctx: GradOpContext<"flexGrad">): TypedData {
  const r = flexBackward(ctx);
  const { which } = ctx.node.arg;
  if (which === "packed") {
    // every gradient in the packed layout (lib/passes/flex_grad.ts), as the GPU's packed node holds them
    const layout = packedLayout(ctx.node.arg.bwd.call);
    const out = new Float32Array(layout.total);
    out.set(r.dq, layout.dq); out.set(r.dk, layout.dk); out.set(r.dv, layout.dv);
    layout.caps.forEach((off, slot) => { if (off !== null && r.dScoreCaptures[slot]) out.set(r.dScoreCaptures[slot]!, off); });
    return out;
  }
  if (which === "dq") return Float32Array.from(r.dq);
  if (which === "dk") return Float32Array.from(r.dk);
  if (which === "dv") return Float32Array.from(r.dv);
  return Float32Array.from(r.dScoreCaptures[Number(which.slice(5))]!);
}

export const GRAD_CPU_OPS = {
  neg: unary((x) => -x),
  mulScalar: unary<"mulScalar">((x, node) => x * node.arg),
  sum: ({ node, inputs }) => {
    let s = 0;
    for (let i = 0; i < inputs[0].length; i++) s += inputs[0][i];
    return fromValues(node.dtype, [s]);
  },
  reshape: ({ node, inputs }) => fromValues(node.dtype, inputs[0]),
  // f16 ⇄ f32: the values themselves; storing rounds to binary16 when the target is f16
  cast: ({ node, inputs }) => fromValues(node.dtype, inputs[0]),
  flexGrad: flexGradOp,
  // one gradient read out of its packed node (an f16 part rounds, as a cast would)
  flexGradPart: ({ node, inputs }) => {
    const part = inputs[0].slice(node.arg.offset, node.arg.offset + node.size) as TypedData;
    return node.dtype === "f32" ? part : fromValues(node.dtype, part);
  },
} satisfies { readonly [O in Exclude<GradTensorOp, "add" | "sub" | "mul" | "expand"> | "flexGrad" | "flexGradPart"]: GradCpuOp<O> };
