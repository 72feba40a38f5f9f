/**
 * fast-check arbitraries for fuzzing flexAttention against the float64 oracle (tests/fuzz/check.ts).
 *
 * A fuzz case is a `ModSpec` (everything that is baked into a kernel: the score and mask trees, the captured
 * tensors' shapes and dtypes, D, Dv, the input dtype, the BlockMask block size, the backward's flags) times a
 * `ShapeSpec` (everything that is data or a uniform: B, heads and GQA ratio, Sq, Skv, broadcast of the mask's
 * B / H, the seed of q, k, v, cotangents and captured VALUES). A new mod costs kernel compiles (seconds on
 * lavapipe), a new shape costs nothing to compile, so runs are N mods × M shapes.
 *
 * The trees cover the whole operator set of the mod language (lib/ir/expr.ts): add sub mul div neg abs exp exp2
 * log sqrt tanh sigmoid min max clamp floorDiv mod eq ne lt le gt ge and or not, where(c, a, b), toFloat and
 * implicit i32→f32 promotion, captured reads t.at(i) / t.at(i, j) of f32 and i32 tensors with indices built
 * from b, h, q, kv (and from other captured i32 values).
 *
 * Numerical well-posedness (the choice asked for in the fuzzing issue): values are kept in a SAFE RANGE by
 * construction, so every value is finite in f32 and float64 alike and any NaN / ±Inf in a result is a
 * failure (the only infinity allowed is lse = −∞ of a fully masked row, at exactly the oracle's positions):
 *   - every float node carries a conservative bound |x| ≤ bound; a node whose bound would pass LIMIT (24) is
 *     clamped to ±LIMIT (a no-op for the values that actually occur, mostly);
 *   - exp / exp2 only of clamped arguments; log only of x²+1, |x|+½ or sigmoid(x); sqrt only of x²+¼ or |x|+1;
 *     div only by |y|+1, y²+1 or a constant of magnitude ≥ ½; products of two bounded sides;
 *   - integers scaled into floats by 1/bound (toFloat().mul(c / bound) or the implicit promotion i.mul(c)).
 * Discontinuities never depend on the score or on an inexact float: `where` conditions, comparisons, float
 * floorDiv / mod see only integers, captured f32 values (exact in both) and integers converted to f32 below
 * 2²⁴ (exact), so f32 and float64 always take the same branch; kinks of abs / min / max / clamp on the score
 * are continuous (forward unaffected), but a score within f32 rounding of such a kink can take the other side of the
 * derivative on the GPU: tests/fuzz/kinks.ts recognizes those cases after a failed comparison (outcome nearKink).
 *
 * Captured-tensor indices are made in range for EVERY integer (so for any b, h, q, kv an executor might
 * evaluate): `x.mod(n)` (Python mod: [0, n)), `x.clamp(0, n − 1)`, `x.min(n − 1).max(0)`. A few reads are
 * left raw (`x`, in or out of range depending on the data) or forced out of range (`x.abs().add(n)`,
 * `x.abs().neg().sub(1)`): those must give CaptureOutOfRange on the oracle and the GPU alike.
 */
import fc from "fast-check";
import { Expr, type MaskMod, type ScoreMod, type Tensor, tensor, where } from "../../mod.ts";
import { rng } from "../../lib/tensor/tensor.ts";

// ------------------------------------------------------------------ the recipe trees (plain JSON)

export type IntOp = "add" | "sub" | "mul" | "min" | "max" | "floorDiv" | "mod";
export type CmpOp = "eq" | "ne" | "lt" | "le" | "gt" | "ge";
export type Fit = "mod" | "clamp" | "minmax" | "raw" | "oobHigh" | "oobLow";

export interface Index { readonly x: IntNode; readonly fit: Fit }

export type IntNode =
  | { readonly k: "arg"; readonly n: "b" | "h" | "q" | "kv" }
  | { readonly k: "ic"; readonly v: number }
  | { readonly k: "iread"; readonly cap: number; readonly ix: readonly [Index, Index] }
  | { readonly k: "ibin"; readonly op: IntOp; readonly x: IntNode; readonly y: IntNode }
  | { readonly k: "iun"; readonly op: "neg" | "abs"; readonly x: IntNode }
  | { readonly k: "iclamp"; readonly x: IntNode; readonly lo: number; readonly span: number }
  | { readonly k: "iwhere"; readonly c: BoolNode; readonly x: IntNode; readonly y: IntNode };

