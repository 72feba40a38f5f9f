/** The checkerboard score mod of PyTorch's FlexAttention test suite: a cheap, position-dependent rescale. */
import { type Expr, where } from "../../ir/expr.ts";
import { named } from "../named.ts";

/** `checkerboard(score, b, h, q, kv)`: score · 0.5 where |kv − q| is odd, score · 2 where it is even. */
export const checkerboard: (score: Expr, b: Expr, h: Expr, q: Expr, kv: Expr) => Expr = named("checkerboard", (score: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr): Expr =>
  where(kv.sub(q).abs().mod(2).eq(1), score.mul(0.5), score.mul(2)));
