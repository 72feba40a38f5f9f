/**
 * The scalar expression IR of the mod language: one immutable node class, `Expr {op, dtype, src, arg}`.
 *
 * A mod (`scoreMod(score, b, h, q, kv)`, `maskMod(b, h, q, kv)`) is called once with symbolic `Expr`
 * arguments; the methods below build the tree. TypeScript has no operator overloading, so arithmetic is
 * spelled `q.sub(kv).le(w)`. JS numbers are lifted to constants; integer constants are `i32`, others `f32`.
 *
 * Typing follows PyTorch's scalar promotion: `i32 ∘ f32 → f32`, `bool` in arithmetic acts as `i32`,
 * `div` is true division (always `f32`), `floorDiv` / `mod` follow Python (floor, sign of the divisor),
 * comparisons give `bool`, and/or/not take `bool` only.
 *
 * Nodes carry a structural hash (`hash`), computed from op, dtype, arg and the children's hashes: equal
 * trees have equal hashes, so the hash of a traced mod is the kernel-cache key. A captured tensor read
 * (`load`) hashes by slot number, shape and dtype once traced (see lib/mods/trace.ts), never by values.
 *
 * JS operators on an Expr (`q >= kv`, `s * 2`, `` `${q}` ``) throw ModOperatorError through
 * `Symbol.toPrimitive` instead of comparing strings or giving NaN; `e.toString()` (the method) still renders.
 * `&&`, `!` and `?:` never convert their operand: lib/ir/usage.ts and the tracer catch what they drop.
 *
 * This folder is the bottom layer: it imports nothing from the rest of the library but the errors.
 */
import { ModTypeError, ShapeError, CaptureOutOfRange, DTypeError, ModOperatorError } from "../errors.ts";
import { noteBuilt, noteUsed } from "./usage.ts";

/**
 * The type of a symbolic scalar in a mod: `f32` (scores), `i32` (indices) or `bool` (mask results).
 *
 * @example
 * ```ts
 * import { type Expr } from "@flex/attention";
 * const isIndex = (e: Expr) => e.dtype === "i32"; // q, kv, b, h are i32; score is f32
 * ```
 */
export type ScalarType = "f32" | "i32" | "bool";

/**
 * The operators, grouped. Order inside a group is irrelevant; names are what WGSL / CPU / grad tables key on.
 *
 * @example
 * ```ts
 * import { type Expr } from "@flex/attention";
 * const isLoad = (e: Expr) => e.op === "load"; // a captured tensor's read
 * ```
 */
export type Op =
  // leaves
  | "const" | "arg" | "load"
  // unary
  | "neg" | "abs" | "exp" | "exp2" | "log" | "sqrt" | "tanh" | "sigmoid" | "floor" | "not" | "cast"
  // binary
  | "add" | "sub" | "mul" | "div" | "pow" | "min" | "max" | "floorDiv" | "mod"
  | "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "and" | "or"
  // ternary and user-defined
  | "clamp" | "where" | "custom";

export const UNARY_FLOAT_OPS: ReadonlySet<Op> = new Set(["exp", "exp2", "log", "sqrt", "tanh", "sigmoid", "floor"]);
export const COMPARE_OPS: ReadonlySet<Op> = new Set(["eq", "ne", "lt", "le", "gt", "ge"]);

/** The names of a mod's symbolic arguments. `score` is f32, the indices are i32. */
export type ArgName = "score" | "b" | "h" | "q" | "kv";

/**
 * What `t.at(...)` needs to know of a captured tensor. Implemented by lib/tensor's Tensor.
 *
 * @example
 * ```ts
 * import { randn, type CaptureSource } from "@flex/attention";
 * const bias: CaptureSource = randn([16]); // a Tensor is one: read it in a mod with bias.at(q)
 * ```
 */
export interface CaptureSource {
  /** A process-unique id (the capture's identity). */
  readonly id: number;
  /** Its shape. */
  readonly shape: readonly number[];
  /** Its dtype (`f32` or `i32` in a mod). */
  readonly dtype: string;
}