export type FloatNode =
  | { readonly k: "score" }
  | { readonly k: "fc"; readonly v: number }
  | { readonly k: "fread"; readonly cap: number; readonly ix: readonly [Index, Index] }
  | { readonly k: "i2f"; readonly x: IntNode; readonly c: number; readonly implicit: boolean }
  | { readonly k: "ifloor"; readonly x: IntNode; readonly op: "floorDiv" | "mod"; readonly d: number }
  | { readonly k: "fun"; readonly op: FUn; readonly x: FloatNode }
  | { readonly k: "fbin"; readonly op: FBin; readonly x: FloatNode; readonly y: FloatNode }
  | { readonly k: "fclamp"; readonly x: FloatNode; readonly lo: number; readonly span: number }
  | { readonly k: "fwhere"; readonly c: BoolNode; readonly x: FloatNode; readonly y: FloatNode };

export type BoolNode =
  | { readonly k: "icmp"; readonly op: CmpOp; readonly x: IntNode; readonly y: IntNode }
  | { readonly k: "xcmp"; readonly op: CmpOp; readonly x: ExactNode; readonly c: number }
  | { readonly k: "band" | "bor"; readonly x: BoolNode; readonly y: BoolNode }
  | { readonly k: "bnot"; readonly x: BoolNode }
  | { readonly k: "bcmp"; readonly op: "eq" | "ne"; readonly x: BoolNode; readonly y: BoolNode };

/** Floats that are exact in f32 and float64 alike: a captured f32 value, an integer (< 2²⁴) as f32 times 2^e. */
export type ExactNode =
  | { readonly k: "xread"; readonly cap: number; readonly ix: readonly [Index, Index] }
  | { readonly k: "xint"; readonly x: IntNode; readonly e: number };

const FUN = ["neg", "abs", "tanh", "sigmoid", "exp", "expT", "exp2", "logSq", "logSig", "logAbs", "sqrtSq", "sqrtAbs"] as const;
const FBIN = ["add", "sub", "mul", "mulT", "min", "max", "divAbs", "divSq", "divC"] as const;
export type FUn = (typeof FUN)[number];
export type FBin = (typeof FBIN)[number];

export type Dim = 16 | 32 | 64 | 80 | 128;
export interface CapSpec { readonly dtype: "f32" | "i32"; readonly shape: readonly number[] }

/** Everything baked into the kernels of a case. */
export interface ModSpec {
  readonly score: FloatNode;
  /** null: no BlockMask (flexAttention's noop mask). */
  readonly mask: BoolNode | null;
  /** Slot 0 is f32, slot 1 i32, slot 2 either; only the slots a tree reads are captured. */
  readonly caps: readonly [CapSpec, CapSpec, CapSpec];
  readonly D: Dim;
  readonly Dv: Dim;
  readonly dtype: "f32" | "f16";
  readonly blockSize: number | readonly [number, number];
  /** null: the default 1/sqrt(D). */
  readonly scale: number | null;
  /** Run the backward too (vjp). */
  readonly grad: boolean;
  /** With grad: a cotangent on lse as well as on out. */
  readonly withLse: boolean;
  /** With grad: the f32 captures read by the score mod are vjp primals (their gradients are checked). */
  readonly learn: boolean;
}

/** Data and uniforms of a case. */
export interface ShapeSpec {
  readonly B: number;
  readonly Hkv: number;
  readonly ratio: number;
  readonly Sq: number;
  readonly Skv: number;
  /** createBlockMask gets B (true) or null (broadcast); likewise H (the query heads). */
  readonly maskB: boolean;
  readonly maskH: boolean;
  readonly seed: number;
}

// ------------------------------------------------------------------ building: Expr and TypeScript source at once

/** A value under construction: the Expr, the TypeScript that builds it, and a bound on its magnitude. */
class V {
  constructor(readonly e: Expr, readonly code: string, readonly bound: number) {}
}

