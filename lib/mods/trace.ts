/**
 * Tracing: call a mod once with symbolic arguments and keep the expression it returns.
 *
 * The result is canonical: captured tensors are numbered by first appearance (slot 0, 1, ...) and the
 * `load` nodes keep only slot, shape and dtype, so the IR's hash is the same for the same mod whatever
 * the tensors' values are (new document ids → same kernel), and differs when a closure constant changes.
 *
 * Before that, lib/mods/mod_checks.ts refuses a mod with the wrong parameters (ModArityError) or one that
 * lost an expression to a JS operator such as `&&` or `!` (ModOperatorError).
 */
import { type CaptureSource, Expr, type LoadArg, rewrite, type Scalar } from "../ir/expr.ts";
import { ModReturnTypeError } from "../errors.ts";
import { recordUsage } from "../ir/usage.ts";
import { checkNothingDropped, checkScoreArity, checkScoreUse, checkTraceMaskArity } from "./mod_checks.ts";

/**
 * A score mod: the score of (b, h, q, kv) after scaling → the score softmax sees.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, type ScoreMod } from "@flex/attention";
 * const relative: ScoreMod = (score, _b, _h, q, kv) => score.add(q.sub(kv).mul(0.01));
 * const x = randn([1, 2, 128, 32]);
 * const out = flexAttention(x, x, x, { scoreMod: relative });
 * ```
 */
export type ScoreMod = (score: Expr, b: Expr, h: Expr, q: Expr, kv: Expr) => Scalar;
/**
 * A mask mod: whether query q of (b, h) attends to key kv (a bool expression).
 *
 * @example
 * ```ts
 * import { createBlockMask, type MaskMod } from "@flex/attention";
 * const prefixLm: MaskMod = (_b, _h, q, kv) => kv.lt(64).or(q.ge(kv));
 * const mask = await createBlockMask(prefixLm, null, null, 512, 512);
 * ```
 */
export type MaskMod = (b: Expr, h: Expr, q: Expr, kv: Expr) => Scalar;

/**
 * A mod traced once with symbolic arguments: its IR, captured tensors and structural hash (the kernel-cache key).
 *
 * @example
 * ```ts
 * import { traceScoreMod } from "@flex/attention";
 * const { kind, captures } = traceScoreMod((s) => s.mul(2)); // "score", []
 * ```
 */
export interface TracedMod {
  /** Score mod or mask mod. */
  readonly kind: "score" | "mask";
  /** Canonical IR (loads carry slots, not tensors). */
  readonly expr: Expr;
  /** The captured tensors, indexed by slot. */
  readonly captures: readonly CaptureSource[];
  /** Structural hash: kind + IR. Equal hash ⇒ same kernel. */
  readonly hash: string;
  /** A readable name (the function's name, if it has one) for tables and errors. */
  readonly name: string;
}

const ARGS = () => ({
  score: Expr.arg("score"), b: Expr.arg("b"), h: Expr.arg("h"), q: Expr.arg("q"), kv: Expr.arg("kv"),
});

function canonicalize(kind: "score" | "mask", root: Expr, name: string): TracedMod {
  const captures: CaptureSource[] = [];
  const slotOf = new Map<number, number>();
  const expr = rewrite(root, (e, src) => {
    if (e.op !== "load") return undefined;
    const a = e.arg as LoadArg;
    if (!a.source) return undefined;
    let slot = slotOf.get(a.source.id);
    if (slot === undefined) {
      slot = captures.length;
      slotOf.set(a.source.id, slot);
      captures.push(a.source);
    }
    const arg: LoadArg = { slot, shape: a.shape, dtype: a.dtype };
    return Expr.node("load", e.dtype, src, arg);
  });
  return { kind, expr, captures, hash: `${kind}:${expr.hash}`, name };
}

function lifted(value: unknown, what: string): Expr {
  if (value instanceof Expr) return value;
  if (typeof value === "number" || typeof value === "boolean") return Expr.const(value);
  throw new ModReturnTypeError({ message: `${what} returned ${value === undefined ? "undefined" : typeof value}; it must return a mod expression` });
}

/**
 * Traces `scoreMod(score, b, h, q, kv)`; it must return a number (an int result is promoted to f32).
 *
 * @example
 * ```ts
 * import { alibi, alibiSlopes, traceScoreMod } from "@flex/attention";
 * const t = traceScoreMod(alibi(alibiSlopes(8)));
 * console.log(t.captures.length); // 1: the slopes tensor
 * ```
 */
export function traceScoreMod(fn: ScoreMod): TracedMod {
  checkScoreArity(fn);
  const a = ARGS(); // built outside the recording: unused arguments are not "dropped"
  const { result, usage } = recordUsage(() => fn(a.score, a.b, a.h, a.q, a.kv));
  const out = lifted(result, "scoreMod");
  checkNothingDropped(usage, out, "scoreMod");
  checkScoreUse(fn, out);
  if (out.dtype === "bool") {
    throw new ModReturnTypeError({
      message: "scoreMod returned a bool; a score mod returns a number (did you mean to pass it as a maskMod / blockMask?)",
    });
  }
  return canonicalize("score", out.toFloat(), fn.name || "scoreMod");
}

/**
 * Traces `maskMod(b, h, q, kv)`; it must return a bool.
 *
 * @example
 * ```ts
 * import { causalMask, traceMaskMod } from "@flex/attention";
 * const t = traceMaskMod(causalMask);
 * console.log(t.name, t.hash); // "causal", the kernel-cache key
 * ```
 */
export function traceMaskMod(fn: MaskMod): TracedMod {
  checkTraceMaskArity(fn);
  const a = ARGS();
  const { result, usage } = recordUsage(() => fn(a.b, a.h, a.q, a.kv));
  const out = lifted(result, "maskMod");
  checkNothingDropped(usage, out, "maskMod");
  if (out.dtype !== "bool") {
    throw new ModReturnTypeError({
      message: `maskMod returned a ${out.dtype} expression; a mask mod returns a bool (e.g. q.ge(kv)), a score mod takes 5 arguments`,
    });
  }
  return canonicalize("mask", out, fn.name || "maskMod");
}

/** The identity score mod, traced once. */
export const IDENTITY_SCORE: TracedMod = traceScoreMod(function identity(score) { return score; });