/** The `arg` of a `load` node. Before tracing it names the tensor; after, only its slot. */
export interface LoadArg {
  readonly slot: number; // -1 until traced
  readonly shape: readonly number[];
  readonly dtype: "f32" | "i32";
  readonly source?: CaptureSource;
}

/**
 * A user-defined pointwise op (`customOp`): its own WGSL, CPU and derivative.
 * `wgsl` is the body of `fn NAME(x0: f32, ...) -> f32`; `cpu` evaluates it in float64;
 * `grad(inputs, outGrad)` returns one Expr per input (the vjp), built from the mod language.
 *
 * @example
 * ```ts
 * import { tanhApprox, type CustomOpDef } from "@flex/attention";
 * const def: CustomOpDef = tanhApprox.def;
 * console.log(def.wgsl);
 * ```
 */
export interface CustomOpDef {
  /** The WGSL function name. */
  readonly name: string;
  /** How many inputs. */
  readonly arity: number;
  /** The body of `fn name(x0: f32, …) -> f32`. */
  readonly wgsl: string;
  /** The float64 twin. */
  readonly cpu: (...xs: number[]) => number;
  /** The vjp, one Expr per input. */
  readonly grad?: (xs: readonly Expr[], g: Expr) => readonly Expr[];
}

/**
 * What a mod's operators accept: a symbolic scalar or a JS number / boolean (lifted to a constant).
 *
 * @example
 * ```ts
 * import { type Scalar } from "@flex/attention";
 * const bias = (x: Scalar) => x; // Expr, 3 or true
 * ```
 */
export type Scalar = Expr | number | boolean;

// cyrb53-style string hash → 13 hex digits; collisions are astronomically unlikely for kernel keys.
function hashString(str: string): string {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, "0");
}

function argKey(op: Op, arg: unknown): string {
  switch (op) {
    case "const": return Object.is(arg, -0) ? "-0" : String(arg);
    case "load": {
      const a = arg as LoadArg;
      return `${a.slot}:${a.shape.join("x")}:${a.dtype}:${a.slot < 0 ? a.source?.id : ""}`;
    }
    case "custom": {
      const c = arg as CustomOpDef;
      return `${c.name}:${hashString(c.wgsl)}`;
    }
    default: return arg === undefined ? "" : String(arg);
  }
}

/**
 * A symbolic scalar: what a mod's arguments are while it is traced. TypeScript has no operator overloading,
 * so arithmetic, comparisons and logic are methods; JS numbers are lifted to constants.
 *
 * @example
 * ```ts
 * import { type Expr, where } from "@flex/attention";
 * // a score mod: a distance penalty, and −∞ (masked) for keys in the future
 * const mod = (score: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) => where(kv.le(q), score.sub(q.sub(kv).mul(0.1)), -Infinity);
 * ```
 */
export class Expr {
  /** The structural hash of this expression tree (equal hash ⇒ same kernel). */
  readonly hash: string;
  private constructor(
    readonly op: Op,
    readonly dtype: ScalarType,
    readonly src: readonly Expr[],
    readonly arg?: unknown,
  ) {
    this.hash = hashString(`${op}|${dtype}|${argKey(op, arg)}|${src.map((s) => s.hash).join(",")}`);
    noteBuilt(this, src);
  }

  /** Raw node constructor: no checks, no folding. Used by rewrites that preserve typing. */
  static node(op: Op, dtype: ScalarType, src: readonly Expr[], arg?: unknown): Expr {
    return new Expr(op, dtype, src, arg);
  }