const LIMIT = 24;
const INT_CAP = 2 ** 31;
const EXACT_INT = 2 ** 24;
/** The largest value the symbolic arguments take in the fuzz (B ≤ 2, Hq ≤ 8, lengths ≤ 300; 300 for slack). */
const ARG_BOUND = { b: 4, h: 16, q: 300, kv: 300 } as const;
/** Captured values: f32 in [−2, 2] on a 1/8 grid (so eq / ne comparisons do hit), i32 in [−3, 20]. */
const F32_CAP_BOUND = 2, I32_CAP_LO = -3, I32_CAP_HI = 20;

function lit(x: number): string {
  return Object.is(x, -0) ? "-0" : String(x);
}
const arg = (a: V | number) => (a instanceof V ? a.e : a);
const argCode = (a: V | number) => (a instanceof V ? a.code : lit(a));

/** `x.method(...args)` as Expr and as code. */
function m(x: V, method: string, args: (V | number)[], bound: number): V {
  // deno-lint-ignore no-explicit-any
  const e = (x.e as any)[method](...args.map(arg)) as Expr;
  return new V(e, `${x.code}.${method}(${args.map(argCode).join(", ")})`, Math.min(bound, e.dtype === "f32" ? Infinity : INT_CAP));
}
function whereV(c: V, x: V, y: V): V {
  return new V(where(c.e, x.e, y.e), `where(${c.code}, ${x.code}, ${y.code})`, Math.max(x.bound, y.bound));
}

/** Three significant digits (readable literals; the value is what the code says). */
const nice = (x: number) => Number(x.toPrecision(3));

interface Env {
  readonly s: V;
  readonly b: V;
  readonly h: V;
  readonly q: V;
  readonly kv: V;
  readonly caps: readonly (Tensor | undefined)[];
  readonly specs: ModSpec["caps"];
  /** Slots read (filled while building). */
  readonly reads: Set<number>;
  /** A read whose index may be out of range (raw or forced) was built. */
  mayOob: boolean;
  /** A read with a CONSTANT out-of-range index (t.at() throws CaptureOutOfRange at trace time). */
  constOob: boolean;
  /** Building source only (factsOf): a constant out-of-range read becomes a placeholder instead of throwing. */
  readonly lenient: boolean;
}

function fitIndex(env: Env, ix: Index, n: number): V {
  const x = buildInt(env, ix.x);
  switch (ix.fit) {
    case "mod": return m(x, "mod", [n], n - 1);
    case "clamp": return m(x, "clamp", [0, n - 1], n - 1);
    case "minmax": return m(m(x, "min", [n - 1], n - 1), "max", [0], n - 1);
    case "raw": env.mayOob = true; return x;
    case "oobHigh": env.mayOob = true; return m(m(x, "abs", [], x.bound), "add", [n], x.bound + n);
    case "oobLow": env.mayOob = true; return m(m(m(x, "abs", [], x.bound), "neg", [], x.bound), "sub", [1], x.bound + 1);
  }
}

/** Slot `want`-typed: f32 reads use slot 0 (or 2 when it is f32), i32 reads slot 1 (or 2 when it is i32). */
function slotFor(env: Env, cap: number, dtype: "f32" | "i32"): number {
  const alt = env.specs[2].dtype === dtype;
  const base = dtype === "f32" ? 0 : 1;
  return alt && cap % 2 === 1 ? 2 : base;
}

function read(env: Env, cap: number, ix: readonly [Index, Index], dtype: "f32" | "i32"): V {
  const slot = slotFor(env, cap, dtype);
  const spec = env.specs[slot];
  const t = env.caps[slot];
  if (!t) throw new Error(`fuzz: captured slot ${slot} has no tensor`);
  env.reads.add(slot);
  const idx = spec.shape.map((n, d) => fitIndex(env, ix[d], n));
  let e: Expr;
  try {
    e = t.at(...idx.map((i) => i.e));
  } catch (err) {
    if ((err as { _tag?: string })._tag !== "CaptureOutOfRange" || !env.lenient) throw err;
    env.constOob = true;
    e = Expr.const(0, dtype);
  }
  const bound = dtype === "f32" ? F32_CAP_BOUND : Math.max(-I32_CAP_LO, I32_CAP_HI);
  return new V(e, `c${slot}.at(${idx.map((i) => i.code).join(", ")})`, bound);
}

