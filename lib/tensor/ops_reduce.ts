/**
 * Reductions over dims, PyTorch's signatures in camelCase:
 *
 *   sum(t)                          all elements → a scalar (shape []): today's `sum` op
 *   sum(t, dim, { keepdim })        over dim (a number or an array of dims)        op sumDim
 *   max(t, dim, { keepdim })        the values of torch.amax / torch.max(dim)[0]   op maxDim
 *   logsumexp(t, dim, { keepdim })  log Σ exp, stable (±∞ rows give ±∞)            op logsumexp
 *   softmax(t, dim)                 composite: exp(t − max) / Σ exp(t − max)
 *
 * Only `max`'s values are returned (no indices); its gradient is split evenly among tied maxima
 * (torch.amax's rule), which stays deterministic and is what the composite softmax needs.
 */
import { type DType, Tensor } from "./tensor.ts";
import type { ReduceArg } from "./op.ts";
import { isFloatDType } from "./dtype.ts";
import { normDims, sameShape } from "./shape.ts";
import { sum as sumAll, reshape } from "./ops.ts";
import { div, exp, sub } from "./ops_elementwise.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

/**
 * Options of the reductions over dims (`sum`, `max`, `logsumexp`).
 *
 * @example
 * ```ts
 * import { randn, sum } from "@flex/attention";
 * const s = sum(randn([2, 3]), 1, { keepdim: true }); // [2, 1]
 * ```
 */
export interface ReduceOptions {
  /** Keep each reduced dim as a size-1 dim (PyTorch's keepdim). Default false. */
  readonly keepdim?: boolean;
}

export type ReduceOp = "sumDim" | "maxDim" | "logsumexp";

function operand(op: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) throw new InvalidArgument({ message: `${op}(): the operand must be a Tensor, got ${t === null ? "null" : typeof t}` });
  return t;
}

function keepdimOf(op: string, options: ReduceOptions | undefined): boolean {
  const k = options?.keepdim ?? false;
  if (typeof k !== "boolean") throw new InvalidArgument({ message: `${op}(): keepdim must be a boolean, got ${typeof k}` });
  return k;
}

/** The shape after reducing `arg.dims` of `shape`. */
export function reducedShape(shape: readonly number[], arg: ReduceArg): number[] {
  const out: number[] = [];
  shape.forEach((n, d) => {
    if (!arg.dims.includes(d)) out.push(n);
    else if (arg.keepdim) out.push(1);
  });
  return out;
}

function reduceNode(op: ReduceOp, name: string, t: Tensor, dim: number | readonly number[], options: ReduceOptions | undefined, dtype: DType): Tensor {
  if (dim === undefined || dim === null) throw new InvalidArgument({ message: `${name}(): dim is required` });
  const arg: ReduceArg = { dims: normDims(name, dim, t.rank), keepdim: keepdimOf(name, options) };
  if (op !== "sumDim" && arg.dims.some((d) => t.shape[d] === 0)) {
    throw new ShapeError({ message: `${name}(): cannot reduce an empty dim (shape [${t.shape}], dim ${dim}): the result has no identity` });
  }
  return new Tensor(op, [t], reducedShape(t.shape, arg), dtype, arg);
}

/**
 * `sum(t)`: all elements to a scalar. `sum(t, dim, { keepdim })`: over `dim` (a number or an array; negative
 * dims count from the end). A bool tensor sums (counts) to i32.
 *
 * @example
 * ```ts
 * import { randn, sum } from "@flex/attention";
 * const total = sum(randn([2, 3]));   // scalar
 * const rows = sum(randn([2, 3]), 1); // [2]
 * ```
 */
export function sum(t: Tensor, dim?: number | readonly number[], options?: ReduceOptions): Tensor {
  const x = operand("sum", t);
  if (dim === undefined) return sumAll(x);
  return reduceNode("sumDim", "sum", x, dim, options, x.dtype === "bool" ? "i32" : x.dtype);
}

/**
 * The maximum over `dim` (torch.amax; values only). f32 / f16 / i32.
 *
 * @example
 * ```ts
 * import { max, randn } from "@flex/attention";
 * const m = max(randn([2, 3]), -1); // [2]
 * ```
 */
export function max(t: Tensor, dim: number | readonly number[], options?: ReduceOptions): Tensor {
  const x = operand("max", t);
  if (x.dtype === "bool") throw new DTypeError({ message: `max(): needs an f32, f16 or i32 tensor, got bool (use or / sum instead)` });
  return reduceNode("maxDim", "max", x, dim, options, x.dtype);
}

/**
 * log Σ exp over `dim`, computed stably (max-shifted). f32 / f16.
 *
 * @example
 * ```ts
 * import { logsumexp, randn } from "@flex/attention";
 * const l = logsumexp(randn([2, 3]), 1); // [2], log Σ exp, stable
 * ```
 */
export function logsumexp(t: Tensor, dim: number | readonly number[], options?: ReduceOptions): Tensor {
  const x = operand("logsumexp", t);
  if (!isFloatDType(x.dtype)) throw new DTypeError({ message: `logsumexp(): needs an f32 or f16 tensor, got ${x.dtype}` });
  return reduceNode("logsumexp", "logsumexp", x, dim, options, x.dtype);
}

/**
 * softmax over one dim: exp(t − max(t)) / Σ exp(t − max(t)), built from max / sub / exp / sum / div.
 *
 * @example
 * ```ts
 * import { randn, softmax } from "@flex/attention";
 * const p = softmax(randn([2, 5]), -1); // rows sum to 1
 * ```
 */
export function softmax(t: Tensor, dim: number): Tensor {
  const x = operand("softmax", t);
  if (!isFloatDType(x.dtype)) throw new DTypeError({ message: `softmax(): needs an f32 or f16 tensor, got ${x.dtype}` });
  if (typeof dim !== "number") throw new InvalidArgument({ message: `softmax(): dim must be one integer, got ${typeof dim}` });
  const e = exp(sub(x, max(x, dim, { keepdim: true })));
  return div(e, sum(e, dim, { keepdim: true }));
}

/**
 * Sums `g` down to `shape` (the adjoint of broadcasting): leading dims and dims where `shape` has 1 are
 * summed; a scalar target takes the sum of everything. `g` itself when nothing is broadcast.
 */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  if (shape.length === 0) return sumAll(g);
  const lead = g.rank - shape.length;
  if (lead < 0) throw new ShapeError({ message: `sumToShape: [${g.shape}] cannot be summed to the larger rank of [${shape}]` });
  const dims: number[] = [];
  for (let d = 0; d < g.rank; d++) {
    if (d < lead) dims.push(d);
    else if (shape[d - lead] === 1 && g.shape[d] !== 1) dims.push(d);
    else if (shape[d - lead] !== g.shape[d]) throw new ShapeError({ message: `sumToShape: [${g.shape}] does not broadcast from [${shape}]` });
  }
  const s = dims.length ? new Tensor("sumDim", [g], reducedShape(g.shape, { dims, keepdim: false }), g.dtype, { dims, keepdim: false }) : g;
  return sameShape(s.shape, shape) ? s : reshape(s, shape);
}
