/**
 * The few lazy Tensor ops autodiff needs (cotangent arithmetic and scalar losses). Each is a pure node
 * constructor with its shape/dtype checks; the values are computed by the executors (CPU: lib/runtime/cpu/
 * grad_ops.ts). Broadcasting is deliberately minimal: equal shapes, or one operand a scalar (rank 0).
 *
 *   op          inputs        shape                arg
 *   add/sub/mul [a, b]        a's or b's (equal, or the non-scalar one)
 *   neg         [a]           a.shape
 *   mulScalar   [a]           a.shape              the JS number c
 *   sum         [a]           []                   (all elements, to a scalar)
 *   reshape     [a]           arg                  the new shape (same size)
 *   expand      [s]           arg                  the shape a scalar is broadcast to
 *   cast        [a]           a.shape              (the node's dtype: f16 ⇄ f32)
 */
import { type DType, Tensor } from "./tensor.ts";
import { checkDType } from "./dtype.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

/** The op names this file builds (the executors and the autodiff rule table key on them). */
export type GradTensorOp = "add" | "sub" | "mul" | "neg" | "mulScalar" | "sum" | "reshape" | "expand" | "cast";

function sizeOf(shape: readonly number[]): number { return shape.reduce((a, b) => a * b, 1); }

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function tensorArg(op: string, x: unknown, name: string): Tensor {
  if (!(x instanceof Tensor)) throw new InvalidArgument({ message: `${op}(): ${name} must be a Tensor` });
  return x;
}

function binary(op: "add" | "sub" | "mul", a: Tensor, b: Tensor): Tensor {
  tensorArg(op, a, "the first operand"); tensorArg(op, b, "the second operand");
  if (a.dtype !== b.dtype) {
    throw new DTypeError({ message: `${op}(): operands have dtypes ${a.dtype} and ${b.dtype}; they must match` });
  }
  let shape: readonly number[];
  if (sameShape(a.shape, b.shape)) shape = a.shape;
  else if (a.rank === 0) shape = b.shape;
  else if (b.rank === 0) shape = a.shape;
  else {
    throw new ShapeError({
      message: `${op}(): shapes [${a.shape}] and [${b.shape}] differ; operands must have the same shape or one must be a scalar (shape [])`,
    });
  }
  return new Tensor(op, [a, b], [...shape], a.dtype, undefined);
}

/** Elementwise a + b (same shape, or one a scalar). */
export function add(a: Tensor, b: Tensor): Tensor { return binary("add", a, b); }
/** Elementwise a − b (same shape, or one a scalar). */
export function sub(a: Tensor, b: Tensor): Tensor { return binary("sub", a, b); }
/** Elementwise a · b (same shape, or one a scalar). */
export function mul(a: Tensor, b: Tensor): Tensor { return binary("mul", a, b); }

/** −a. */
export function neg(a: Tensor): Tensor {
  tensorArg("neg", a, "the operand");
  return new Tensor("neg", [a], [...a.shape], a.dtype, undefined);
}

/** a · c for a JS number c (finite). */
export function mulScalar(a: Tensor, c: number): Tensor {
  tensorArg("mulScalar", a, "the operand");
  if (typeof c !== "number" || !Number.isFinite(c)) {
    throw new InvalidArgument({ message: `mulScalar(): the factor must be a finite number, got ${c}` });
  }
  return new Tensor("mulScalar", [a], [...a.shape], a.dtype, c);
}

/** The sum of all elements, a scalar (shape []). */
export function sum(a: Tensor): Tensor {
  tensorArg("sum", a, "the operand");
  return new Tensor("sum", [a], [], a.dtype, undefined);
}

/** The same elements, row-major, in a new shape of the same size. */
export function reshape(a: Tensor, shape: readonly number[]): Tensor {
  tensorArg("reshape", a, "the operand");
  if (sizeOf(shape) !== a.size || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError({ message: `reshape(): cannot reshape [${a.shape}] (${a.size} elements) to [${shape}]` });
  }
  return new Tensor("reshape", [a], [...shape], a.dtype, [...shape]);
}

/** A scalar (shape []) broadcast to `shape`. */
export function expand(s: Tensor, shape: readonly number[]): Tensor {
  tensorArg("expand", s, "the operand");
  if (s.rank !== 0) throw new ShapeError({ message: `expand(): only a scalar (shape []) can be expanded, got [${s.shape}]` });
  return new Tensor("expand", [s], [...shape], s.dtype, [...shape]);
}

/** `a` converted to `dtype` (f16 ⇄ f32; f16 rounds to nearest even). The same dtype returns `a` itself. */
export function cast(a: Tensor, dtype: DType): Tensor {
  tensorArg("cast", a, "the operand");
  const to = checkDType(dtype, "cast()");
  if (to === a.dtype) return a;
  if (to === "i32" || a.dtype === "i32") {
    throw new DTypeError({ message: `cast(): only f16 ⇄ f32 conversions are supported, got ${a.dtype} → ${to}` });
  }
  return new Tensor("cast", [a], [...a.shape], to, undefined);
}
