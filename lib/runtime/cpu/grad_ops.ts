/**
 * CPU implementations of the autodiff ops (lib/tensor/ops.ts and lib/passes/flex_grad.ts), in the CPU
 * executor's table shape (lib/runtime/cpu/ops.ts `CpuOp`: `(ctx) => TypedData`, inputs in `node.inputs`
 * order, `memo` shared across one realize). Merge with `Object.assign(CPU_OPS, GRAD_CPU_OPS)`.
 *
 * Arithmetic runs in float64 and is stored as f32 (as the GPU does). All flexGrad nodes of one backward
 * share a single float64 evaluation through the memo.
 */
import type { Tensor, TypedData } from "../../tensor/tensor.ts";
import type { GradTensorOp } from "../../tensor/ops.ts";
import { type FlexGradArg, flexBwdLayout } from "../../passes/flex_grad.ts";
import { flexReferenceBwd, type FlexBwdResult } from "./flex_reference_bwd.ts";

/** What a grad op reads of the executor's context (a structural subset of ops.ts's CpuOpContext). */
export interface GradOpContext {
  readonly node: Tensor;
  readonly inputs: readonly TypedData[];
  readonly memo: Map<unknown, unknown>;
}

export type GradCpuOp = (ctx: GradOpContext) => TypedData;

function alloc(node: Tensor): TypedData {
  return node.dtype === "i32" ? new Int32Array(node.size) : new Float32Array(node.size);
}

/** Elementwise with scalar broadcast: a rank-0 operand is read at index 0. */
function elementwise(f: (x: number, y: number) => number): GradCpuOp {
  return ({ node, inputs }) => {
    const [a, b] = inputs;
    const out = alloc(node);
    const sa = a.length === 1 && node.inputs[0].rank === 0 ? 0 : 1;
    const sb = b.length === 1 && node.inputs[1].rank === 0 ? 0 : 1;
    for (let i = 0; i < out.length; i++) out[i] = f(a[i * sa], b[i * sb]);
    return out;
  };
}

function unary(f: (x: number, node: Tensor) => number): GradCpuOp {
  return ({ node, inputs }) => {
    const out = alloc(node);
    const a = inputs[0];
    for (let i = 0; i < out.length; i++) out[i] = f(a[i], node);
    return out;
  };
}

function flexBackward(ctx: GradOpContext): FlexBwdResult {
  const { bwd } = ctx.node.arg as FlexGradArg;
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

function flexGradOp(ctx: GradOpContext): TypedData {
  const r = flexBackward(ctx);
  const { which } = ctx.node.arg as FlexGradArg;
  if (which === "dq") return Float32Array.from(r.dq);
  if (which === "dk") return Float32Array.from(r.dk);
  if (which === "dv") return Float32Array.from(r.dv);
  return Float32Array.from(r.dScoreCaptures[Number(which.slice(5))]!);
}

export const GRAD_CPU_OPS: Record<GradTensorOp | "flexGrad", GradCpuOp> = {
  add: elementwise((x, y) => x + y),
  sub: elementwise((x, y) => x - y),
  mul: elementwise((x, y) => x * y),
  neg: unary((x) => -x),
  mulScalar: unary((x, node) => x * (node.arg as number)),
  sum: ({ node, inputs }) => {
    let s = 0;
    for (const v of inputs[0]) s += v;
    const out = alloc(node);
    out[0] = s;
    return out;
  },
  reshape: ({ inputs }) => inputs[0].slice() as TypedData,
  expand: ({ node, inputs }) => alloc(node).fill(inputs[0][0]) as TypedData,
  flexGrad: flexGradOp,
};