function buildInt(env: Env, n: IntNode): V {
  switch (n.k) {
    case "arg": return env[n.n];
    case "ic": return new V(Expr.const(n.v), `Expr.const(${lit(n.v)})`, Math.abs(n.v));
    case "iread": return read(env, n.cap, n.ix, "i32");
    case "iun": {
      const x = buildInt(env, n.x);
      return m(x, n.op, [], x.bound);
    }
    case "iclamp": {
      const x = buildInt(env, n.x);
      return m(x, "clamp", [n.lo, n.lo + n.span], Math.max(Math.abs(n.lo), Math.abs(n.lo + n.span)));
    }
    case "iwhere": {
      const c = buildBool(env, n.c), x = buildInt(env, n.x), y = buildInt(env, n.y);
      return whereV(c, x, y);
    }
    case "ibin": {
      const x = buildInt(env, n.x), y = buildInt(env, n.y);
      const bound = n.op === "add" || n.op === "sub" ? x.bound + y.bound
        : n.op === "mul" ? x.bound * y.bound
        : n.op === "mod" ? y.bound
        : Math.max(x.bound, y.bound); // min, max, floorDiv (|x / y| ≤ |x| for y ≠ 0; 0 for y = 0)
      return m(x, n.op, [y], Math.min(bound, INT_CAP));
    }
  }
}

/** An integer made exact-as-f32 (bound < 2²⁴): reduced mod 2¹⁶ when its bound is larger. */
function exactInt(env: Env, n: IntNode): V {
  const x = buildInt(env, n);
  return x.bound < EXACT_INT ? x : m(x, "mod", [1 << 16], (1 << 16) - 1);
}

function buildExact(env: Env, n: ExactNode): V {
  if (n.k === "xread") return read(env, n.cap, n.ix, "f32");
  const x = exactInt(env, n.x);
  const f = m(x, "toFloat", [], x.bound);
  return n.e === 0 ? f : m(f, "mul", [2 ** n.e], x.bound * 2 ** n.e);
}

function buildBool(env: Env, n: BoolNode): V {
  switch (n.k) {
    case "icmp": return m(buildInt(env, n.x), n.op, [buildInt(env, n.y)], 1);
    case "xcmp": return m(buildExact(env, n.x), n.op, [n.c], 1);
    case "band": return m(buildBool(env, n.x), "and", [buildBool(env, n.y)], 1);
    case "bor": return m(buildBool(env, n.x), "or", [buildBool(env, n.y)], 1);
    case "bnot": return m(buildBool(env, n.x), "not", [], 1);
    case "bcmp": return m(buildBool(env, n.x), n.op, [buildBool(env, n.y)], 1);
  }
}

/** Keeps a float node within ±LIMIT. */
function limit(x: V): V {
  return x.bound <= LIMIT ? x : m(x, "clamp", [-LIMIT, LIMIT], LIMIT);
}

