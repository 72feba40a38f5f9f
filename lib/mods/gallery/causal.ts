/** Causal masking: a query sees itself and the past. */
import type { Expr } from "../../ir/expr.ts";
import { named } from "../named.ts";

/**
 * `causalMask(b, h, q, kv)`: keeps q ≥ kv (the diagonal included).
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 2048, 2048);
 * ```
 */
export const causalMask: (b: Expr, h: Expr, q: Expr, kv: Expr) => Expr = named("causal", (_b: Expr, _h: Expr, q: Expr, kv: Expr): Expr => q.ge(kv));
