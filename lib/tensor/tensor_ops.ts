/**
 * The tensor ops users write attention with, in one import (mod.ts re-exports them), and `TensorOp`: the
 * names of the ops they build beyond the autodiff glue of ops.ts (the CPU oracle, the lowering and the
 * vjp rules of these ops key on it).
 */
import type { ElementwiseTensorOp } from "./ops_elementwise.ts";

export type TensorOp =
  | ElementwiseTensorOp
  | "sumDim" | "maxDim" | "logsumexp"
  | "matmul"
  | "transpose" | "repeat" | "repeatInterleave" | "gather" | "scatterAdd";

export { and, div, eq, exp, ge, gt, le, log, lt, ne, not, or, tanh, type TensorLike } from "./ops_elementwise.ts";
export { logsumexp, max, type ReduceOptions, softmax, sum, sumToShape } from "./ops_reduce.ts";
export { matmul } from "./ops_matmul.ts";
export { gather, repeat, repeatInterleave, scatterAdd, transpose } from "./ops_shape.ts";
export { where } from "./dispatch.ts";
