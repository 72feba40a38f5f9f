/** Jagged (nested) sequences: packed documents, each with its own local mask. */
import type { Expr } from "../../ir/expr.ts";
import { type Tensor, tensor } from "../../tensor/tensor.ts";
import { InvalidArgument } from "../../errors.ts";
import type { MaskMod } from "../trace.ts";
import { noopMask } from "../algebra.ts";
import { named, nameOf } from "../named.ts";
import { lift } from "../../ir/expr.ts";
import { asTensor, valuesOf } from "./captures.ts";

/**
 * Document id of every token, from boundaries [0, ..., total]: token t is in doc d iff off[d] ≤ t < off[d+1].
 *
 * @example
 * ```ts
 * import { docIdsFromOffsets } from "@flex/attention";
 * docIdsFromOffsets([0, 3, 5]); // Int32Array [0, 0, 0, 1, 1]
 * ```
 */
export function docIdsFromOffsets(offsets: ArrayLike<number>): Int32Array {
  const total = offsets[offsets.length - 1];
  const ids = new Int32Array(total);
  for (let d = 0; d + 1 < offsets.length; d++) ids.fill(d, offsets[d], offsets[d + 1]);
  return ids;
}

function checkOffsets(off: ArrayLike<number>): void {
  const ok = off.length >= 2 && off[0] === 0 &&
    Array.from(off).every((x, i) => Number.isInteger(x) && (i === 0 || x >= off[i - 1]));
  if (!ok) {
    throw new InvalidArgument({
      message: `jaggedMask(offsets): offsets must be non-decreasing integers starting at 0 with at least 2 entries ` +
        `(e.g. [0, 2, 6, 9] for documents of length 2, 4, 3), got [${Array.from(off)}]`,
    });
  }
}

/**
 * `jaggedMask(offsets, inner = noopMask)`: tokens [0, offsets[last]) are packed documents with boundaries
 * `offsets` ([0, 2, 6, 9] = documents of length 2, 4, 3). Keeps (q, kv) iff both are in the same document d
 * AND `inner(b, h, q − offsets[d], kv − offsets[d])`: the inner mask sees positions local to the document
 * (e.g. `jaggedMask(offsets, causalMask)` is per-document causal; PyTorch's `generate_doc_mask_mod`).
 *
 * The document id of each token is precomputed on the CPU; both tables are captured, so the mod reads
 * `offsets.at(docIds.at(q))` (a gather of depth 2). Defined for q, kv < offsets[last].
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask, jaggedMask } from "@flex/attention";
 * // three sequences packed into 300 tokens, causal inside each
 * const mask = await createBlockMask(jaggedMask([0, 100, 220, 300], causalMask), null, null, 300, 300);
 * ```
 */
export function jaggedMask(offsets: Tensor | ArrayLike<number>, inner: MaskMod = noopMask): MaskMod {
  const off = asTensor(offsets, "i32", 1, "jaggedMask(offsets)");
  const offValues = valuesOf(off, "jaggedMask(offsets)");
  checkOffsets(offValues);
  const docIds = tensor(docIdsFromOffsets(offValues), undefined, { dtype: "i32" });
  const docs = off.shape[0] - 1;
  return named(`jagged(${docs} docs, ${nameOf(inner)})`, (b: Expr, h: Expr, q: Expr, kv: Expr) => {
    const dq = docIds.at(q), dkv = docIds.at(kv);
    const local = lift(inner(b, h, q.sub(off.at(dq)), kv.sub(off.at(dkv))));
    return dq.eq(dkv).and(local);
  });
}
