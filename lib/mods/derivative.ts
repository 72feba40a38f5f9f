/**
 * Symbolic derivative of the mod IR: reverse accumulation over a traced expression's DAG.
 *
 * `derivative(expr, "score")` is ∂expr/∂score as a new Expr; `derivative(expr, { slot })` lists, for every
 * distinct read `cap[slot][i, j, ...]` of a captured tensor, ∂expr/∂(that read) together with the read's
 * index expressions, so a backward pass can scatter-add `dS · d` into the capture's gradient at the
 * evaluated index. A tensor read at two different indices gives two entries; the same read used twice is
 * one DAG node whose entry already sums both uses.
 *
 * The rule table is total over `Op` (a new op fails to type-check until it gets a rule). Non-differentiable
 * points follow PyTorch's derivatives.yaml: abs'(0) = 0 (grad · sgn), clamp passes the gradient where
 * lo ≤ x ≤ hi (inclusive), min/max split it in halves at ties, floor / floorDiv have zero derivative,
 * mod (Python's %, torch.remainder) passes g to x and −g·floor(x/y) to y, `where` routes it.
 * Integer and bool sub-expressions carry no gradient (their contributions are dropped).
 * One deliberate difference from PyTorch: the branch a `where` did not take contributes an exact 0, never
 * NaN (see `applyRule`), so `where(s > 0, s.sqrt(), 0)` is differentiable at s < 0.
 *
 * The results are simplified only where it is exact (x·1 → x, x + 0 → x, −(−x) → x; constants fold in
 * the Expr constructors). x·0 is kept for non-constant x so an infinite factor still yields NaN, which
 * the backward pass reports as UndefinedDerivative instead of hiding it.
 */
import { type CustomOpDef, Expr, type LoadArg, type Op, toposort, where } from "../ir/expr.ts";
import { UndefinedDerivative } from "../errors.ts";

/** One rule: given the node `e` and the gradient `g` of its output, the gradient of each source (null: none). */
export type Rule = (e: Expr, g: Expr) => readonly (Expr | null)[];

const F0 = Expr.const(0, "f32");
const F1 = Expr.const(1, "f32");

const isConst = (e: Expr, v: number) => e.op === "const" && e.arg === v;

/** a · b, dropping exact unit factors. */
export function times(a: Expr, b: Expr): Expr {
  if (isConst(a, 1)) return b;
  if (isConst(b, 1)) return a;
  return a.mul(b);
}
/** a + b, dropping an exact zero term. */
export function plus(a: Expr, b: Expr): Expr {
  if (isConst(a, 0)) return b;
  if (isConst(b, 0)) return a;
  return a.add(b);
}
function negate(a: Expr): Expr { return a.op === "neg" ? a.src[0] : a.neg(); }
function over(a: Expr, b: Expr): Expr { return isConst(b, 1) ? a : a.div(b); }

const none: Rule = (e) => e.src.map(() => null);

/** min/max: the chosen operand gets g, both get g/2 at a tie (torch.minimum / torch.maximum). */
function minMaxRule(pickFirst: (x: Expr, y: Expr) => Expr): Rule {
  return (e, g) => {
    const [x, y] = e.src;
    const half = times(g, Expr.const(0.5, "f32"));
    const first = pickFirst(x, y); // bool: x strictly wins
    const second = pickFirst(y, x);
    return [
      where(x.eq(y), half, where(first, g, F0)),
      where(x.eq(y), half, where(second, g, F0)),
    ];
  };
}

