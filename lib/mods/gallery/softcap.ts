/** Logit soft-capping (Gemma 2, Grok): squashes scores smoothly into (−cap, cap). */
import type { Expr } from "../../ir/expr.ts";
import { InvalidArgument } from "../../errors.ts";
import type { ScoreMod } from "../trace.ts";
import { named } from "../named.ts";

export function checkCap(cap: number, what: string): void {
  if (!(Number.isFinite(cap) && cap > 0)) throw new InvalidArgument({ message: `${what}: cap must be a positive finite number, got ${cap}` });
}

/**
 * `softcap(cap)`: cap · tanh(score / cap).
 *
 * @example
 * ```ts
 * import { flexAttention, randn, softcap } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { scoreMod: softcap(20) }); // 20·tanh(s / 20)
 * ```
 */
export function softcap(cap: number): ScoreMod {
  checkCap(cap, "softcap");
  return named(`softcap(${cap})`, (score: Expr) => score.div(cap).tanh().mul(cap));
}
