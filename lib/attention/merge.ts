/**
 * `mergeAttention([{ out, lse }, …])` → `{ out, lse }`: attention over disjoint key sets merged by their
 * log-sum-exps (the split-KV combine, exposed: what context parallelism and chunked prefill need):
 *   lse = log Σ_i e^lse_i,   out = Σ_i e^(lse_i − lse) · out_i
 * A part whose row saw no key (lse_i = −∞) weighs 0; a row no part attended keeps out = 0, lse = −∞.
 * Built from tensor ops: lazy, differentiable, any executor.
 */
import { Tensor } from "../tensor/tensor.ts";
import { cast, reshape } from "../tensor/ops.ts";
import { add, eq, exp, gt, log, mul, sub } from "../tensor/ops_elementwise.ts";
import { where } from "../tensor/dispatch.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

/**
 * Attention over one key set: its output and log-sum-exp (what `flexAttention(…, { returnLse: true })` returns).
 *
 * @example
 * ```ts
 * import { flexAttention, randn, type AttentionPart } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const part: AttentionPart = flexAttention(q, k, v, { returnLse: true });
 * ```
 */
export interface AttentionPart {
  /** [B, H, Sq, Dv]. */
  readonly out: Tensor;
  /** [B, H, Sq], f32. */
  readonly lse: Tensor;
}

/**
 * Merges attention over disjoint key sets by their log-sum-exps (context parallelism, chunked prefill).
 *
 * @example
 * ```ts
 * import { flexAttention, mergeAttention, randn } from "@flex/attention";
 * const q = randn([1, 1, 64, 16]), [k1, v1, k2, v2] = [0, 1, 2, 3].map(() => randn([1, 1, 32, 16]));
 * const a = flexAttention(q, k1, v1, { returnLse: true }), b = flexAttention(q, k2, v2, { returnLse: true });
 * const { out } = mergeAttention([a, b]); // attention over all 64 keys
 * ```
 */
export function mergeAttention(parts: readonly AttentionPart[]): AttentionPart {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new InvalidArgument({ message: "mergeAttention: give a non-empty array of { out, lse } (e.g. flexAttention(..., { returnLse: true }) results)" });
  }
  parts.forEach((p, i) => {
    if (!p || !(p.out instanceof Tensor) || !(p.lse instanceof Tensor)) {
      throw new InvalidArgument({ message: `mergeAttention: part ${i} must be { out: Tensor, lse: Tensor }` });
    }
    const [o, l] = [p.out.shape, p.lse.shape];
    if (o.length !== 4 || l.length !== 3 || o.slice(0, 3).join() !== l.join()) {
      throw new ShapeError({ message: `mergeAttention: part ${i} has out [${o}] and lse [${l}]; expected out [B, H, S, D] and lse [B, H, S]` });
    }
    if (o.join() !== parts[0].out.shape.join()) {
      throw new ShapeError({ message: `mergeAttention: part ${i}'s out is [${o}] but part 0's is [${parts[0].out.shape}]` });
    }
    if (p.lse.dtype !== "f32" || p.out.dtype !== parts[0].out.dtype) {
      throw new DTypeError({ message: `mergeAttention: lse must be f32 and every out of one dtype (part ${i}: out ${p.out.dtype}, lse ${p.lse.dtype})` });
    }
  });
  if (parts.length === 1) return { out: parts[0].out, lse: parts[0].lse };
  const m = parts.slice(1).reduce((acc, p) => where(gt(p.lse, acc), p.lse, acc), parts[0].lse);
  const ref = where(eq(m, -Infinity), 0, m); // a row no part saw: every weight e^(−∞ − 0) = 0
  const sum = parts.slice(1).reduce((acc, p) => add(acc, exp(sub(p.lse, ref))), exp(sub(parts[0].lse, ref)));
  const lse = add(ref, log(sum));
  const safe = where(eq(lse, -Infinity), 0, lse);
  const [B, H, S] = lse.shape;
  const dt = parts[0].out.dtype;
  const weighted = parts.map((p) => {
    const w = reshape(exp(sub(p.lse, safe)), [B, H, S, 1]);
    return mul(p.out, dt === "f32" ? w : cast(w, dt));
  });
  return { out: weighted.slice(1).reduce((a, b) => add(a, b), weighted[0]), lse };
}
