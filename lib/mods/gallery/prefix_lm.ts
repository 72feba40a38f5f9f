/** Prefix-LM: a bidirectional prefix followed by causal text (T5 / PaLI / UniLM style). */
import type { Expr } from "../../ir/expr.ts";
import { InvalidArgument } from "../../errors.ts";
import type { MaskMod } from "../trace.ts";
import { orMasks } from "../algebra.ts";
import { named } from "../named.ts";
import { causalMask } from "./causal.ts";

/**
 * `prefixLm(n)`: keeps kv < n OR q ≥ kv: every query sees the whole prefix of `n` tokens (so the prefix
 * attends bidirectionally within itself), and after it attention is causal. `n` is a non-negative integer.
 *
 * @example
 * ```ts
 * import { createBlockMask, prefixLm } from "@flex/attention";
 * const mask = await createBlockMask(prefixLm(64), null, null, 512, 512); // bidirectional over the first 64 tokens
 * ```
 */
export function prefixLm(n: number): MaskMod {
  if (!Number.isInteger(n) || n < 0) {
    throw new InvalidArgument({ message: `prefixLm(n): n must be a non-negative integer, got ${n}` });
  }
  const prefix = named(`prefix(${n})`, (_b: Expr, _h: Expr, _q: Expr, kv: Expr) => kv.lt(n));
  return named(`prefixLm(${n})`, orMasks(prefix, causalMask));
}