function buildFloat(env: Env, n: FloatNode): V {
  switch (n.k) {
    case "score": return env.s;
    case "fc": return new V(Expr.const(n.v, "f32"), `Expr.const(${lit(n.v)}, "f32")`, Math.abs(n.v));
    case "fread": return read(env, n.cap, n.ix, "f32");
    case "i2f": {
      const x = buildInt(env, n.x);
      const c = nice(n.c / Math.max(1, x.bound));
      if (c === 0) return m(m(x, "toFloat", [], x.bound), "mul", [0.5], x.bound / 2); // never lose the node
      return n.implicit
        ? m(x, "mul", [Number.isInteger(c) ? c + 0.5 : c], x.bound * Math.abs(c) + x.bound / 2) // i32 · f32 → f32
        : m(m(x, "toFloat", [], x.bound), "mul", [c], x.bound * Math.abs(c));
    }
    case "ifloor": {
      const x = exactInt(env, n.x);
      const f = m(x, "toFloat", [], x.bound);
      return limit(m(f, n.op, [n.d], n.op === "mod" ? n.d : x.bound / n.d + 1));
    }
    case "fun": {
      const x = buildFloat(env, n.x);
      const B = x.bound;
      switch (n.op) {
        case "neg": return m(x, "neg", [], B);
        case "abs": return m(x, "abs", [], B);
        case "tanh": return m(x, "tanh", [], 1);
        case "sigmoid": return m(x, "sigmoid", [], 1);
        case "exp": return m(m(x, "clamp", [-3, 3], 3), "exp", [], Math.exp(3));
        case "expT": return m(m(m(x, "tanh", [], 1), "mul", [2], 2), "exp", [], Math.exp(2));
        case "exp2": return m(m(x, "clamp", [-4, 4], 4), "exp2", [], 16);
        case "logSq": return m(m(m(x, "mul", [x], B * B), "add", [1], B * B + 1), "log", [], Math.log(B * B + 1));
        case "logSig": return m(m(x, "sigmoid", [], 1), "log", [], B + 1);
        case "logAbs": return m(m(m(x, "abs", [], B), "add", [0.5], B + 0.5), "log", [], Math.max(1, Math.log(B + 0.5)));
        case "sqrtSq": return m(m(m(x, "mul", [x], B * B), "add", [0.25], B * B + 0.25), "sqrt", [], B + 0.5);
        case "sqrtAbs": return m(m(m(x, "abs", [], B), "add", [1], B + 1), "sqrt", [], Math.sqrt(B + 1));
      }
      break;
    }
    case "fbin": {
      const x = buildFloat(env, n.x);
      if (n.op === "divC") {
        // y only chooses the constant (±0.5 … ±4, from its size); it is not built (a dropped bool is an error)
        const size = JSON.stringify(n.y).length;
        return limit(m(x, "div", [nice((size % 2 ? 1 : -1) * (0.5 + (size % 8) / 2))], x.bound * 2));
      }
      const y = buildFloat(env, n.y);
      switch (n.op) {
        case "add": return limit(m(x, "add", [y], x.bound + y.bound));
        case "sub": return limit(m(x, "sub", [y], x.bound + y.bound));
        case "mul": return limit(m(x, "mul", [y], x.bound * y.bound));
        case "mulT": return m(x, "mul", [m(y, "tanh", [], 1)], x.bound);
        case "min": return m(x, "min", [y], Math.max(x.bound, y.bound));
        case "max": return m(x, "max", [y], Math.max(x.bound, y.bound));
        case "divAbs": return m(x, "div", [m(m(y, "abs", [], y.bound), "add", [1], y.bound + 1)], x.bound);
        case "divSq": return m(x, "div", [m(m(y, "mul", [y], y.bound ** 2), "add", [1], y.bound ** 2 + 1)], x.bound);
      }
      break;
    }
    case "fclamp": {
      const x = buildFloat(env, n.x);
      return m(x, "clamp", [n.lo, n.lo + n.span], Math.max(Math.abs(n.lo), Math.abs(n.lo + n.span)));
    }
    case "fwhere": {
      const c = buildBool(env, n.c), x = buildFloat(env, n.x), y = buildFloat(env, n.y);
      return whereV(c, x, y);
    }
  }
  throw new Error(`fuzz: unknown float node ${JSON.stringify(n)}`);
}

/** Score bound used for products: q·k·scale with randn inputs stays within a few units. */
const SCORE_BOUND = 6;

function envOf(
  mod: ModSpec, caps: readonly (Tensor | undefined)[], a: { s?: Expr; b: Expr; h: Expr; q: Expr; kv: Expr }, lenient = false,
): Env {
  return {
    s: new V(a.s ?? Expr.arg("score"), "s", SCORE_BOUND),
    b: new V(a.b, "b", ARG_BOUND.b), h: new V(a.h, "h", ARG_BOUND.h), q: new V(a.q, "q", ARG_BOUND.q), kv: new V(a.kv, "kv", ARG_BOUND.kv),
    caps, specs: mod.caps, reads: new Set(), mayOob: false, constOob: false, lenient,
  };
}

/** The score mod of a spec over the captured tensors (slot order), as a function flexAttention traces. */
export function scoreModOf(mod: ModSpec, caps: readonly (Tensor | undefined)[]): ScoreMod {
  return (s, b, h, q, kv) => buildFloat(envOf(mod, caps, { s, b, h, q, kv }), mod.score).e;
}

export function maskModOf(mod: ModSpec, caps: readonly (Tensor | undefined)[]): MaskMod | undefined {
  const mask = mod.mask;
  if (!mask) return undefined;
  return (b, h, q, kv) => buildBool(envOf(mod, caps, { b, h, q, kv }), mask).e;
}

