/** Sliding-window (local) causal attention, as in Mistral / Longformer's local band. */
import type { Expr } from "../../ir/expr.ts";
import { InvalidArgument } from "../../errors.ts";
import type { MaskMod } from "../trace.ts";
import { andMasks } from "../algebra.ts";
import { named } from "../named.ts";
import { causalMask } from "./causal.ts";

/**
 * `slidingWindow(w)`: keeps q − w ≤ kv ≤ q, i.e. causal AND q − kv ≤ w (attention-gym's semantics: `w` is the
 * lookback, the future is masked). Each query sees at most w + 1 keys: itself and the w before it.
 * `w` must be a non-negative integer.
 *
 * @example
 * ```ts
 * import { andMasks, causalMask, createBlockMask, slidingWindow } from "@flex/attention";
 * const mask = await createBlockMask(andMasks(causalMask, slidingWindow(256)), null, null, 4096, 4096);
 * ```
 */
export function slidingWindow(w: number): MaskMod {
  if (!Number.isInteger(w) || w < 0) {
    throw new InvalidArgument({ message: `slidingWindow(w): w must be a non-negative integer, got ${w}` });
  }
  const lookback = named(`lookback(${w})`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.sub(kv).le(w));
  return named(`slidingWindow(${w})`, andMasks(causalMask, lookback));
}
