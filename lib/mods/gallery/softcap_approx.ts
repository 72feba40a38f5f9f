/** Soft-capping with the cheap `tanhApprox` custom op (attention-gym's `generate_tanh_softcap(approx=True)`). */
import type { Expr } from "../../ir/expr.ts";
import type { ScoreMod } from "../trace.ts";
import { named } from "../named.ts";
import { checkCap } from "./softcap.ts";
import { tanhApprox } from "./tanh_approx.ts";

/**
 * `softcapApprox(cap)`: cap · tanhApprox(score / cap), see tanh_approx.ts for the exact function.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, softcapApprox } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { scoreMod: softcapApprox(30) });
 * ```
 */
export function softcapApprox(cap: number): ScoreMod {
  checkCap(cap, "softcapApprox");
  return named(`softcapApprox(${cap})`, (score: Expr) => tanhApprox(score.div(cap)).mul(cap));
}
