/** Document masking: packed sequences where tokens only see tokens of their own document. */
import type { Expr } from "../../ir/expr.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import type { MaskMod } from "../trace.ts";
import { named } from "../named.ts";
import { asTensor } from "./captures.ts";

/**
 * `documentMask(docIds)`: keeps docIds[q] == docIds[kv]. `docIds` is an i32 tensor (or array) [S] giving each
 * token's document. Not causal by itself: compose, e.g. `andMasks(causalMask, documentMask(ids))`.
 * The ids are captured, so new ids of the same length reuse the same kernel.
 */
export function documentMask(docIds: Tensor | ArrayLike<number>): MaskMod {
  const ids = asTensor(docIds, "i32", 1, "documentMask(docIds)");
  return named(`document[${ids.shape[0]}]`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => ids.at(q).eq(ids.at(kv)));
}
