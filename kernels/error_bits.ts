/**
 * How kernels report errors: every invocation ORs bits into a private `flex_err`, and the entry point's
 * last statement publishes them to `err[0]` with one atomic at most. The executor reads `err[0]` after the
 * submit and turns the bits into typed errors (lib/lower/plan_flex.ts, plan_flex_grad.ts).
 * An atomic per event in a hot loop cost Mesa's LLVM compiler seconds per kernel; one per invocation does not.
 */

/** err[0] bit: a captured tensor was indexed out of range. */
export const ERR_CAPTURE_RANGE = 1;
/** err[0] bit: a score mod's derivative was NaN at an attended entry (backward). */
export const ERR_UNDEFINED_DERIVATIVE = 2;

/** Module-scope declaration of the invocation's error bits. */
export const ERROR_BITS_DECL = "var<private> flex_err: u32;";
/** The entry point's last statement (no early return may skip it). */
export const FLUSH_ERRORS = "if (flex_err != 0u) { atomicOr(&err[0], flex_err); }";
