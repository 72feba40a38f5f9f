/** Stand-alone self-attention (SASA, Ramachandran et al. 2019): a local 2-D window around each pixel. */
import type { Expr } from "../../ir/expr.ts";
import type { MaskMod } from "../trace.ts";
import { named } from "../named.ts";
import { checkPositiveInt, gridPos, inImage } from "./image_grid.ts";

/**
 * `sasa(H, W, window)`: tokens form an H×W image, token t at row ⌊t/W⌋, column t mod W. Keeps (q, kv) iff
 * |row(q) − row(kv)| ≤ ⌊window/2⌋ AND |col(q) − col(kv)| ≤ ⌊window/2⌋: a window centred on the query,
 * truncated at the borders (border queries see fewer keys; compare `natten`). Tokens ≥ H·W are masked out.
 *
 * @example
 * ```ts
 * import { createBlockMask, sasa } from "@flex/attention";
 * const mask = await createBlockMask(sasa(16, 16, 2), null, null, 256, 256);
 * ```
 */
export function sasa(H: number, W: number, window: number): MaskMod {
  checkPositiveInt("sasa(H)", H); checkPositiveInt("sasa(W)", W); checkPositiveInt("sasa(window)", window);
  const r = Math.floor(window / 2);
  return named(`sasa(${H}x${W}, ${window})`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => {
    const a = gridPos(q, W), k = gridPos(kv, W);
    const near = a.row.sub(k.row).abs().le(r).and(a.col.sub(k.col).abs().le(r));
    return inImage(q, kv, H, W).and(near);
  });
}
