/**
 * Expr → WGSL interval bounds of a mask mod over a block:
 * `fn mask_bounds(b: i32, h: i32, q_lo: i32, q_hi: i32, kv_lo: i32, kv_hi: i32) -> vec2<i32>` returns the
 * mask's value range over every (q, kv) of the rectangle as a bool interval: (1, 1) every entry true, (0, 0)
 * every entry false, (0, 1) not decided (the states kernel then evaluates the entries). Causal, sliding-window,
 * prefix and chunked masks decide every block off the diagonal band here, so the kernel evaluates the band only.
 *
 * Sound by construction: every i32 node is a `vec2<i32>` (lo, hi) holding every value the node takes;
 * comparisons and logic give bool intervals in {0, 1}. Arithmetic that could wrap in i32 (the IR wraps) is
 * only done on narrow operands (|x| ≤ 2^29 for ±, ≤ 2^15 for ·), else the result is the full i32 range. f32
 * nodes and ops without a rule (division by a non-constant, custom ops) are not bounded: their bool consumers
 * become (0, 1), their i32 consumers the full range. A captured-tensor load is allowed only when its index
 * intervals lie inside the tensor (checked at run time; otherwise the block is not decided), so a block
 * decided here could not have raised CaptureOutOfRange in the full evaluation.
 */
import type { Expr, LoadArg } from "../ir/expr.ts";
import { toposort } from "../ir/expr.ts";
import { i32Literal } from "./wgsl_expr.ts";

const HELPERS = `const FLEX_IV_FULL = vec2<i32>(i32(-2147483647 - 1), 2147483647);
const FLEX_IV_MAYBE = vec2<i32>(0, 1);
fn flex_iv_narrow(a: vec2<i32>, m: i32) -> bool { return a.x >= -m && a.y <= m; }
fn flex_iv_add(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> {
  if (flex_iv_narrow(a, 536870912) && flex_iv_narrow(b, 536870912)) { return a + b; }
  return FLEX_IV_FULL;
}
fn flex_iv_sub(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> {
  if (flex_iv_narrow(a, 536870912) && flex_iv_narrow(b, 536870912)) { return vec2<i32>(a.x - b.y, a.y - b.x); }
  return FLEX_IV_FULL;
}
fn flex_iv_mul(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> {
  if (flex_iv_narrow(a, 32767) && flex_iv_narrow(b, 32767)) {
    let p = vec4<i32>(a.x * b.x, a.x * b.y, a.y * b.x, a.y * b.y);
    return vec2<i32>(min(min(p.x, p.y), min(p.z, p.w)), max(max(p.x, p.y), max(p.z, p.w)));
  }
  return FLEX_IV_FULL;
}
fn flex_iv_neg(a: vec2<i32>) -> vec2<i32> {
  if (flex_iv_narrow(a, 536870912)) { return vec2<i32>(-a.y, -a.x); }
  return FLEX_IV_FULL;
}
fn flex_iv_abs(a: vec2<i32>) -> vec2<i32> {
  if (!flex_iv_narrow(a, 536870912)) { return FLEX_IV_FULL; }
  if (a.x >= 0) { return a; }
  if (a.y <= 0) { return vec2<i32>(-a.y, -a.x); }
  return vec2<i32>(0, max(-a.x, a.y));
}
fn flex_iv_lt(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> { return vec2<i32>(select(0, 1, a.y < b.x), select(1, 0, a.x >= b.y)); }
fn flex_iv_le(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> { return vec2<i32>(select(0, 1, a.y <= b.x), select(1, 0, a.x > b.y)); }
fn flex_iv_eq(a: vec2<i32>, b: vec2<i32>) -> vec2<i32> {
  let one = a.x == a.y && b.x == b.y && a.x == b.x;
  let apart = a.y < b.x || b.y < a.x;
  return vec2<i32>(select(0, 1, one), select(1, 0, apart));
}
fn flex_iv_not(a: vec2<i32>) -> vec2<i32> { return vec2<i32>(1 - a.y, 1 - a.x); }
fn flex_iv_where(c: vec2<i32>, x: vec2<i32>, y: vec2<i32>) -> vec2<i32> {
  if (c.x == 1) { return x; }
  if (c.y == 0) { return y; }
  return vec2<i32>(min(x.x, y.x), max(x.y, y.y));
}
// floor(a / c) for a constant c > 0 (Python's //), monotonic in a
fn flex_iv_fd(a: i32, c: i32) -> i32 {
  let q = a / c;
  return select(q, q - 1, a - q * c < 0);
}
fn flex_iv_floordiv(a: vec2<i32>, c: i32) -> vec2<i32> { return vec2<i32>(flex_iv_fd(a.x, c), flex_iv_fd(a.y, c)); }
fn flex_iv_mod(a: vec2<i32>, c: i32) -> vec2<i32> {
  let qa = flex_iv_fd(a.x, c);
  let qb = flex_iv_fd(a.y, c);
  // one period: the remainder grows with a (wrapping products still give the exact remainder in [0, c))
  if (qa == qb) { return vec2<i32>(a.x - qa * c, a.y - qb * c); }
  return vec2<i32>(0, c - 1);
}`;