export const DERIVATIVE_RULES: Record<Op, Rule> = {
  // leaves: the driver reads their accumulated gradient, nothing to propagate
  const: none,
  arg: none,
  load: none,
  // d(−x) = −g
  neg: (_e, g) => [negate(g)],
  // d|x| = g·sgn(x), sgn(0) = 0 (PyTorch: grad * self.sgn())
  abs: (e, g) => {
    const x = e.src[0];
    return [where(x.gt(0), g, where(x.lt(0), negate(g), F0))];
  },
  // d eˣ = g·eˣ (reuses the output)
  exp: (e, g) => [times(g, e)],
  // d 2ˣ = g·2ˣ·ln 2
  exp2: (e, g) => [times(times(g, e), Expr.const(Math.LN2, "f32"))],
  // d ln x = g / x
  log: (e, g) => [over(g, e.src[0])],
  // d √x = g / (2√x)  (PyTorch: grad / (2 * result); ∞ at 0)
  sqrt: (e, g) => [over(g, e.mul(2))],
  // d tanh x = g·(1 − tanh²x)
  tanh: (e, g) => [times(g, F1.sub(e.mul(e)))],
  // d σ(x) = g·σ(x)·(1 − σ(x))
  sigmoid: (e, g) => [times(g, e.mul(F1.sub(e)))],
  // floor is piecewise constant: zero (PyTorch: zeros_like(grad))
  floor: none,
  // bool → bool
  not: none,
  // a cast changes the dtype; float → int and int → float carry no gradient (only f32 → f32 would, and
  // castTo never builds that), so the driver drops it by dtype
  cast: (_e, g) => [g],
  // d(x + y) = (g, g)
  add: (_e, g) => [g, g],
  // d(x − y) = (g, −g)
  sub: (_e, g) => [g, negate(g)],
  // d(x·y) = (g·y, g·x)
  mul: (e, g) => [times(g, e.src[1]), times(g, e.src[0])],
  // d(x / y) = (g / y, −g·x / y²)  (PyTorch's div backward)
  div: (e, g) => {
    const [x, y] = e.src;
    return [over(g, y), negate(times(g, x).div(y.mul(y)))];
  },
  // d(xʸ): x gets g·y·x^(y−1), 0 where y == 0; y gets g·xʸ·ln x, 0 where x == 0 and y ≥ 0
  // (PyTorch's pow_backward_self / pow_backward_exponent)
  pow: (e, g) => {
    const [x, y] = e.src;
    return [
      where(y.eq(0), F0, times(g, y.mul(x.pow(y.sub(1))))),
      where(x.eq(0).and(y.ge(0)), F0, times(g, e.mul(x.log()))),
    ];
  },
  // min(x, y): the smaller operand gets g; a tie splits g in halves (torch.minimum)
  min: minMaxRule((x, y) => x.lt(y)),
  // max(x, y): the larger operand gets g; a tie splits g in halves (torch.maximum)
  max: minMaxRule((x, y) => x.gt(y)),
  // ⌊x / y⌋ is piecewise constant: zero for both
  floorDiv: none,
  // x mod y = x − y·⌊x/y⌋ (Python's %, torch.remainder): (g, −g·⌊x/y⌋)
  mod: (e, g) => {
    const [x, y] = e.src;
    return [g, negate(times(g, x.floorDiv(y)))];
  },
  // comparisons and logic: bool results, no gradient
  eq: none, ne: none, lt: none, le: none, gt: none, ge: none, and: none, or: none,
  // clamp(x, lo, hi) = min(max(x, lo), hi) (hi wins when lo > hi), PyTorch's clamp_backward_min_max:
  // x gets g where lo ≤ x ≤ hi; lo gets g where x < lo and lo < hi; hi gets g where x > hi or hi < lo
  clamp: (e, g) => {
    const [x, lo, hi] = e.src;
    return [
      where(x.ge(lo).and(x.le(hi)), g, F0),
      where(x.lt(lo).and(lo.lt(hi)), g, F0),
      where(x.gt(hi).or(hi.lt(lo)), g, F0),
    ];
  },
  // where(c, a, b) routes g: a gets it where c holds, b elsewhere; c is a bool
  where: (e, g) => {
    const [c] = e.src;
    return [null, where(c, g, F0), where(c, F0, g)];
  },
  // a user's pointwise op: its own vjp, `def.grad(inputs, g)`
  custom: (e, g) => {
    const def = e.arg as CustomOpDef;
    if (!def.grad) {
      throw new UndefinedDerivative({
        message: `custom op ${def.name} has no derivative: pass grad: (inputs, g) => [...] to customOp() to differentiate through it`,
      });
    }
    const gs = def.grad(e.src, g);
    if (gs.length !== e.src.length) {
      throw new UndefinedDerivative({
        message: `custom op ${def.name}: grad returned ${gs.length} expressions for ${e.src.length} inputs`,
      });
    }
    return gs.map((x) => x.toFloat());
  },
};

