/**
 * Checks the tracer runs on a mod: its declared parameters (`fn.length`) and the expressions it dropped.
 *
 * Arity. Mods are called positionally, so a short parameter list silently shifts the names.
 *   - Where a mask becomes a BlockMask (createBlockMask, createMask, BlockMask.fromKvBlocks) it must declare
 *     exactly 4 parameters (b, h, q, kv), as PyTorch requires: `(q, kv) => q.ge(kv)` would compare b with h.
 *     0 is accepted too: constant mods (`() => true`) and rest-parameter wrappers. The parts of andMasks /
 *     orMasks / notMask are checked the same way (`maskParts`). The tracer itself (traceMaskMod) follows the
 *     JS convention that trailing parameters may be left out (`(b) => b.eq(0)`) and refuses only 5 or more.
 *   - A score mod declares 5 (score, b, h, q, kv); fewer are accepted when the trailing ones are left out
 *     (`(s) => s.mul(2)`, `(s, _b, h) => ...`), which JS cannot tell from leading ones left out except by use:
 *     a score mod that declares 2–4 parameters and never reads the first (the score) is the shape of
 *     `(b, h, q, kv) => ...` and is refused. A mod that really ignores the score declares all five.
 *   Default and rest parameters lower `fn.length`; messages say to declare the parameters plainly.
 *
 * Dropped conditions (lib/ir/usage.ts): a non-constant bool node (a comparison, and/or/not) the mod built that fed
 * no other node and is not the result was lost to a JS operator (`a && b` returns b, `!a` is false, `a ? x : y`)
 * or is dead code; both are refused with ModOperatorError. Numeric nodes may go unused legitimately (a combinator
 * such as jaggedMask builds local positions its inner mask may ignore), so only bools count.
 * Not detectable: `a || b` and `a ?? b` (b is never evaluated), `a === b` (a plain JS boolean).
 */
import { type Expr, readsArg } from "../ir/expr.ts";
import type { Usage } from "../ir/usage.ts";
import { InvalidArgument, ModArityError, ModOperatorError } from "../errors.ts";

const MASK_SIG = "(b, h, q, kv)", SCORE_SIG = "(score, b, h, q, kv)";

function plural(n: number): string { return `${n} parameter${n === 1 ? "" : "s"}`; }

export function checkModFunction(fn: unknown, who: string): void {
  if (typeof fn !== "function") {
    throw new InvalidArgument({ message: `${who} must be a function ${who === "scoreMod" ? SCORE_SIG : MASK_SIG} => expression, got ${fn === null ? "null" : typeof fn}` });
  }
}

type AnyFn = (...args: never[]) => unknown;

/** The masks a combinator was built from, so the strict check reaches them (filled by lib/mods/algebra.ts). */
export const maskParts: WeakMap<AnyFn, readonly AnyFn[]> = new WeakMap();

function scoreSignature(who: string, name: string): ModArityError {
  return new ModArityError({
    message: `${who}${name} declares 5 parameters, a score mod's signature ${SCORE_SIG}; a mask mod takes ${MASK_SIG}: ` +
      `pass it as scoreMod, or drop the score parameter`,
  });
}

/** The tracer's check: a mask mod never declares 5 or more parameters. */
export function checkTraceMaskArity(fn: AnyFn): void {
  checkModFunction(fn, "maskMod");
  if (fn.length >= 5) throw scoreSignature("maskMod", fn.name ? ` "${fn.name}"` : "");
}

/** The strict check where a mask becomes a BlockMask: 4 parameters (or 0), for it and for every part. */
export function checkMaskArity(fn: unknown, who: string): void {
  checkModFunction(fn, who);
  const f = fn as AnyFn, n = f.length;
  const name = f.name ? ` "${f.name}"` : "";
  if (n >= 5) throw scoreSignature(who, name);
  if (n !== 0 && n !== 4) {
    throw new ModArityError({
      message: `${who}${name} declares ${plural(n)}, but a mask mod is called as ${MASK_SIG}: with fewer the names shift ` +
        `(in (q, kv) => q.ge(kv), q receives b and kv receives h). Declare all four, naming unused ones _b, _h: ` +
        `(_b, _h, q, kv) => q.ge(kv) (default and rest parameters lower fn.length: declare the four plainly)`,
    });
  }
  for (const part of maskParts.get(f) ?? []) checkMaskArity(part, `${who} (a part of${name || " a combination"})`);
}

/** A score mod declares at most 5 parameters. The 2–4 case is checked against its trace in `checkScoreUse`. */
export function checkScoreArity(fn: AnyFn): void {
  checkModFunction(fn, "scoreMod");
  if (fn.length > 5) {
    throw new ModArityError({ message: `scoreMod declares ${plural(fn.length)}; a score mod takes ${SCORE_SIG}` });
  }
}

/** Refuses a 2–4 parameter score mod that never reads the score: it was written as (b, h, q, kv) or similar. */
export function checkScoreUse(fn: AnyFn, out: Expr): void {
  const n = fn.length;
  if (n < 2 || n > 4) return;
  if (readsArg(out, "score")) return;
  throw new ModArityError({
    message: `scoreMod${fn.name ? ` "${fn.name}"` : ""} declares ${plural(n)} and never reads the first, which receives the score: ` +
      `a score mod is called as ${SCORE_SIG}, so (b, h, q, kv) => ... shifts every name by one. Declare all five, ` +
      `naming unused ones _score, _b: (_score, _b, h, q, kv) => ...`,
  });
}

/** Refuses non-constant bool nodes the mod built and then lost (see the module comment). */
export function checkNothingDropped(usage: Usage, out: Expr, who: string): void {
  const dropped = usage.built.find((e) => e.dtype === "bool" && e.op !== "const" && e !== out && !usage.used.has(e));
  if (!dropped) return;
  throw new ModOperatorError({
    message: `${who} built ${dropped.toString()} and then dropped it: JS operators do not combine mod expressions ` +
      `(a && b returns b, !a is false, a ? x : y is x). Use the methods: a.and(b), a.or(b), a.not(), where(c, x, y); ` +
      `if it is dead code, delete it`,
  });
}