  // ---------------------------------------------------------------- leaves
  /** A constant (`i32` for integers, `f32` otherwise, `bool` for booleans, unless `dtype` says). */
  static const(value: number | boolean, dtype?: ScalarType): Expr {
    if (typeof value === "boolean") return new Expr("const", "bool", [], value);
    const t: ScalarType = dtype ?? (Number.isInteger(value) && Math.abs(value) <= 0x7fffffff ? "i32" : "f32");
    if (t === "bool") return new Expr("const", "bool", [], value !== 0);
    if (t === "i32") return new Expr("const", "i32", [], value | 0);
    return new Expr("const", "f32", [], Math.fround(value));
  }
  /** One of a mod's symbolic arguments (`score` f32; `b`, `h`, `q`, `kv` i32). */
  static arg(name: ArgName): Expr {
    return new Expr("arg", name === "score" ? "f32" : "i32", [], name);
  }
  /** `t.at(...indices)`: a gather from a captured tensor. Constant indices are range-checked here. */
  static load(source: CaptureSource, indices: readonly Scalar[]): Expr {
    if (source.dtype !== "f32" && source.dtype !== "i32") {
      throw new DTypeError({ message: `a captured tensor must be f32 or i32, got ${source.dtype}` });
    }
    if (indices.length !== source.shape.length) {
      throw new ShapeError({
        message: `t.at() got ${indices.length} indices for a tensor of rank ${source.shape.length} (shape [${source.shape}])`,
      });
    }
    const idx = indices.map((i, d) => {
      const e = lift(i);
      if (e.dtype === "f32") throw new ModTypeError({ message: `t.at(): index ${d} is a float; indices must be integers` });
      if (e.op === "const" && ((e.arg as number) < 0 || (e.arg as number) >= source.shape[d])) {
        throw new CaptureOutOfRange({
          message: `t.at(): index ${e.arg} out of range for dimension ${d} of size ${source.shape[d]}`,
        });
      }
      return e.dtype === "bool" ? castTo(e, "i32") : e;
    });
    const arg: LoadArg = { slot: -1, shape: [...source.shape], dtype: source.dtype as "f32" | "i32", source };
    return new Expr("load", source.dtype as ScalarType, idx, arg);
  }
  /** An application of a custom op (see `customOp`) to its inputs. */
  static custom(def: CustomOpDef, inputs: readonly Scalar[]): Expr {
    if (inputs.length !== def.arity) {
      throw new ModTypeError({ message: `custom op ${def.name} takes ${def.arity} inputs, got ${inputs.length}` });
    }
    return new Expr("custom", "f32", inputs.map((x) => toFloat(lift(x))), def);
  }

  /** True for a constant. */
  get isConst(): boolean { return this.op === "const"; }
  /** A constant's value; undefined for any other node. */
  get value(): number | boolean | undefined { return this.op === "const" ? this.arg as number | boolean : undefined; }

  // ---------------------------------------------------------------- arithmetic
  /** this + o. */
  add(o: Scalar): Expr { return arith("add", this, o); }
  /** this − o. */
  sub(o: Scalar): Expr { return arith("sub", this, o); }
  /** this · o. */
  mul(o: Scalar): Expr { return arith("mul", this, o); }
  /** this / o, in f32 (integers are converted). */
  div(o: Scalar): Expr { return binary("div", toFloat(this), toFloat(lift(o)), "f32"); }
  /** this raised to o, in f32. */
  pow(o: Scalar): Expr { return binary("pow", toFloat(this), toFloat(lift(o)), "f32"); }
  /** The smaller of this and o. */
  min(o: Scalar): Expr { return arith("min", this, o); }
  /** The larger of this and o. */
  max(o: Scalar): Expr { return arith("max", this, o); }
  /** ⌊this / o⌋ (Python's `//`). */
  floorDiv(o: Scalar): Expr { return arith("floorDiv", this, o); }
  /** this modulo o, with the sign of o (Python's `%`). */
  mod(o: Scalar): Expr { return arith("mod", this, o); }
  /** this limited to [lo, hi]. */
  clamp(lo: Scalar, hi: Scalar): Expr {
    const [a, l, h] = promote([this, lift(lo), lift(hi)]);
    return fold("clamp", a.dtype, [a, l, h]);
  }
  /** −this. */
  neg(): Expr { return fold("neg", numeric(this).dtype, [numeric(this)]); }
  /** |this|. */
  abs(): Expr { return fold("abs", numeric(this).dtype, [numeric(this)]); }
  /** e^this (f32). */
  exp(): Expr { return unaryFloat("exp", this); }
  /** 2^this (f32). */
  exp2(): Expr { return unaryFloat("exp2", this); }
  /** The natural logarithm (f32). */
  log(): Expr { return unaryFloat("log", this); }
  /** The square root (f32). */
  sqrt(): Expr { return unaryFloat("sqrt", this); }
  /** The hyperbolic tangent (f32). */
  tanh(): Expr { return unaryFloat("tanh", this); }
  /** 1 / (1 + e^−this) (f32). */
  sigmoid(): Expr { return unaryFloat("sigmoid", this); }
  /** ⌊this⌋ (f32). */
  floor(): Expr { return unaryFloat("floor", this); }
  /** This as f32. */
  toFloat(): Expr { return toFloat(this); }
  /** This as i32 (truncated toward zero). */
  toInt(): Expr { return castTo(this, "i32"); }

