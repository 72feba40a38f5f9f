/**
 * `simplify(expr)`: algebraic clean-up of a mod's IR before code generation. Constant folding already
 * happens in the smart constructors (lib/ir/expr.ts); this pass adds identities that the constructors do not
 * see (user code like `q.sub(kv).add(0)`, shared subtrees that meet after composition, rewrites made by
 * other passes with `Expr.node`).
 *
 * Every rule is EXACT in the IR's arithmetic — i32 wraps, f32 follows IEEE-754 including NaN, ±∞ and −0 —
 * so a simplified mod computes bit-for-bit what the original does. That is why several textbook rules are
 * restricted to integers: `x − x → 0` fails for x = ∞ or NaN, `x + 0 → x` turns −0 into +0, and
 * `x == x → true` fails for NaN. Rules are applied bottom-up until nothing changes.
 */
import { applyOp, COMPARE_OPS, Expr, rewrite, type ScalarType } from "../ir/expr.ts";

const isConst = (e: Expr, v: number | boolean): boolean => e.op === "const" && Object.is(e.arg, v);
const same = (a: Expr, b: Expr): boolean => a.hash === b.hash;
const isInt = (e: Expr): boolean => e.dtype === "i32";
/** Integers and bools: types where x == x always holds (no NaN). */
const isExactEq = (e: Expr): boolean => e.dtype === "i32" || e.dtype === "bool";

function konst(v: number | boolean, t: ScalarType): Expr { return Expr.const(v, t); }

/** The negation of a comparison over non-NaN operands: ¬(a < b) ≡ a ≥ b. */
const NEGATED_COMPARE: Record<string, "eq" | "ne" | "lt" | "le" | "gt" | "ge"> = {
  eq: "ne", ne: "eq", lt: "ge", le: "gt", gt: "le", ge: "lt",
};

/** Folds a node whose children are all constants (rewrites can create such nodes). */
function foldConstants(e: Expr): Expr | undefined {
  if (e.src.length === 0 || !e.src.every((s) => s.op === "const")) return undefined;
  if (e.op === "load" || e.op === "custom") return undefined;
  return konst(applyOp(e.op, e.dtype, e.src.map((s) => s.arg as number | boolean)), e.dtype);
}

function simplifyArith(e: Expr): Expr | undefined {
  const [a, b] = e.src;
  const int = isInt(e);
  switch (e.op) {
    case "add":
      if (int && isConst(b, 0)) return a;
      if (int && isConst(a, 0)) return b;
      if (!int && isConst(b, -0)) return a; // x + (−0) = x for every x, −0 included
      if (!int && isConst(a, -0)) return b;
      if (b.op === "neg") return Expr.node("sub", e.dtype, [a, b.src[0]]); // IEEE defines a − b as a + (−b)
      if (a.op === "neg") return Expr.node("sub", e.dtype, [b, a.src[0]]);
      return undefined;
    case "sub":
      if (isConst(b, 0)) return a; // x − (+0) = x, also for x = −0
      if (int && isConst(a, 0)) return Expr.node("neg", e.dtype, [b]);
      if (!int && isConst(a, -0)) return Expr.node("neg", e.dtype, [b]);
      if (int && same(a, b)) return konst(0, "i32");
      if (b.op === "neg") return Expr.node("add", e.dtype, [a, b.src[0]]);
      return undefined;
    case "mul":
      if (isConst(b, 1)) return a;
      if (isConst(a, 1)) return b;
      if (isConst(b, -1)) return Expr.node("neg", e.dtype, [a]);
      if (isConst(a, -1)) return Expr.node("neg", e.dtype, [b]);
      if (int && (isConst(a, 0) || isConst(b, 0))) return konst(0, "i32");
      if (a.op === "neg" && b.op === "neg") return Expr.node("mul", e.dtype, [a.src[0], b.src[0]]);
      return undefined;
    case "div":
      if (isConst(b, 1)) return a;
      if (isConst(b, -1)) return Expr.node("neg", e.dtype, [a]);
      return undefined;
    case "floorDiv":
      if (int && isConst(b, 1)) return a;
      return undefined;
    case "mod":
      if (int && isConst(b, 1)) return konst(0, "i32");
      return undefined;
    case "min":
    case "max":
      if (same(a, b)) return a;
      return undefined;
    case "neg":
      if (a.op === "neg") return a.src[0];
      if (int && a.op === "sub") return Expr.node("sub", e.dtype, [a.src[1], a.src[0]]);
      return undefined;
    case "abs":
      if (a.op === "abs") return a;
      if (a.op === "neg") return Expr.node("abs", e.dtype, [a.src[0]]);
      return undefined;
    case "clamp": {
      const [, lo, hi] = e.src;
      if (same(lo, hi) && isInt(e)) return lo; // min(max(x, c), c) = c
      return undefined;
    }
    default:
      return undefined;
  }
}

