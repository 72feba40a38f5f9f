/**
 * Attention sinks (gpt-oss style): one learnable logit per query head whose exp joins the softmax denominator
 * of every row of that head, in the units of the scaled, modded scores:
 *   out' = out · e^lse / (e^lse + e^sink) = out · σ(lse − sink),   lse' = log(e^lse + e^sink)
 * Built from the flex call's (out, lse) with tensor ops, so the sinks get a gradient (through σ and the
 * log-sum) and q, k, v theirs through the flex backward's lse cotangent. A fully masked row keeps out = 0 and
 * gets lse' = sink.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { cast, reshape } from "../tensor/ops.ts";
import { add, div, exp, gt, log, mul, sub } from "../tensor/ops_elementwise.ts";
import { where } from "../tensor/dispatch.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";
import { Tensor as TensorClass } from "../tensor/tensor.ts";

export function checkSinks(sinks: unknown, Hq: number): Tensor {
  if (!(sinks instanceof TensorClass)) throw new InvalidArgument({ message: "flexAttention: sinks must be a Tensor of shape [H] (one logit per query head)" });
  if (sinks.dtype !== "f32") throw new DTypeError({ message: `flexAttention: sinks must be f32, got ${sinks.dtype} (convert with cast(sinks, "f32"))` });
  if (sinks.rank !== 1 || sinks.shape[0] !== Hq) {
    throw new ShapeError({ message: `flexAttention: sinks must have shape [${Hq}] (one per query head), got [${sinks.shape}]` });
  }
  return sinks;
}

/** (out, lse) of a call → the same with the sinks joining each row's denominator. */
export function withSinks(out: Tensor, lse: Tensor, sinks: Tensor): { out: Tensor; lse: Tensor } {
  const [B, H, S] = lse.shape;
  const s = reshape(sinks, [1, H, 1]);
  // σ(lse − sink) = 1 / (1 + e^(sink − lse)); lse = −∞ → e^∞ = ∞ → weight 0 (out stays 0)
  const w = div(1, add(1, exp(sub(s, lse))));
  const m = where(gt(lse, s), lse, s); // logaddexp, stable: m + log(e^(lse−m) + e^(sink−m))
  const lse2 = add(m, log(add(exp(sub(lse, m)), exp(sub(s, m)))));
  const w4 = reshape(w, [B, H, S, 1]);
  return { out: mul(out, out.dtype === "f32" ? w4 : cast(w4, out.dtype)), lse: lse2 };
}
