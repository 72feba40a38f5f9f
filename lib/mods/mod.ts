/** The mod language: tracing, the CPU interpreter, mask algebra, simplification, custom ops and the gallery. */
export { type MaskMod, type ScoreMod, traceMaskMod, traceScoreMod, type TracedMod } from "./trace.ts";
export { compileExpr } from "./evaluate.ts";
export { andMasks, noopMask, notMask, orMasks } from "./algebra.ts";
export { simplify } from "./simplify.ts";
export { customOp, type CustomOpFn, type CustomOpSpec } from "./custom_op.ts";
export * from "./gallery/mod.ts";