function simplifyCompare(e: Expr): Expr | undefined {
  const [a, b] = e.src;
  if (!same(a, b) || !isExactEq(a)) return undefined;
  return konst(e.op === "eq" || e.op === "le" || e.op === "ge", "bool");
}

/** `x` and `¬x` in either order, also as opposite integer comparisons (`q < kv` and `q >= kv`). */
function complementary(a: Expr, b: Expr): boolean {
  if ((a.op === "not" && same(a.src[0], b)) || (b.op === "not" && same(b.src[0], a))) return true;
  return COMPARE_OPS.has(a.op) && NEGATED_COMPARE[a.op] === b.op && isExactEq(a.src[0]) &&
    same(a.src[0], b.src[0]) && same(a.src[1], b.src[1]);
}

function simplifyLogic(e: Expr): Expr | undefined {
  const [a, b] = e.src;
  const isAnd = e.op === "and";
  const unit = isAnd; // x ∧ true = x, x ∨ false = x
  if (isConst(a, unit)) return b;
  if (isConst(b, unit)) return a;
  if (isConst(a, !unit) || isConst(b, !unit)) return konst(!unit, "bool");
  if (same(a, b)) return a;
  if (complementary(a, b)) return konst(!isAnd, "bool");
  // absorption: a ∧ (a ∨ x) = a, a ∨ (a ∧ x) = a
  const dual = isAnd ? "or" : "and";
  if (b.op === dual && b.src.some((s) => same(s, a))) return a;
  if (a.op === dual && a.src.some((s) => same(s, b))) return b;
  return undefined;
}

function simplifyNot(e: Expr): Expr | undefined {
  const [a] = e.src;
  if (a.op === "not") return a.src[0];
  if (COMPARE_OPS.has(a.op) && isExactEq(a.src[0])) return Expr.node(NEGATED_COMPARE[a.op], "bool", a.src);
  return undefined;
}

function simplifyWhere(e: Expr): Expr | undefined {
  const [c, x, y] = e.src;
  if (c.op === "const") return c.arg ? x : y;
  if (same(x, y)) return x;
  if (c.op === "not") return Expr.node("where", e.dtype, [c.src[0], y, x]);
  if (e.dtype === "bool") {
    if (isConst(x, true) && isConst(y, false)) return c;
    if (isConst(x, false) && isConst(y, true)) return Expr.node("not", "bool", [c]);
  }
  return undefined;
}

function simplifyCast(e: Expr): Expr | undefined {
  const [a] = e.src;
  if (a.dtype === e.dtype) return a;
  // bool → i32 → bool and bool → i32 → f32 keep the value exactly
  if (a.op === "cast" && a.src[0].dtype === "bool" && a.dtype === "i32") {
    return e.dtype === "bool" ? a.src[0] : Expr.node("cast", e.dtype, [a.src[0]], e.dtype);
  }
  return undefined;
}

function step(e: Expr): Expr | undefined {
  const folded = foldConstants(e);
  if (folded) return folded;
  if (COMPARE_OPS.has(e.op)) return simplifyCompare(e);
  switch (e.op) {
    case "and": case "or": return simplifyLogic(e);
    case "not": return simplifyNot(e);
    case "where": return simplifyWhere(e);
    case "cast": return simplifyCast(e);
    default: return simplifyArith(e);
  }
}

const MAX_ROUNDS = 16;

/**
 * Simplifies `root` to a fixpoint (bounded); the result evaluates exactly as `root` does everywhere.
 *
 * @example
 * ```ts
 * import { Expr, simplify } from "@flex/attention";
 * const e = simplify(Expr.arg("q").add(0).mul(1)); // q
 * ```
 */
export function simplify(root: Expr): Expr {
  let cur = root;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    // a rule may expose another at the same node, so re-apply locally a few times per visit
    const next = rewrite(cur, (e) => {
      let out: Expr | undefined, e2 = e;
      for (let k = 0; k < 8; k++) {
        const r = step(e2);
        if (!r || r.hash === e2.hash) break;
        out = e2 = r;
      }
      return out;
    });
    if (next.hash === cur.hash) return next;
    cur = next;
  }
  return cur;
}
