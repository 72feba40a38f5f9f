/** The checkerboard score mod of PyTorch's FlexAttention test suite: a cheap, position-dependent rescale. */
import { type Expr, where } from "../../ir/expr.ts";
import { named } from "../named.ts";

/**
 * `checkerboard(score, b, h, q, kv)`: score · 0.5 where |kv − q| is odd, score · 2 where it is even.
 *
 * @example
 * ```ts
 * import { checkerboard, flexAttention, randn } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { scoreMod: checkerboard });
 * ```
 */
export const checkerboard: (score: Expr, b: Expr, h: Expr, q: Expr, kv: Expr) => Expr = named("checkerboard", (score: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr): Expr =>
  where(kv.sub(q).abs().mod(2).eq(1), score.mul(0.5), score.mul(2)));