/** A positive i32 constant divisor, else undefined. */
function positiveConst(e: Expr): number | undefined {
  return e.op === "const" && e.dtype === "i32" && (e.arg as number) > 0 ? e.arg as number : undefined;
}

/**
 * The `mask_bounds` function of a traced mask expression (and the helpers it uses). An expression with nothing
 * to bound (every comparison over floats) gives a function that always answers (0, 1).
 */
export function maskBoundsWgsl(root: Expr): string {
  const nodes = toposort(root);
  const iv = new Map<string, string | undefined>(); // hash → WGSL vec2<i32> expression; undefined: f32, not bounded
  const lines: string[] = [];
  const safe: string[] = [];
  let tmp = 0;
  const bind = (expr: string) => {
    const name = `iv${tmp++}`;
    lines.push(`let ${name} = ${expr};`);
    return name;
  };
  const unknownOf = (e: Expr) => (e.dtype === "bool" ? "FLEX_IV_MAYBE" : e.dtype === "i32" ? "FLEX_IV_FULL" : undefined);
  for (const n of nodes) {
    const a = n.src.map((s) => iv.get(s.hash));
    let out: string | undefined;
    if (n.dtype === "f32") out = undefined;
    else if (n.op === "const") {
      out = n.dtype === "bool" ? (n.arg ? "vec2<i32>(1, 1)" : "vec2<i32>(0, 0)") : `vec2<i32>(${i32Literal(n.arg as number)}, ${i32Literal(n.arg as number)})`;
    } else if (n.op === "arg") {
      const name = n.arg as string;
      out = name === "q" ? "vec2<i32>(q_lo, q_hi)" : name === "kv" ? "vec2<i32>(kv_lo, kv_hi)" : `vec2<i32>(${name}, ${name})`;
    } else if (n.op === "load") {
      // the value is not bounded; its indices must stay inside the tensor for the block to be decided
      const shape = (n.arg as LoadArg).shape;
      a.forEach((ix, d) => safe.push(ix === undefined ? "false" : `(${ix}.x >= 0 && ${ix}.y < ${i32Literal(shape[d])})`));
      out = unknownOf(n);
    } else if (a.some((x) => x === undefined)) {
      out = unknownOf(n); // an f32 operand (a comparison of floats, a cast from f32)
    } else {
      const [x, y, z] = a as string[];
      switch (n.op) {
        case "add": case "sub": case "mul": case "neg": case "abs": case "lt": case "le": case "eq": case "not":
          out = `flex_iv_${n.op}(${a.join(", ")})`;
          break;
        case "gt": out = `flex_iv_lt(${y}, ${x})`; break;
        case "ge": out = `flex_iv_le(${y}, ${x})`; break;
        case "ne": out = `flex_iv_not(flex_iv_eq(${x}, ${y}))`; break;
        case "and": case "min": out = `min(${x}, ${y})`; break;
        case "or": case "max": out = `max(${x}, ${y})`; break;
        case "clamp": out = `min(max(${x}, ${y}), ${z})`; break;
        case "where": out = `flex_iv_where(${x}, ${y}, ${z})`; break;
        case "cast":
          // bool → i32 keeps the interval; i32 → bool is x ≠ 0
          out = n.dtype === "bool" && n.src[0].dtype === "i32" ? `flex_iv_not(flex_iv_eq(${x}, vec2<i32>(0, 0)))` : x;
          break;
        case "floorDiv": case "mod": {
          const c = positiveConst(n.src[1]);
          out = c === undefined ? unknownOf(n) : `flex_iv_${n.op === "mod" ? "mod" : "floordiv"}(${x}, ${i32Literal(c)})`;
          break;
        }
        default: out = unknownOf(n);
      }
    }
    iv.set(n.hash, out === undefined || out.startsWith("FLEX_") || n.op === "const" || n.op === "arg" ? out : bind(out));
  }
  const result = iv.get(root.hash) ?? "FLEX_IV_MAYBE";
  const guarded = safe.length ? `select(FLEX_IV_MAYBE, ${result}, ${safe.join(" && ")})` : result;
  return `${HELPERS}
fn mask_bounds(b: i32, h: i32, q_lo: i32, q_hi: i32, kv_lo: i32, kv_hi: i32) -> vec2<i32> {
${lines.map((l) => `  ${l}\n`).join("")}  return ${guarded};
}`;
}
