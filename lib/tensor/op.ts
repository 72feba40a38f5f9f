/**
 * The typed op registry's key: `OpArgs` maps every Tensor op to the type of its `arg`. This layer declares
 * its own ops; each layer above adds the ops it builds by augmenting the interface where it defines them
 * (`declare module "../tensor/op.ts" { interface OpArgs { flexOut: FlexCall } }`), so imports still point
 * down and the op set is still one closed type.
 *
 * Every table over ops (the CPU oracle's rules, the lowering, the vjp rules) is written
 * `satisfies { [O in Op]: Rule<O> }`: the compiler refuses a table that misses an op, and inside an entry
 * `node.arg` has that op's type (no casts).
 */
import type { TypedData } from "./dtype.ts";

/** A scalar-FMA probe's size (bench/probe kernels: the value measures hardware, not math). */
export interface FmaProbeArg {
  readonly workgroups: number;
  readonly iters: number;
}

/**
 * The Tensor op registry: each op's `arg` type (internal; layers above add their ops).
 * @ignore
 */
export interface OpArgs {
  /** Data held in the node. */
  const: TypedData;
  add: undefined;
  sub: undefined;
  mul: undefined;
  neg: undefined;
  /** The JS number c of a · c. */
  mulScalar: number;
  /** All elements to a scalar. */
  sum: undefined;
  /** The new shape (same size). */
  reshape: readonly number[];
  /** The shape a scalar is broadcast to. */
  expand: readonly number[];
  /** A dtype conversion (f16 ⇄ f32): the node's own dtype is the target. */
  cast: undefined;
  /** lib/lower/probes.ts: FMA throughput probe. */
  fmaProbe: FmaProbeArg;

  // the tensor ops users write attention with (lib/tensor/ops_*.ts); elementwise ops broadcast their inputs
  // to the node's shape (NumPy rules), so they carry no arg
  div: undefined;
  exp: undefined;
  log: undefined;
  tanh: undefined;
  /** Comparisons: bool results. */
  eq: undefined;
  ne: undefined;
  lt: undefined;
  le: undefined;
  gt: undefined;
  ge: undefined;
  /** Logical ops on bool tensors. */
  and: undefined;
  or: undefined;
  not: undefined;
  /** inputs [cond (bool), a, b]. */
  where: undefined;
  /** Reductions over `dims` (sorted, non-negative). */
  sumDim: ReduceArg;
  maxDim: ReduceArg;
  logsumexp: ReduceArg;
  /** Batched a @ b (batch dims broadcast). */
  matmul: undefined;
  /** The two (non-negative) dims swapped. */
  transpose: readonly [number, number];
  /** PyTorch `Tensor.repeat(*sizes)`: the repeat count of each output dim (input right-aligned). */
  repeat: readonly number[];
  repeatInterleave: RepeatInterleaveArg;
  /** torch.gather along the (non-negative) dim; inputs [t, index]. */
  gather: number;
  /** gather's adjoint: inputs [src, index] summed into a zero tensor of the node's shape along the dim. */
  scatterAdd: number;
}

/** A reduction's dims (sorted, distinct, non-negative) and whether they stay as size-1 dims. */
export interface ReduceArg {
  readonly dims: readonly number[];
  readonly keepdim: boolean;
}

/** Each element repeated `repeats` times along `dim` (non-negative). */
export interface RepeatInterleaveArg {
  readonly repeats: number;
  readonly dim: number;
}

/**
 * The name of a Tensor op (`const`, `add`, `matmul`, `flexOut`, …): `tensor.op`.
 *
 * @example
 * ```ts
 * import { randn, mulScalar, type TensorOp } from "@flex/attention";
 * const op: TensorOp = mulScalar(randn([2]), 3).op; // "mulScalar"
 * ```
 */
export type Op = keyof OpArgs;