export interface ModFacts {
  /** TypeScript of the mods (captured tensors named c0, c1, c2). */
  readonly scoreCode: string;
  readonly maskCode: string | null;
  readonly scoreReads: ReadonlySet<number>;
  readonly maskReads: ReadonlySet<number>;
  /** Some score-mod read may be out of range (raw or forced index). */
  readonly scoreMayOob: boolean;
  readonly maskMayOob: boolean;
  /** A read has a constant out-of-range index: tracing the mod throws CaptureOutOfRange (every executor alike). */
  readonly constOob: boolean;
}

const dummyCaps = (mod: ModSpec) => mod.caps.map((c) => tensor(new Array(c.shape.reduce((a, b) => a * b, 1)).fill(0), c.shape, { dtype: c.dtype }));

/** What a spec reads and its source code (built once on placeholder tensors; no trace, no kernel). */
export function factsOf(mod: ModSpec): ModFacts {
  const caps = dummyCaps(mod);
  const args = { b: Expr.arg("b"), h: Expr.arg("h"), q: Expr.arg("q"), kv: Expr.arg("kv") };
  const se = envOf(mod, caps, args, true);
  const score = buildFloat(se, mod.score);
  let maskCode: string | null = null, maskReads = new Set<number>(), maskMayOob = false, constOob = se.constOob;
  if (mod.mask) {
    const me = envOf(mod, caps, args, true);
    maskCode = `(b, h, q, kv) => ${buildBool(me, mod.mask).code}`;
    maskReads = me.reads as Set<number>;
    maskMayOob = me.mayOob;
    constOob ||= me.constOob;
  }
  return {
    scoreCode: `(s, b, h, q, kv) => ${score.code}`, maskCode, scoreReads: se.reads, maskReads, scoreMayOob: se.mayOob, maskMayOob, constOob,
  };
}

/** The captured tensors of a case: values from the case seed (f32 on a 1/8 grid in [−2, 2], i32 in [−3, 20]). */
export function capturesOf(mod: ModSpec, seed: number): Tensor[] {
  return mod.caps.map((c, slot) => {
    const r = rng((seed ^ (0x9e3779b1 * (slot + 1))) >>> 0);
    const n = c.shape.reduce((a, b) => a * b, 1);
    if (c.dtype === "f32") return tensor(Float32Array.from({ length: n }, () => Math.round(r() * 32) / 8 - F32_CAP_BOUND), c.shape);
    return tensor(Int32Array.from({ length: n }, () => I32_CAP_LO + Math.floor(r() * (I32_CAP_HI - I32_CAP_LO + 1))), c.shape, { dtype: "i32" });
  });
}

// ------------------------------------------------------------------ arbitraries

const CMP: readonly CmpOp[] = ["eq", "ne", "lt", "le", "gt", "ge"];
const INT_OPS: readonly IntOp[] = ["add", "sub", "mul", "min", "max", "floorDiv", "mod"];

const fitArb: fc.Arbitrary<Fit> = fc.oneof(
  { weight: 30, arbitrary: fc.constant<Fit>("mod") },
  { weight: 20, arbitrary: fc.constant<Fit>("clamp") },
  { weight: 15, arbitrary: fc.constant<Fit>("minmax") },
  { weight: 3, arbitrary: fc.constant<Fit>("raw") },
  { weight: 3, arbitrary: fc.constant<Fit>("oobHigh") },
  { weight: 2, arbitrary: fc.constant<Fit>("oobLow") },
);

const smallFloat = (lo: number, hi: number) => fc.integer({ min: Math.round(lo * 8), max: Math.round(hi * 8) }).map((v) => v / 8);

export interface TreeOptions {
  /** Maximum depth of the trees (fast-check's depth bias keeps most far smaller). */
  readonly depth?: number;
}

