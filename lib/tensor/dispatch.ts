/**
 * Names shared by the mod language (lib/ir/expr.ts) and the tensor ops: the exported function picks by its
 * arguments. `where(cond, a, b)` with any Tensor argument is the tensor op (ops_elementwise.ts); with
 * symbolic scalars / numbers only (inside a mod) it is the IR node.
 */
import { type Expr, type Scalar, where as whereExpr } from "../ir/expr.ts";
import { Tensor } from "./tensor.ts";
import { type TensorLike, whereTensor } from "./ops_elementwise.ts";

/**
 * Tensors: elementwise a where cond else b (broadcasting). Inside a mod: the symbolic select.
 *
 * @example
 * ```ts
 * import { gt, randn, where } from "@flex/attention";
 * const x = randn([4]);
 * const relu = where(gt(x, 0), x, 0); // Tensors: elementwise (in a mod: where(q.ge(kv), score, -Infinity))
 * ```
 */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor;
/** Inside a mod: a if cond else b (symbolic). */
export function where(cond: Scalar, a: Scalar, b: Scalar): Expr;
export function where(cond: Tensor | Scalar, a: TensorLike | Scalar, b: TensorLike | Scalar): Tensor | Expr {
  if (cond instanceof Tensor || a instanceof Tensor || b instanceof Tensor) {
    return whereTensor(cond as Tensor, a as TensorLike, b as TensorLike);
  }
  return whereExpr(cond, a, b);
}
