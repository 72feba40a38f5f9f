/** Neighborhood attention (NATTEN, Hassani et al. 2023): a full kH×kW window for every pixel. */
import type { Expr } from "../../ir/expr.ts";
import { InvalidArgument } from "../../errors.ts";
import type { MaskMod } from "../trace.ts";
import { named } from "../named.ts";
import { checkPositiveInt, gridPos, inImage } from "./image_grid.ts";

/**
 * `natten(H, W, kH, kW)`: tokens form an H×W image (token t at row ⌊t/W⌋, column t mod W). The window centre
 * is the query's position clamped per axis to [⌊k/2⌋, size − 1 − ⌊k/2⌋], and (q, kv) is kept iff
 * |centreRow − row(kv)| ≤ ⌊kH/2⌋ AND |centreCol − col(kv)| ≤ ⌊kW/2⌋ (attention-gym's `generate_natten`).
 * With odd kernels every query sees exactly kH·kW keys. Needs kH ≤ H and kW ≤ W. Tokens ≥ H·W are masked out.
 *
 * @example
 * ```ts
 * import { createBlockMask, natten } from "@flex/attention";
 * // a 16×16 image, 5×5 neighbourhoods
 * const mask = await createBlockMask(natten(16, 16, 5, 5), null, null, 256, 256);
 * ```
 */
export function natten(H: number, W: number, kH: number, kW: number): MaskMod {
  for (const [what, x] of [["H", H], ["W", W], ["kH", kH], ["kW", kW]] as const) checkPositiveInt(`natten(${what})`, x);
  if (kH > H || kW > W) {
    throw new InvalidArgument({ message: `natten: the kernel ${kH}x${kW} does not fit the ${H}x${W} image` });
  }
  const rh = Math.floor(kH / 2), rw = Math.floor(kW / 2);
  return named(`natten(${H}x${W}, ${kH}x${kW})`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => {
    const a = gridPos(q, W), k = gridPos(kv, W);
    const centreRow = a.row.clamp(rh, H - 1 - rh), centreCol = a.col.clamp(rw, W - 1 - rw);
    const near = centreRow.sub(k.row).abs().le(rh).and(centreCol.sub(k.col).abs().le(rw));
    return inImage(q, kv, H, W).and(near);
  });
}
