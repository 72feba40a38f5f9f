/** ALiBi (Press et al. 2022, https://arxiv.org/abs/2108.12409): a per-head linear distance bias. */
import type { Expr } from "../../ir/expr.ts";
import { type Tensor, tensor } from "../../tensor/tensor.ts";
import type { ScoreMod } from "../trace.ts";
import { named } from "../named.ts";
import { asTensor } from "./captures.ts";
import { checkPositiveInt } from "./image_grid.ts";

/**
 * `alibi(slopes)`: score + slopes[h] · (kv − q) (attention-gym's sign: with positive slopes, keys further in
 * the past get a larger penalty). `slopes` is an f32 tensor (or array) [H], one slope per query head; it is
 * captured, so other slopes of the same length reuse the kernel.
 *
 * @example
 * ```ts
 * import { alibi, alibiSlopes, flexAttention, randn } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { scoreMod: alibi(alibiSlopes(2)) });
 * ```
 */
export function alibi(slopes: Tensor | ArrayLike<number>): ScoreMod {
  const s = asTensor(slopes, "f32", 1, "alibi(slopes)");
  return named(`alibi[${s.shape[0]}]`, (score: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) =>
    score.add(s.at(h).mul(kv.sub(q))));
}

/**
 * attention-gym's slopes for H heads: slope i = 2^(−8(i+1)/H), an f32 tensor [H].
 *
 * @example
 * ```ts
 * import { alibiSlopes } from "@flex/attention";
 * const slopes = await alibiSlopes(8).toArray(); // 2^-1, 2^-2, … 2^-8
 * ```
 */
export function alibiSlopes(H: number): Tensor {
  checkPositiveInt("alibiSlopes(H)", H);
  return tensor(Array.from({ length: H }, (_, i) => Math.pow(2, (-8 * (i + 1)) / H)), [H], { dtype: "f32" });
}
