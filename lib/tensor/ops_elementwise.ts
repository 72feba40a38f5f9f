/**
 * Elementwise tensor ops with NumPy / PyTorch broadcasting: arithmetic (`add sub mul div`), comparisons
 * (`eq ne lt le gt ge` → bool), logic on bool tensors (`and or not`), `where(cond, a, b)`, and the float
 * functions `exp log tanh`. Each is a pure node constructor; the node's shape is the broadcast shape and
 * its inputs are the operands themselves (the executors read them through broadcast strides).
 *
 * A JS number (or boolean) stands for a scalar (shape []) wherever a tensor operand is expected in a binary
 * or ternary op: it takes the other operand's dtype (an i32 tensor needs an integer), or f32 when no operand
 * is a tensor. Tensor operands must have the same dtype (convert with `cast`); arithmetic refuses bool.
 */
import { constant, type DType, Tensor } from "./tensor.ts";
import { fromValues, isFloatDType } from "./dtype.ts";
import { broadcastShapes } from "./shape.ts";
import { DTypeError, InvalidArgument } from "../errors.ts";

/**
 * A tensor operand, or a JS number / boolean standing for a scalar.
 *
 * @example
 * ```ts
 * import { add, randn, type TensorLike } from "@flex/attention";
 * const two: TensorLike = 2;
 * const y = add(randn([3]), two); // numbers broadcast like 0-d tensors
 * ```
 */
export type TensorLike = Tensor | number | boolean;

export type ArithOp = "add" | "sub" | "mul" | "div";
export type CompareOp = "eq" | "ne" | "lt" | "le" | "gt" | "ge";
export type LogicOp = "and" | "or";
export type FloatUnaryOp = "exp" | "log" | "tanh";

/** Every op of this file that is an elementwise node (the lowering and the CPU oracle key on them). */
export type ElementwiseTensorOp = ArithOp | CompareOp | LogicOp | FloatUnaryOp | "not" | "where";

function isScalarLike(x: unknown): x is number | boolean { return typeof x === "number" || typeof x === "boolean"; }

/** The operand as a Tensor: numbers become scalar constants of `dtype`. */
function liftTo(op: string, x: TensorLike, dtype: DType, name: string): Tensor {
  if (x instanceof Tensor) return x;
  const v = typeof x === "boolean" ? (x ? 1 : 0) : x;
  if (dtype === "i32" && (!Number.isInteger(v) || v < -2147483648 || v > 2147483647)) {
    throw new DTypeError({
      message: `${op}(): ${name} is the number ${v}, which is not an i32 value, but the other operand is an i32 tensor (cast it to "f32" first)`,
    });
  }
  return constant(fromValues(dtype, [v]), [], dtype);
}

/** The operands as tensors of one dtype (numbers lifted); InvalidArgument for anything else. */
export function operands(op: string, xs: readonly TensorLike[], names: readonly string[], scalarDtype: DType = "f32"): Tensor[] {
  xs.forEach((x, i) => {
    if (!(x instanceof Tensor) && !isScalarLike(x)) {
      throw new InvalidArgument({ message: `${op}(): ${names[i]} must be a Tensor or a number, got ${x === null ? "null" : typeof x}` });
    }
  });
  const first = xs.find((x): x is Tensor => x instanceof Tensor);
  const dtype = first?.dtype ?? scalarDtype;
  const ts = xs.map((x, i) => liftTo(op, x, dtype, names[i]));
  for (let i = 1; i < ts.length; i++) {
    if (ts[i].dtype !== ts[0].dtype) {
      throw new DTypeError({
        message: `${op}(): operands have dtypes ${ts.map((t) => t.dtype).join(" and ")}; they must match (convert one with cast(t, "${ts[0].dtype}"))`,
      });
    }
  }
  return ts;
}

function tensorOperand(op: string, x: unknown, name: string): Tensor {
  if (!(x instanceof Tensor)) throw new InvalidArgument({ message: `${op}(): ${name} must be a Tensor, got ${x === null ? "null" : typeof x}` });
  return x;
}

