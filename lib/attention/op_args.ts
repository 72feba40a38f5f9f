/**
 * The ops this layer adds to the Tensor op registry (lib/tensor/op.ts's `OpArgs`). They live in their own
 * module, imported for its types only, because JSR's fast check refuses module augmentations in the modules
 * its public types pass through; the registry itself is unchanged.
 */
import type { FlexCall } from "./flex_attention.ts";
import type { DenseAttentionArg } from "./baselines.ts";

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** out of one fused call (shares its FlexCall with flexLse). */
    flexOut: FlexCall;
    /** lse of one fused call. */
    flexLse: FlexCall;
    /** maxScore of one fused call (returnAux; no gradient). */
    flexMaxScore: FlexCall;
    /** The materialized-mask baseline (inputs [q, k, v, mask?]). */
    denseAttention: DenseAttentionArg;
  }
}
