/**
 * The ops this layer adds to the Tensor op registry (lib/tensor/op.ts's `OpArgs`). They live in their own
 * module, imported for its types only, because JSR's fast check refuses module augmentations in the modules
 * its public types pass through; the registry itself is unchanged.
 */
import type { DenseAttentionArg } from "./baselines.ts";

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** The materialized-mask baseline (inputs [q, k, v, mask?]). */
    denseAttention: DenseAttentionArg;
  }
}
