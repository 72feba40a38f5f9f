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
 *
 * @example
 * ```ts
 * import { createBlockMask, documentMask } from "@flex/attention";
 * // tokens 0–99 document 0, 100–255 document 1: no attention across documents
 * const docIds = Int32Array.from({ length: 256 }, (_, i) => (i < 100 ? 0 : 1));
 * const mask = await createBlockMask(documentMask(docIds), null, null, 256, 256);
 * ```
 */
export function documentMask(docIds: Tensor | ArrayLike<number>): MaskMod {
  const ids = asTensor(docIds, "i32", 1, "documentMask(docIds)");
  return named(`document[${ids.shape[0]}]`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => ids.at(q).eq(ids.at(kv)));
}
