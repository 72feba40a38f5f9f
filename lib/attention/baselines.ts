/**
 * Baselines the benchmarks and the demo compare flexAttention with — deliberately NOT fused:
 *
 *   denseAttention(q, k, v, { mask, scale })   the "materialized mask" baseline: scores S = QKᵀ·scale are
 *   written to memory as a full [B, H, Sq, Skv] matrix, an explicit dense mask (i32 0/1, broadcastable
 *   [B|1, H|1, Sq, Skv], e.g. from createMask) sets masked entries to −∞, a row softmax runs in place, then
 *   out = P·V. It costs O(S²) memory, which is exactly what FlexAttention's block sparsity avoids.
 */
import { Tensor } from "../tensor/tensor.ts";
import { ShapeError } from "../errors.ts";
import { type FlexDims, makeFlexCall } from "./flex_attention.ts";

// the registry entry of denseAttention
import type {} from "./op_args.ts";

export interface DenseAttentionArg {
  readonly dims: FlexDims;
  readonly scale: number;
  /** Mask broadcast sizes (0 when there is no mask). */
  readonly maskB: number;
  readonly maskH: number;
}

/**
 * The materialized-mask baseline: the full score matrix in memory, an explicit dense mask, a row softmax, then P·V.
 * O(S²) memory; for comparisons with `flexAttention`.
 *
 * @example
 * ```ts
 * import { causalMask, createMask, denseAttention, randn } from "@flex/attention";
 * const x = randn([1, 2, 128, 32]);
 * const out = denseAttention(x, x, x, { mask: createMask(causalMask, 1, 1, 128, 128) });
 * ```
 */
export function denseAttention(q: Tensor, k: Tensor, v: Tensor, options: { mask?: Tensor; scale?: number; enableGqa?: boolean } = {}): Tensor {
  // reuse flexAttention's validation of q/k/v (shapes, dtypes, heads, head dims)
  const call = makeFlexCall(q, k, v, { scale: options.scale, enableGqa: options.enableGqa });
  const { B, Hq, Sq, Skv, Dv } = call.dims;
  const m = options.mask;
  if (m) {
    const [mB, mH, mq, mkv] = m.shape;
    if (m.rank !== 4 || m.dtype !== "i32" || (mB !== 1 && mB !== B) || (mH !== 1 && mH !== Hq) || mq !== Sq || mkv !== Skv) {
      throw new ShapeError({ message: `denseAttention: mask must be i32 [1|${B}, 1|${Hq}, ${Sq}, ${Skv}], got ${m.dtype} [${m.shape}]` });
    }
  }
  const arg: DenseAttentionArg = { dims: call.dims, scale: call.scale, maskB: m ? m.shape[0] : 0, maskH: m ? m.shape[1] : 0 };
  return new Tensor("denseAttention", m ? [q, k, v, m] : [q, k, v], [B, Hq, Sq, Dv], "f32", arg);
}