  // ---------------------------------------------------------------- comparisons and logic
  /** this == o (bool). */
  eq(o: Scalar): Expr { return compare("eq", this, o); }
  /** this != o (bool). */
  ne(o: Scalar): Expr { return compare("ne", this, o); }
  /** this < o (bool). */
  lt(o: Scalar): Expr { return compare("lt", this, o); }
  /** this ≤ o (bool). */
  le(o: Scalar): Expr { return compare("le", this, o); }
  /** this > o (bool). */
  gt(o: Scalar): Expr { return compare("gt", this, o); }
  /** this ≥ o (bool). */
  ge(o: Scalar): Expr { return compare("ge", this, o); }
  /** Logical and of two bools. */
  and(o: Scalar): Expr { return logic("and", this, lift(o)); }
  /** Logical or of two bools. */
  or(o: Scalar): Expr { return logic("or", this, lift(o)); }
  /** Logical not of a bool. */
  not(): Expr {
    noteUsed(this); // not(not(x)) returns x: the inner not was consumed
    if (this.dtype !== "bool") throw new ModTypeError({ message: `not() needs a bool, got ${this.dtype}` });
    if (this.op === "not") return this.src[0];
    return fold("not", "bool", [this]);
  }

  /** A readable rendering, for errors and `explain`. Call it explicitly: `String(e)` and `${e}` throw. */
  toString(): string { return show(this); }

  /** Any implicit conversion (`>=`, `*`, `+`, a template string, `String(e)`) is a mistake in a mod. */
  [Symbol.toPrimitive](hint: string): never {
    throw new ModOperatorError({
      message: `a mod used a JS operator (>=, *, +, &&, !, template string...) on the symbolic value ${show(this)} ` +
        `(conversion to ${hint}); JS cannot overload operators, so use the methods: q.ge(kv), s.mul(2), a.and(b), ` +
        `a.or(b), a.not(), where(c, x, y); for a readable rendering call e.toString()`,
    });
  }
}

/** `where(cond, a, b)`: `a` where `cond` holds, else `b` (both promoted to a common type). */
export function where(cond: Scalar, a: Scalar, b: Scalar): Expr {
  const c = lift(cond);
  if (c.dtype !== "bool") throw new ModTypeError({ message: `where(): the condition must be a bool, got ${c.dtype}` });
  const [x, y] = promote([lift(a), lift(b)]);
  if (c.op === "const") return c.arg ? x : y;
  if (x.hash === y.hash) return x;
  return Expr.node("where", x.dtype, [c, x, y]);
}

/** Lift a JS number / boolean to a constant; Exprs pass through. */
export function lift(x: Scalar): Expr {
  if (x instanceof Expr) { noteUsed(x); return x; }
  if (typeof x === "number" || typeof x === "boolean") return Expr.const(x);
  throw new ModTypeError({ message: `expected a mod expression, number or boolean, got ${describe(x)}` });
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x === "object") return (x as object).constructor?.name ?? "object";
  return typeof x;
}

