/**
 * The few lazy Tensor ops autodiff needs (cotangent arithmetic and scalar losses). Each is a pure node
 * constructor with its shape/dtype checks; the values are computed by the executors (CPU: lib/runtime/cpu/
 * grad_ops.ts and tensor_ops.ts). add / sub / mul live in ops_elementwise.ts (NumPy broadcasting) and are
 * re-exported here; expand follows PyTorch's rules (a scalar expands to any shape).
 *
 *   op          inputs        shape                arg
 *   add/sub/mul [a, b]        the broadcast shape
 *   neg         [a]           a.shape
 *   mulScalar   [a]           a.shape              the JS number c
 *   sum         [a]           []                   (all elements, to a scalar)
 *   reshape     [a]           arg                  the new shape (same size; one −1 is inferred)
 *   expand      [s]           arg                  the shape s is broadcast to (size-1 / new leading dims)
 *   cast        [a]           a.shape              (the node's dtype: f16 ⇄ f32, i32 / bool → float, bool → i32)
 */
import { type DType, Tensor } from "./tensor.ts";
import { checkDType, isFloatDType } from "./dtype.ts";
import { DTypeError, InvalidArgument } from "../errors.ts";
import { expandShape, reshapeTarget } from "./shape.ts";

export { add, mul, sub } from "./ops_elementwise.ts";

/** The op names this file builds (the executors and the autodiff rule table key on them). */
export type GradTensorOp = "add" | "sub" | "mul" | "neg" | "mulScalar" | "sum" | "reshape" | "expand" | "cast";

function tensorArg(op: string, x: unknown, name: string): Tensor {
  if (!(x instanceof Tensor)) throw new InvalidArgument({ message: `${op}(): ${name} must be a Tensor` });
  return x;
}

/**
 * −a.
 *
 * @example
 * ```ts
 * import { neg, tensor } from "@flex/attention";
 * await neg(tensor([1, -2])).toArray(); // [-1, 2]
 * ```
 */
export function neg(a: Tensor): Tensor {
  tensorArg("neg", a, "the operand");
  noBool("neg", a);
  return new Tensor("neg", [a], [...a.shape], a.dtype, undefined);
}

/**
 * a · c for a JS number c (finite).
 *
 * @example
 * ```ts
 * import { mulScalar, tensor } from "@flex/attention";
 * await mulScalar(tensor([1, 2]), 3).toArray(); // [3, 6]
 * ```
 */
export function mulScalar(a: Tensor, c: number): Tensor {
  tensorArg("mulScalar", a, "the operand");
  noBool("mulScalar", a);
  if (typeof c !== "number" || !Number.isFinite(c)) {
    throw new InvalidArgument({ message: `mulScalar(): the factor must be a finite number, got ${c}` });
  }
  return new Tensor("mulScalar", [a], [...a.shape], a.dtype, c);
}

/** The sum of all elements, a scalar (shape []); a bool tensor's sum (its count of true) is i32. */
export function sum(a: Tensor): Tensor {
  tensorArg("sum", a, "the operand");
  return new Tensor("sum", [a], [], a.dtype === "bool" ? "i32" : a.dtype, undefined);
}

/**
 * The same elements, row-major, in a new shape of the same size (one dim may be −1: inferred).
 *
 * @example
 * ```ts
 * import { arange, reshape } from "@flex/attention";
 * const m = reshape(arange(6), [2, 3]);
 * ```
 */
export function reshape(a: Tensor, shape: readonly number[]): Tensor {
  tensorArg("reshape", a, "the operand");
  const to = reshapeTarget("reshape", a.shape, shape);
  return new Tensor("reshape", [a], to, a.dtype, to);
}

/**
 * `a` broadcast to `shape` (PyTorch's expand: new leading dims, size-1 dims stretch, −1 keeps a dim);
 * a scalar (shape []) expands to any shape.
 *
 * @example
 * ```ts
 * import { expand, tensor } from "@flex/attention";
 * const rows = expand(tensor([5]), [2, 3]); // [1] broadcast to [2, 3]
 * ```
 */
export function expand(a: Tensor, shape: readonly number[]): Tensor {
  tensorArg("expand", a, "the operand");
  const to = expandShape("expand", a.shape, shape);
  return new Tensor("expand", [a], to, a.dtype, to);
}

/**
 * `a` converted to `dtype`: f16 ⇄ f32 (f16 rounds to nearest even), i32 / bool → f32 / f16, bool → i32
 * (true = 1). Float → integer is refused (use a comparison or round explicitly). The same dtype returns `a`.
 *
 * @example
 * ```ts
 * import { cast, randn } from "@flex/attention";
 * const h = cast(randn([4]), "f16");
 * ```
 */
export function cast(a: Tensor, dtype: DType): Tensor {
  tensorArg("cast", a, "the operand");
  const to = checkDType(dtype, "cast()");
  if (to === a.dtype) return a;
  const ok = isFloatDType(to) || (to === "i32" && a.dtype === "bool");
  if (!ok) {
    throw new DTypeError({
      message: `cast(): ${a.dtype} → ${to} is not supported (supported: f16 ⇄ f32, i32 / bool → f32 / f16, bool → i32; ` +
        `for a bool from numbers use a comparison such as ne(t, 0))`,
    });
  }
  return new Tensor("cast", [a], [...a.shape], to, undefined);
}

function noBool(op: string, a: Tensor): void {
  if (a.dtype === "bool") throw new DTypeError({ message: `${op}(): arithmetic on a bool tensor is not defined; cast it first (cast(t, "f32"))` });
}