function node<O extends ElementwiseTensorOp>(op: O, inputs: Tensor[], dtype: DType): Tensor<O> {
  const shape = broadcastShapes(op, ...inputs.map((t) => t.shape));
  return new Tensor(op, inputs, shape, dtype, undefined as Tensor<O>["arg"]);
}

function arith(op: ArithOp, a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = operands(op, [a, b], ["the first operand", "the second operand"]);
  if (x.dtype === "bool") {
    throw new DTypeError({ message: `${op}(): arithmetic on bool tensors is not defined; cast them first (cast(t, "f32") or "i32"), or use and / or` });
  }
  if (op === "div" && !isFloatDType(x.dtype)) {
    throw new DTypeError({ message: `div(): true division needs f32 or f16 operands, got ${x.dtype} (cast(t, "f32") first)` });
  }
  return node(op, [x, y], x.dtype);
}

/**
 * Elementwise a + b (broadcasting).
 *
 * @example
 * ```ts
 * import { add, randn } from "@flex/attention";
 * const y = add(randn([2, 3]), randn([3])); // broadcasting, NumPy rules
 * ```
 */
export function add(a: TensorLike, b: TensorLike): Tensor { return arith("add", a, b); }
/**
 * Elementwise a − b (broadcasting).
 *
 * @example
 * ```ts
 * import { randn, sub } from "@flex/attention";
 * const y = sub(randn([2, 3]), 1);
 * ```
 */
export function sub(a: TensorLike, b: TensorLike): Tensor { return arith("sub", a, b); }
/**
 * Elementwise a · b (broadcasting).
 *
 * @example
 * ```ts
 * import { mul, randn } from "@flex/attention";
 * const y = mul(randn([4, 1]), randn([1, 5])); // [4, 5]
 * ```
 */
export function mul(a: TensorLike, b: TensorLike): Tensor { return arith("mul", a, b); }
/**
 * Elementwise a / b (broadcasting; f32 / f16: true division as torch.div).
 *
 * @example
 * ```ts
 * import { div, randn } from "@flex/attention";
 * const y = div(randn([3]), 2);
 * ```
 */
export function div(a: TensorLike, b: TensorLike): Tensor { return arith("div", a, b); }

function compare(op: CompareOp, a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = operands(op, [a, b], ["the first operand", "the second operand"]);
  return node(op, [x, y], "bool");
}

/**
 * a == b → bool (broadcasting).
 *
 * @example
 * ```ts
 * import { eq, tensor } from "@flex/attention";
 * await eq(tensor([1, 2]), 2).toArray(); // [0, 1]
 * ```
 */
export function eq(a: TensorLike, b: TensorLike): Tensor { return compare("eq", a, b); }
/**
 * a != b → bool.
 *
 * @example
 * ```ts
 * import { ne, tensor } from "@flex/attention";
 * await ne(tensor([1, 2]), 2).toArray(); // [1, 0]
 * ```
 */
export function ne(a: TensorLike, b: TensorLike): Tensor { return compare("ne", a, b); }
/**
 * a < b → bool.
 *
 * @example
 * ```ts
 * import { lt, tensor } from "@flex/attention";
 * await lt(tensor([1, 3]), 2).toArray(); // bool [1, 0] (stored as i32)
 * ```
 */
export function lt(a: TensorLike, b: TensorLike): Tensor { return compare("lt", a, b); }
/**
 * a <= b → bool.
 *
 * @example
 * ```ts
 * import { le, tensor } from "@flex/attention";
 * await le(tensor([1, 2]), 2).toArray(); // [1, 1]
 * ```
 */
export function le(a: TensorLike, b: TensorLike): Tensor { return compare("le", a, b); }
/**
 * a > b → bool.
 *
 * @example
 * ```ts
 * import { gt, tensor } from "@flex/attention";
 * await gt(tensor([1, 3]), 2).toArray(); // [0, 1]
 * ```
 */
