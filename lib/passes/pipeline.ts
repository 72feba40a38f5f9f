/**
 * The ordered graph → graph passes the runtime runs on every realize before lowering (each is a plain
 * function, testable alone). `FLEX_PASSES=none` skips the optional ones (debugging: the graph as built).
 *
 *   fuseAttention   optional   hand-written attention (matmul / softmax / masks as tensor ops) → one flex call
 *   packFlexGrads   required   a flex call's gradient nodes → reads of one packed backward node
 */
import type { Tensor } from "../tensor/tensor.ts";
import { readEnv } from "../runtime/env.ts";
import { fuseAttention } from "./fuse_attention.ts";
import { packFlexGrads } from "./pack_flex_grads.ts";

export interface Pass {
  readonly name: string;
  readonly run: (roots: readonly Tensor[]) => Tensor[];
  /** Lowering relies on it: runs even with FLEX_PASSES=none. */
  readonly required?: boolean;
}

export const PASSES: readonly Pass[] = [
  { name: "fuseAttention", run: fuseAttention },
  { name: "packFlexGrads", run: packFlexGrads, required: true },
];

/** FLEX_PASSES=none, read like every FLEX_* setting (lib/runtime/env.ts: no permission prompt under Deno). */
const disabled = () => readEnv("FLEX_PASSES") === "none";

export function runPasses(roots: readonly Tensor[]): Tensor[] {
  const off = disabled();
  return PASSES.filter((p) => p.required || !off).reduce((r, p) => p.run(r), [...roots]);
}