export function castTo(e: Expr, t: ScalarType): Expr {
  if (e.dtype === t) return e;
  if (e.op === "const") {
    const v = e.arg as number | boolean;
    return Expr.const(t === "bool" ? Boolean(v) : t === "i32" ? Math.trunc(Number(v)) : Number(v), t);
  }
  return Expr.node("cast", t, [e], t);
}

function toFloat(e: Expr): Expr { return castTo(e, "f32"); }
function numeric(e: Expr): Expr { return e.dtype === "bool" ? castTo(e, "i32") : e; }

function unaryFloat(op: Op, e: Expr): Expr { return fold(op, "f32", [toFloat(e)]); }

/** Common numeric type: any f32 → f32, else i32 (bool counts as i32). */
function promote(xs: Expr[]): Expr[] {
  const t: ScalarType = xs.some((x) => x.dtype === "f32") ? "f32" : "i32";
  return xs.map((x) => castTo(x, t));
}

function arith(op: Op, a: Expr, o: Scalar): Expr {
  const [x, y] = promote([a, lift(o)]);
  return binary(op, x, y, x.dtype);
}

function binary(op: Op, x: Expr, y: Expr, t: ScalarType): Expr { return fold(op, t, [x, y]); }

function compare(op: Op, a: Expr, o: Scalar): Expr {
  const b = lift(o);
  const [x, y] = a.dtype === "bool" && b.dtype === "bool" ? [a, b] : promote([a, b]);
  return fold(op, "bool", [x, y]);
}

function logic(op: "and" | "or", a: Expr, b: Expr): Expr {
  noteUsed(a); // the identities below may return b alone: a was still consumed, not dropped
  if (a.dtype !== "bool" || b.dtype !== "bool") {
    throw new ModTypeError({ message: `${op}() needs two bools, got ${a.dtype} and ${b.dtype} (compare first, e.g. q.ge(kv))` });
  }
  // identities: x∧true = x, x∧false = false, x∨false = x, x∨true = true
  for (const [c, other] of [[a, b], [b, a]] as const) {
    if (c.op === "const") return (c.arg === (op === "and")) ? other : c;
  }
  if (a.hash === b.hash) return a;
  return Expr.node(op, "bool", [a, b]);
}

// ---------------------------------------------------------------- constant folding
const f32 = Math.fround;
const i32 = (x: number) => x | 0;

/** Evaluates one op on JS numbers with the IR's semantics (f32 results rounded, i32 wrapped). */
export function applyOp(op: Op, t: ScalarType, v: readonly (number | boolean)[], roundF32 = true): number | boolean {
  const n = v as number[];
  const rf = roundF32 ? f32 : (x: number) => x;
  const num = (x: number) => (t === "i32" ? i32(x) : t === "f32" ? rf(x) : x);
  switch (op) {
    case "neg": return num(-n[0]);
    case "abs": return num(Math.abs(n[0]));
    case "exp": return rf(Math.exp(n[0]));
    case "exp2": return rf(Math.pow(2, n[0]));
    case "log": return rf(Math.log(n[0]));
    case "sqrt": return rf(Math.sqrt(n[0]));
    case "tanh": return rf(Math.tanh(n[0]));
    case "sigmoid": return rf(1 / (1 + Math.exp(-n[0])));
    case "floor": return rf(Math.floor(n[0]));
    case "not": return !v[0];
    case "add": return num(n[0] + n[1]);
    case "sub": return num(n[0] - n[1]);
    case "mul": return t === "i32" ? Math.imul(n[0], n[1]) : rf(n[0] * n[1]);
    case "div": return rf(n[0] / n[1]);
    case "pow": return rf(Math.pow(n[0], n[1]));
    case "min": return num(Math.min(n[0], n[1]));
    case "max": return num(Math.max(n[0], n[1]));
    case "floorDiv": return t === "i32" ? (n[1] === 0 ? 0 : i32(Math.floor(n[0] / n[1]))) : rf(Math.floor(n[0] / n[1]));
    case "mod": {
      if (t === "i32") return n[1] === 0 ? 0 : i32(n[0] - n[1] * Math.floor(n[0] / n[1]));
      return rf(n[0] - n[1] * Math.floor(n[0] / n[1]));
    }
    case "eq": return v[0] === v[1];
    case "ne": return v[0] !== v[1];
    case "lt": return v[0] < v[1];
    case "le": return v[0] <= v[1];
    case "gt": return v[0] > v[1];
    case "ge": return v[0] >= v[1];
    case "and": return Boolean(v[0] && v[1]);
    case "or": return Boolean(v[0] || v[1]);
    case "clamp": return num(Math.min(Math.max(n[0], n[1]), n[2]));
    case "where": return v[0] ? v[1] : v[2];
    case "cast": return t === "bool" ? Boolean(v[0]) : t === "i32" ? Math.trunc(Number(v[0])) | 0 : rf(Number(v[0]));
    default: throw new ModTypeError({ message: `cannot evaluate op ${op} on constants` });
  }
}