/** The three mutually recursive tree arbitraries. */
export function trees(opts: TreeOptions = {}) {
  const maxDepth = opts.depth ?? 5;
  return fc.letrec<{ int: IntNode; float: FloatNode; bool: BoolNode; exact: ExactNode; index: Index }>((tie) => {
    const int = tie("int") as fc.Arbitrary<IntNode>;
    const float = tie("float") as fc.Arbitrary<FloatNode>;
    const bool = tie("bool") as fc.Arbitrary<BoolNode>;
    const index = tie("index") as fc.Arbitrary<Index>;
    const ix = fc.tuple(index, index) as fc.Arbitrary<readonly [Index, Index]>;
    const cap = fc.integer({ min: 0, max: 1 });
    const rec = { depthSize: "small" as const, withCrossShrink: true, maxDepth };
    return {
      index: fc.record({ x: int, fit: fitArb }),
      int: fc.oneof(
        rec,
        { weight: 6, arbitrary: fc.constantFrom("b", "h", "q", "kv", "q", "kv").map((n): IntNode => ({ k: "arg", n: n as "q" })) },
        { weight: 1, arbitrary: fc.integer({ min: -8, max: 8 }).map((v): IntNode => ({ k: "ic", v })) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("iread" as const), cap, ix }) },
        { weight: 3, arbitrary: fc.record({ k: fc.constant("ibin" as const), op: fc.constantFrom(...INT_OPS), x: int, y: int }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("iun" as const), op: fc.constantFrom("neg" as const, "abs" as const), x: int }) },
        {
          weight: 1,
          arbitrary: fc.record({ k: fc.constant("iclamp" as const), x: int, lo: fc.integer({ min: -10, max: 100 }), span: fc.integer({ min: 0, max: 100 }) }),
        },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("iwhere" as const), c: bool, x: int, y: int }) },
      ),
      exact: fc.oneof(
        rec,
        fc.record({ k: fc.constant("xread" as const), cap, ix }),
        fc.record({ k: fc.constant("xint" as const), x: int, e: fc.integer({ min: -3, max: 2 }) }),
      ),
      bool: fc.oneof(
        rec,
        { weight: 5, arbitrary: fc.record({ k: fc.constant("icmp" as const), op: fc.constantFrom(...CMP), x: int, y: int }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant("xcmp" as const), op: fc.constantFrom(...CMP), x: tie("exact") as fc.Arbitrary<ExactNode>, c: smallFloat(-3, 40) }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constantFrom("band" as const, "bor" as const), x: bool, y: bool }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("bnot" as const), x: bool }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("bcmp" as const), op: fc.constantFrom("eq" as const, "ne" as const), x: bool, y: bool }) },
      ),
      float: fc.oneof(
        rec,
        { weight: 8, arbitrary: fc.constant<FloatNode>({ k: "score" }) },
        { weight: 1, arbitrary: smallFloat(-3, 3).map((v): FloatNode => ({ k: "fc", v: v === 0 ? 0.125 : v })) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant("fread" as const), cap, ix }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant("i2f" as const), x: int, c: smallFloat(-3, 3), implicit: fc.boolean() }) },
        {
          weight: 1,
          arbitrary: fc.record({ k: fc.constant("ifloor" as const), x: int, op: fc.constantFrom("floorDiv" as const, "mod" as const), d: fc.constantFrom(0.5, 2, 4, 8) }),
        },
        { weight: 4, arbitrary: fc.record({ k: fc.constant("fun" as const), op: fc.constantFrom(...FUN), x: float }) },
        { weight: 4, arbitrary: fc.record({ k: fc.constant("fbin" as const), op: fc.constantFrom(...FBIN), x: float, y: float }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant("fclamp" as const), x: float, lo: smallFloat(-4, 1), span: smallFloat(0.25, 5) }) },
        { weight: 2, arbitrary: fc.record({ k: fc.constant("fwhere" as const), c: bool, x: float, y: float }) },
      ),
    };
  });
}

/** Whether a float tree reads the score. */
export function usesScore(n: FloatNode): boolean {
  switch (n.k) {
    case "score": return true;
    case "fun": case "fclamp": return usesScore(n.x);
    case "fbin": return usesScore(n.x) || (n.op !== "divC" && usesScore(n.y));
    case "fwhere": return usesScore(n.x) || usesScore(n.y);
    default: return false;
  }
}

const dimArb: fc.Arbitrary<Dim> = fc.constantFrom<Dim>(16, 32, 64, 80, 128);

