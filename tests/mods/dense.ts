/** Test helpers: evaluate traced mods through the IR interpreter (compileExpr) on points and dense grids. */
import type { Expr } from "../../lib/ir/expr.ts";
import { compileExpr, type ModEnv } from "../../lib/mods/evaluate.ts";
import { type MaskMod, type ScoreMod, traceMaskMod, traceScoreMod, type TracedMod } from "../../lib/mods/trace.ts";
import type { Tensor } from "../../lib/tensor/tensor.ts";

export function capturesOf(t: TracedMod): ArrayLike<number>[] {
  return t.captures.map((c) => {
    const data = (c as Tensor).data;
    if (!data) throw new Error(`capture ${c.id} has no constant data`);
    return data;
  });
}

/** A mask mod as a plain JS predicate, going through trace → IR → interpreter. */
export function maskFn(mod: MaskMod): (b: number, h: number, q: number, kv: number) => boolean {
  const t = traceMaskMod(mod);
  const f = compileExpr(t.expr), caps = capturesOf(t);
  return (b, h, q, kv) => f({ score: 0, b, h, q, kv }, caps) as boolean;
}

/** A score mod as a plain JS function, going through trace → IR → interpreter. */
export function scoreFn(mod: ScoreMod): (score: number, b: number, h: number, q: number, kv: number) => number {
  const t = traceScoreMod(mod);
  const f = compileExpr(t.expr), caps = capturesOf(t);
  return (score, b, h, q, kv) => f({ score, b, h, q, kv }, caps) as number;
}

/** Evaluates an untraced expression (no captures) at one point. */
export function evalAt(e: Expr, env: Partial<ModEnv> = {}): number | boolean {
  return compileExpr(e)({ score: 0, b: 0, h: 0, q: 0, kv: 0, ...env }, []);
}

/** Dense S×S boolean grid (row q, column kv) of a predicate, as a 0/1 array. */
export function denseMask(S: number, pred: (q: number, kv: number) => boolean, Skv = S): Uint8Array {
  const out = new Uint8Array(S * Skv);
  for (let q = 0; q < S; q++) for (let kv = 0; kv < Skv; kv++) out[q * Skv + kv] = pred(q, kv) ? 1 : 0;
  return out;
}

/** Index of the first difference between two grids, or -1. */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : a.length;
}