export function gt(a: TensorLike, b: TensorLike): Tensor { return compare("gt", a, b); }
/**
 * a >= b → bool.
 *
 * @example
 * ```ts
 * import { ge, tensor } from "@flex/attention";
 * await ge(tensor([1, 2]), 2).toArray(); // [0, 1]
 * ```
 */
export function ge(a: TensorLike, b: TensorLike): Tensor { return compare("ge", a, b); }

function logic(op: LogicOp, a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = operands(op, [a, b], ["the first operand", "the second operand"], "bool");
  if (x.dtype !== "bool") throw new DTypeError({ message: `${op}(): needs bool tensors (e.g. from a comparison), got ${x.dtype}` });
  return node(op, [x, y], "bool");
}

/**
 * Logical a ∧ b of bool tensors (broadcasting).
 *
 * @example
 * ```ts
 * import { and, gt, lt, tensor } from "@flex/attention";
 * const x = tensor([0, 1, 2, 3]);
 * const inside = and(gt(x, 0), lt(x, 3)); // [0, 1, 1, 0]
 * ```
 */
export function and(a: TensorLike, b: TensorLike): Tensor { return logic("and", a, b); }
/**
 * Logical a ∨ b of bool tensors (broadcasting).
 *
 * @example
 * ```ts
 * import { gt, lt, or, tensor } from "@flex/attention";
 * const x = tensor([0, 1, 2, 3]);
 * const outside = or(lt(x, 1), gt(x, 2)); // [1, 0, 0, 1]
 * ```
 */
export function or(a: TensorLike, b: TensorLike): Tensor { return logic("or", a, b); }

/**
 * Logical ¬a of a bool tensor.
 *
 * @example
 * ```ts
 * import { gt, not, tensor } from "@flex/attention";
 * const small = not(gt(tensor([1, 5]), 2)); // [1, 0]
 * ```
 */
export function not(a: Tensor): Tensor {
  const x = tensorOperand("not", a, "the operand");
  if (x.dtype !== "bool") throw new DTypeError({ message: `not(): needs a bool tensor (e.g. from a comparison), got ${x.dtype}` });
  return node("not", [x], "bool");
}

function floatUnary(op: FloatUnaryOp, a: Tensor): Tensor {
  const x = tensorOperand(op, a, "the operand");
  if (!isFloatDType(x.dtype)) throw new DTypeError({ message: `${op}(): needs an f32 or f16 tensor, got ${x.dtype} (cast(t, "f32") first)` });
  return node(op, [x], x.dtype);
}

/**
 * eˣ elementwise (f32 / f16).
 *
 * @example
 * ```ts
 * import { exp, tensor } from "@flex/attention";
 * await exp(tensor([0, 1])).toArray(); // [1, 2.718…]
 * ```
 */
export function exp(a: Tensor): Tensor { return floatUnary("exp", a); }
/**
 * Natural log elementwise (f32 / f16).
 *
 * @example
 * ```ts
 * import { log, tensor } from "@flex/attention";
 * await log(tensor([1, Math.E])).toArray(); // [0, 1]
 * ```
 */
export function log(a: Tensor): Tensor { return floatUnary("log", a); }
/**
 * tanh elementwise (f32 / f16).
 *
 * @example
 * ```ts
 * import { tanh, randn } from "@flex/attention";
 * const y = tanh(randn([4]));
 * ```
 */
export function tanh(a: Tensor): Tensor { return floatUnary("tanh", a); }

/**
 * `whereTensor(cond, a, b)`: a where cond else b, elementwise with broadcasting over all three. `cond` is a
 * bool tensor; a and b share a dtype (a number takes the other's; both numbers: f32).
 */
export function whereTensor(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const c = tensorOperand("where", cond, "the condition");
  if (c.dtype !== "bool") throw new DTypeError({ message: `where(): the condition must be a bool tensor (e.g. ge(i, j)), got ${c.dtype}` });
  const [x, y] = operands("where", [a, b], ["the second argument", "the third argument"]);
  return node("where", [c, x, y], x.dtype);
}