function fold(op: Op, t: ScalarType, src: Expr[]): Expr {
  if (src.every((s) => s.op === "const")) {
    return Expr.const(applyOp(op, t, src.map((s) => s.arg as number | boolean)) as number | boolean, t);
  }
  return Expr.node(op, t, src);
}

// ---------------------------------------------------------------- traversal helpers

/** Post-order list of distinct nodes (by hash): children before parents. */
export function toposort(root: Expr): Expr[] {
  const seen = new Set<string>();
  const out: Expr[] = [];
  const visit = (e: Expr) => {
    if (seen.has(e.hash)) return;
    seen.add(e.hash);
    e.src.forEach(visit);
    out.push(e);
  };
  visit(root);
  return out;
}

/** Whether the expression reads any of the mod arguments `names` (directly or inside an index, a cast, a custom op). */
export function readsArg(root: Expr, ...names: ArgName[]): boolean {
  return toposort(root).some((n) => n.op === "arg" && names.includes(n.arg as ArgName));
}

/**
 * Bottom-up rewrite: `f(node, newSrc)` returns a replacement or undefined (keep the node with its new
 * children). Shared subtrees are rewritten once.
 */
export function rewrite(root: Expr, f: (e: Expr, src: readonly Expr[]) => Expr | undefined): Expr {
  const memo = new Map<string, Expr>();
  const go = (e: Expr): Expr => {
    const hit = memo.get(e.hash);
    if (hit) return hit;
    const src = e.src.map(go);
    const changed = src.some((s, i) => s !== e.src[i]);
    const base = changed ? Expr.node(e.op, e.dtype, src, e.arg) : e;
    const out = f(base, src) ?? base;
    memo.set(e.hash, out);
    return out;
  };
  return go(root);
}

const INFIX: Partial<Record<Op, string>> = {
  add: "+", sub: "-", mul: "*", div: "/", floorDiv: "//", mod: "%", eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">",
  ge: ">=", and: "&&", or: "||",
};

function show(e: Expr): string {
  switch (e.op) {
    case "const": return String(e.arg);
    case "arg": return String(e.arg);
    case "load": {
      const a = e.arg as LoadArg;
      return `cap${a.slot < 0 ? "?" : a.slot}[${e.src.map(show).join(", ")}]`;
    }
    case "cast": return `${e.dtype}(${show(e.src[0])})`;
    case "custom": return `${(e.arg as CustomOpDef).name}(${e.src.map(show).join(", ")})`;
    default: {
      const inf = INFIX[e.op];
      if (inf) return `(${show(e.src[0])} ${inf} ${show(e.src[1])})`;
      return `${e.op}(${e.src.map(show).join(", ")})`;
    }
  }
}
