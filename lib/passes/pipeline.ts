/**
 * The ordered graph → graph passes the runtime runs on every realize before lowering (each is a plain
 * function, testable alone). `FLEX_PASSES=none` skips them (debugging: realize the graph exactly as built).
 *
 *   fuseAttention   hand-written attention (matmul / softmax / masks as tensor ops) → one flex call
 *
 * The packed-gradient rewrite of a flex backward stays a lowering memo (lib/lower/plan_flex_grad.ts): it
 * is how one plan defines several nodes, not a change of the graph's meaning.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { fuseAttention } from "./fuse_attention.ts";

export interface Pass {
  readonly name: string;
  readonly run: (roots: readonly Tensor[]) => Tensor[];
}

export const PASSES: readonly Pass[] = [{ name: "fuseAttention", run: fuseAttention }];

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
function disabled(): boolean {
  try {
    return (g.Deno?.env?.get?.("FLEX_PASSES") ?? g.process?.env?.FLEX_PASSES) === "none";
  } catch {
    return false;
  }
}

export function runPasses(roots: readonly Tensor[]): Tensor[] {
  if (disabled()) return [...roots];
  return PASSES.reduce((r, p) => p.run(r), [...roots]);
}
