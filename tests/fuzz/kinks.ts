/**
 * Kinks of a score mod: points where the mod or its derivative jumps (abs, min/max, clamp, floor, comparisons,
 * sqrt/log at 0, …). The oracle evaluates scores in float64, the kernels in f32: a score within rounding of a
 * kink can land on the other side on the GPU, and one such entry moves dq/dk by O(1) — the fuzz met it
 * (`sqrt(|s| + 1)` with one score of 9.3e-9, FUZZ_SEED=20261201 case 341). That is the mod's discontinuity, not a
 * kernel error, so the checker asks this module — only after a comparison failed — whether some score-dependent
 * kink argument lies within KINK_EPS (relative) of its kink; if so the case is "nearKink" instead of a failure.
 * Index-only kinks are not consulted: they are exact on both sides and must never excuse a mismatch.
 */
import { type Expr, toposort } from "../../lib/ir/expr.ts";
import { type CaptureData, compileExpr, type ModEnv } from "../../lib/mods/evaluate.ts";

export const KINK_EPS = 1e-5;

type Margin = (xs: number[]) => number;
const dist = (a: number, b: number) => Math.abs(a - b) / (1 + Math.abs(a) + Math.abs(b));
const toInt = (x: number) => Math.abs(x - Math.round(x)) / (1 + Math.abs(x));

/** Per op: the relative distance of its (float) arguments to the op's kink. */
const MARGINS: Partial<Record<string, Margin>> = {
  abs: ([x]) => Math.abs(x), sqrt: ([x]) => Math.abs(x), log: ([x]) => Math.abs(x), pow: ([x]) => Math.abs(x),
  floor: ([x]) => toInt(x),
  min: ([a, b]) => dist(a, b), max: ([a, b]) => dist(a, b),
  lt: ([a, b]) => dist(a, b), le: ([a, b]) => dist(a, b), gt: ([a, b]) => dist(a, b), ge: ([a, b]) => dist(a, b),
  eq: ([a, b]) => dist(a, b), ne: ([a, b]) => dist(a, b),
  clamp: ([x, lo, hi]) => Math.min(dist(x, lo), dist(x, hi)),
  floorDiv: ([a, b]) => (b === 0 ? 0 : toInt(a / b)), mod: ([a, b]) => (b === 0 ? 0 : toInt(a / b)),
};

function dependsOnScore(e: Expr, memo: Map<string, boolean>): boolean {
  const hit = memo.get(e.hash);
  if (hit !== undefined) return hit;
  const r = (e.op === "arg" && e.arg === "score") || e.src.some((s) => dependsOnScore(s, memo));
  memo.set(e.hash, r);
  return r;
}

export interface KinkInputs {
  readonly B: number; readonly Hq: number; readonly Hkv: number; readonly Sq: number; readonly Skv: number; readonly D: number;
  readonly q: ArrayLike<number>; readonly k: ArrayLike<number>; readonly scale: number;
  readonly captures: readonly CaptureData[];
  /** k / v batch 1 shared by every batch of q. */
  readonly kvBatch?: number;
}

/** The smallest relative margin to a kink over every (b, h, q, kv) entry (Infinity: the mod has none). */
export function minKinkMargin(score: Expr, x: KinkInputs): number {
  const memo = new Map<string, boolean>();
  const kinks = toposort(score).filter((n) => MARGINS[n.op] && n.src.some((s) => s.dtype === "f32") && dependsOnScore(n, memo));
  if (kinks.length === 0) return Infinity;
  const evals = kinks.map((n) => ({ margin: MARGINS[n.op]!, args: n.src.map((s) => compileExpr(s)) }));
  const env: ModEnv = { score: 0, b: 0, h: 0, q: 0, kv: 0 };
  const ratio = x.Hq / x.Hkv, kvB = x.kvBatch ?? x.B;
  let min = Infinity;
  for (let b = 0; b < x.B; b++) for (let h = 0; h < x.Hq; h++) for (let i = 0; i < x.Sq; i++) for (let j = 0; j < x.Skv; j++) {
    const qo = ((b * x.Hq + h) * x.Sq + i) * x.D, ko = (((kvB === 1 ? 0 : b) * x.Hkv + Math.floor(h / ratio)) * x.Skv + j) * x.D;
    let s = 0;
    for (let d = 0; d < x.D; d++) s += x.q[qo + d] * x.k[ko + d];
    Object.assign(env, { score: s * x.scale, b, h, q: i, kv: j });
    for (const k of evals) {
      let m: number;
      try { m = k.margin(k.args.map((f) => Number(f(env, x.captures)))); } catch { continue; } // an out-of-range read: judged elsewhere
      if (m < min) min = m;
    }
  }
  return min;
}