/**
 * Applies `e`'s rule to `g`, lifting a routing `where` out first: every rule is linear in g, so
 * rule(where(c, g', 0)) = where(c, rule(g'), 0) wherever rule(g') is finite. Lifting keeps the branch
 * that `where` did not take from poisoning the result (PyTorch / JAX return NaN for
 * `where(s > 0, sqrt(s), 0)` at s < 0, since 0 · ∞ = NaN; here the gradient is the true 0).
 */
function applyRule(e: Expr, g: Expr): readonly (Expr | null)[] {
  if (g.op === "where") {
    const [c, a, b] = g.src;
    if (isConst(b, 0)) return applyRule(e, a).map((p) => p && where(c, p, F0));
    if (isConst(a, 0)) return applyRule(e, b).map((p) => p && where(c, F0, p));
  }
  return DERIVATIVE_RULES[e.op](e, g);
}

/** The gradient of a mod's output with respect to every float node of its DAG, keyed by node hash. */
export function adjoints(root: Expr): Map<string, Expr> {
  if (root.dtype !== "f32") return new Map(); // a bool / int result has no gradient
  const order = toposort(root);
  const adj = new Map<string, Expr>([[root.hash, F1]]);
  for (let i = order.length - 1; i >= 0; i--) {
    const e = order[i];
    const g = adj.get(e.hash);
    if (!g || e.dtype !== "f32" || e.src.length === 0) continue;
    const parts = applyRule(e, g);
    e.src.forEach((s, k) => {
      const part = parts[k];
      if (!part || s.dtype !== "f32") return; // ints and bools carry no gradient
      const prev = adj.get(s.hash);
      adj.set(s.hash, prev ? plus(prev, part) : part);
    });
  }
  return adj;
}

/** ∂/∂(one captured-tensor read): the read, its index expressions (i32), and the derivative. */
export interface LoadGradient {
  readonly load: Expr;
  readonly indices: readonly Expr[];
  readonly d: Expr;
}

/** Everything a backward pass needs of a score mod, from one reverse sweep. */
export interface ScoreModGradients {
  /** ∂mod/∂score (const 0 when the mod ignores the score). */
  readonly dScore: Expr;
  /** Per capture slot, the reads of that tensor with their derivatives (f32 captures only). */
  readonly captures: ReadonlyMap<number, readonly LoadGradient[]>;
}

export function scoreModGradients(expr: Expr): ScoreModGradients {
  const adj = adjoints(expr);
  const nodes = toposort(expr);
  const score = nodes.find((n) => n.op === "arg" && n.arg === "score");
  const captures = new Map<number, LoadGradient[]>();
  for (const n of nodes) {
    if (n.op !== "load" || n.dtype !== "f32") continue;
    const d = adj.get(n.hash);
    if (!d) continue;
    const slot = (n.arg as LoadArg).slot;
    const list = captures.get(slot) ?? [];
    list.push({ load: n, indices: n.src, d });
    captures.set(slot, list);
  }
  return { dScore: (score && adj.get(score.hash)) ?? F0, captures };
}

/**
 * `derivative(expr, "score")`: ∂expr/∂score. `derivative(expr, { slot })`: one entry per distinct read of
 * capture `slot` (empty when the tensor is not read, is an i32 tensor, or its reads do not affect the value).
 * `derivative(expr, node)`: ∂expr/∂node for any float node of the DAG (the score argument, one load, ...).
 */
export function derivative(expr: Expr, wrt: "score"): Expr;
export function derivative(expr: Expr, wrt: { readonly slot: number }): readonly LoadGradient[];
export function derivative(expr: Expr, wrt: Expr): Expr;
export function derivative(expr: Expr, wrt: "score" | Expr | { readonly slot: number }): Expr | readonly LoadGradient[] {
  if (wrt instanceof Expr) return adjoints(expr).get(wrt.hash) ?? F0;
  const all = scoreModGradients(expr);
  return wrt === "score" ? all.dScore : all.captures.get(wrt.slot) ?? [];
}