const capDim = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 1, arbitrary: fc.constantFrom(128, 255, 300, 301) },
);
const capSpec = (dtype: fc.Arbitrary<"f32" | "i32">): fc.Arbitrary<CapSpec> =>
  fc.record({ dtype, shape: fc.oneof(fc.tuple(capDim), fc.tuple(capDim, fc.integer({ min: 1, max: 40 }))) });

const blockArb: fc.Arbitrary<number | readonly [number, number]> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(16, 32, 64, 128) },
  { weight: 1, arbitrary: fc.constantFrom(8, 24, 48, 100, 256) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(16, 32, 64, 128, 20), fc.constantFrom(16, 32, 64, 128, 40)) },
);

export interface ModOptions extends TreeOptions {
  /** Probability weight of grad mods: grad = true in 1 of `gradEvery` mods on average (default 5); 0 → never. */
  readonly gradEvery?: number;
}

export function modArb(opts: ModOptions = {}): fc.Arbitrary<ModSpec> {
  const t = trees(opts);
  const every = opts.gradEvery ?? 5;
  return fc.record({
    // most score mods read the score (a constant score is still legal: its gradients are exactly 0)
    score: fc.oneof(
      { weight: 1, arbitrary: fc.constant<FloatNode>({ k: "score" }) },
      { weight: 8, arbitrary: t.float.filter((n) => n.k !== "score" && usesScore(n)) },
      { weight: 1, arbitrary: t.float },
    ),
    mask: fc.option(t.bool, { freq: 4, nil: null }),
    caps: fc.tuple(capSpec(fc.constant("f32")), capSpec(fc.constant("i32")), capSpec(fc.constantFrom("f32", "i32"))),
    D: dimArb,
    Dv: fc.oneof({ weight: 2, arbitrary: fc.constant(0 as unknown as Dim) }, { weight: 1, arbitrary: dimArb }),
    dtype: fc.oneof({ weight: 3, arbitrary: fc.constant("f32" as const) }, { weight: 1, arbitrary: fc.constant("f16" as const) }),
    blockSize: blockArb,
    scale: fc.option(fc.constantFrom(0.05, 0.125, 0.3, 0.5), { freq: 3, nil: null }),
    grad: every > 0 ? fc.integer({ min: 1, max: every }).map((x) => x === 1) : fc.constant(false),
    withLse: fc.boolean(),
    learn: fc.boolean(),
  }).map((r): ModSpec => ({ ...r, Dv: (r.Dv || r.D) as Dim }));
}

const lengthArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 12 }) },
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: -1, max: 1 })).map(([k, d]) => Math.max(1, Math.min(300, 64 * k + d))) },
);

export const shapeArb: fc.Arbitrary<ShapeSpec> = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Hkv: fc.integer({ min: 1, max: 3 }),
  ratio: fc.constantFrom(1, 1, 2, 3, 4),
  Sq: lengthArb,
  Skv: lengthArb,
  maskB: fc.boolean(),
  maskH: fc.boolean(),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
}).map((s) => ({ ...s, ratio: s.Hkv * s.ratio > 8 ? 1 : s.ratio }));

/** A one-line description of the kernel-level parameters. */
export function describeMod(mod: ModSpec): string {
  const f = factsOf(mod);
  const caps = [...new Set([...f.scoreReads, ...f.maskReads])].sort().map((s) => `c${s}: ${mod.caps[s].dtype}[${mod.caps[s].shape}]`);
  return [
    `scoreMod: ${f.scoreCode}`,
    `maskMod:  ${f.maskCode ?? "(none: no BlockMask)"}`,
    `captures: ${caps.length ? caps.join(", ") : "none"}`,
    `D=${mod.D} Dv=${mod.Dv} dtype=${mod.dtype} blockSize=${JSON.stringify(mod.blockSize)} scale=${mod.scale ?? "default"}` +
    (mod.grad ? ` grad (withLse=${mod.withLse}, learn=${mod.learn})` : ""),
  ].join("\n");
}

export function describeShape(s: ShapeSpec): string {
  return `B=${s.B} Hq=${s.Hkv * s.ratio} Hkv=${s.Hkv} Sq=${s.Sq} Skv=${s.Skv} mask B=${s.maskB ? s.B : "null"} H=${s.maskH ? s.Hkv * s.ratio : "null"} seed=${s.seed}`;
}
