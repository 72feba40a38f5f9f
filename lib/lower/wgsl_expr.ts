/**
 * Expr → WGSL: the traced mods become `fn score_mod(score: f32, b: i32, h: i32, q: i32, kv: i32) -> f32` and
 * `fn mask_mod(b: i32, h: i32, q: i32, kv: i32) -> bool`, spliced into the kernel templates.
 *
 * The tree is linearized in post order: a node used more than once (or a captured-tensor load, which is a
 * statement) gets a `let tN` temporary; single-use nodes are inlined. Semantics equal `applyOp` in
 * lib/ir/expr.ts: i32 wraps (WGSL runtime integer arithmetic is two's complement), floorDiv / mod follow
 * Python (floor, sign of the divisor, x/0 → 0 for ints), pow follows Math.pow for negative bases.
 *
 * Captured tensors: the template declares `caps: array<u32>` (every capture of the kernel packed, f32 as bits),
 * `err: array<atomic<u32>>` and the private `flex_err` and ends its entry point with the flush (kernels/error_bits.ts).
 * Each load is range-checked per dimension; out of range → read element 0 of that capture and set bit 1 of
 * the invocation's private `flex_err`, flushed to err[0] once per invocation (the executor turns it into
 * CaptureOutOfRange).
 */
import { type CustomOpDef, type Expr, type LoadArg, type Op, toposort } from "../ir/expr.ts";
import type { TracedMod } from "../mods/trace.ts";
import { ModTypeError } from "../errors.ts";

import { ERR_CAPTURE_RANGE } from "../../kernels/error_bits.ts";
export { ERR_CAPTURE_RANGE };

/** Writes an f32 value as a WGSL expression that parses back to exactly that value. */
export function f32Literal(x: number): string {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return "flex_f32_bits(0x7fc00000u)";
  if (v === Infinity) return "flex_f32_bits(0x7f800000u)";
  if (v === -Infinity) return "flex_f32_bits(0xff800000u)";
  if (Object.is(v, -0)) return "flex_f32_bits(0x80000000u)";
  // A double holding an f32 printed shortest round-trips through WGSL's round-to-nearest f32 parse.
  const s = String(Math.abs(v));
  const body = /[.e]/.test(s) ? s : `${s}.0`;
  return v < 0 ? `(-${body}f)` : `${body}f`;
}

export function i32Literal(x: number): string {
  const v = x | 0;
  if (v === -2147483648) return "i32(-2147483647 - 1)";
  return v < 0 ? `(${v}i)` : `${v}i`;
}

/** Helpers the generated code may call; emitted once per module, only when used. */
const HELPERS: Record<string, string> = {
  flex_f32_bits: `// Non-constant so inf / NaN never appear in a const-expression (a WGSL error).
fn flex_f32_bits(bits: u32) -> f32 { var b = bits; return bitcast<f32>(b); }`,
  // Built on truncating division only (no remainder operator: translators disagree on the sign of a signed remainder).
  flex_floordiv_i32: `fn flex_floordiv_i32(a: i32, b: i32) -> i32 {
  if (b == 0) { return 0; }
  let q = a / b;
  let r = a - q * b;
  return select(q, q - 1, (r != 0) && ((r < 0) != (b < 0)));
}`,
  flex_mod_i32: `fn flex_mod_i32(a: i32, b: i32) -> i32 {
  if (b == 0) { return 0; }
  let r = a - (a / b) * b;
  return select(r, r + b, (r != 0) && ((r < 0) != (b < 0)));
}`,
  flex_mod_f32: `fn flex_mod_f32(a: f32, b: f32) -> f32 { return a - b * floor(a / b); }`,
  flex_pow: `// Math.pow semantics: negative bases with integral exponents keep their sign; x^0 = 1.
fn flex_pow(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  let r = pow(abs(x), y);
  if (x >= 0.0) { return r; }
  if (floor(y) != y) { return flex_f32_bits(0x7fc00000u); }
  let odd = abs(y) < 16777216.0 && (i32(abs(y)) & 1) == 1;
  return select(r, -r, odd);
}`,
  flex_sigmoid: `fn flex_sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`,
  // tanh(x) = x·P(x²)/Q(x²) on |x| ≤ 9 (clamped): a [4/4] rational fit of tanh(x)/x in x² (bench/tanh_fit.py),
  // relative error ≤ 3e-7 in f32 arithmetic everywhere — down to 1e-38, so a mod multiplying by a small tanh keeps its
  // gradients (session 8: the random-mod property test caught the 1 − e form's cancellation); the result is clamped to
  // ±1 (the fit overshoots 1 by ≤ 2e-7 past 8.13, so from there it saturates at exactly ±1 and 1 − tanh² is 0). No
  // branch or select between two forms: on the H200, B4 H16 S4096 D64 f16 softcap 20 + causal 1.825 ms against 1.956
  // for the previous polynomial-or-exp2 select (session 9). NaN stays NaN where the compiler keeps x != x.
  flex_tanh: `fn flex_tanh(x: f32) -> f32 {
  let c = clamp(x, -9.0, 9.0);
  let t = c * c;
  let p = 0.9999999925389905 + t * (0.13394105005081494 + t * (0.0035110706402102223 + t * (2.0861903875586325e-05 + t * 1.3701432327098894e-08)));
  let q = 1.0 + t * (0.4672742662032125 + t * (0.025936014708894062 + t * (0.00033108694473637037 + t * 7.919231268075537e-07)));
  return select(clamp(c * p / q, -1.0, 1.0), x, x != x);
}`,
};
const HELPER_DEPS: Record<string, string[]> = { flex_pow: ["flex_f32_bits"] };
/** flex_tanh's WGSL: the tensor op tanh calls it too (lib/lower/plan_tensor_ops.ts), for the same accuracy near 0. */
export const FLEX_TANH_WGSL: string = HELPERS.flex_tanh;

const INFIX: Partial<Record<Op, string>> = {
  add: "+", sub: "-", mul: "*", div: "/", eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">", ge: ">=", and: "&&", or: "||",
};

const WGSL_TYPE = { f32: "f32", i32: "i32", bool: "bool" } as const;

/** Where each captured tensor (by slot) starts inside the packed `caps` buffer, in u32 words. */
export type CaptureOffsets = readonly number[];

/** One module's worth of generated mod code (helpers shared between score_mod and mask_mod). */
export class WgslModEmitter {
  private readonly helpers = new Set<string>();
  private readonly customs = new Map<string, string>();

  private use(name: string): string {
    for (const d of HELPER_DEPS[name] ?? []) this.use(d);
    this.helpers.add(name);
    return name;
  }

  private customName(def: CustomOpDef): string {
    const safe = def.name.replace(/[^A-Za-z0-9_]/g, "_");
    let h = 0;
    for (let i = 0; i < def.wgsl.length; i++) h = (Math.imul(h, 31) + def.wgsl.charCodeAt(i)) | 0;
    const name = `custom_${safe}_${(h >>> 0).toString(16)}`;
    if (!this.customs.has(name)) {
      const params = Array.from({ length: def.arity }, (_, i) => `x${i}: f32`).join(", ");
      const body = /\breturn\b/.test(def.wgsl) ? def.wgsl : `return ${def.wgsl};`;
      this.customs.set(name, `fn ${name}(${params}) -> f32 {\n  ${body}\n}`);
    }
    return name;
  }

  /**
   * The body statements and result expression of one expression: temporaries are named `${prefix}N`, so
   * several bodies can share a function when their prefixes differ.
   */
  body(root: Expr, offsets: CaptureOffsets, prefix: string): { lines: string[]; result: string } {
    const nodes = toposort(root);
    const uses = new Map<string, number>();
    for (const n of nodes) for (const s of n.src) uses.set(s.hash, (uses.get(s.hash) ?? 0) + 1);
    const text = new Map<string, string>();
    const lines: string[] = [];
    let tmp = 0;
    const bind = (n: Expr, expr: string) => {
      const shared = (uses.get(n.hash) ?? 0) > 1 && n.op !== "const" && n.op !== "arg";
      if (!shared) return text.set(n.hash, expr);
      const name = `${prefix}${tmp++}`;
      lines.push(`let ${name}: ${WGSL_TYPE[n.dtype]} = ${expr};`);
      text.set(n.hash, name);
    };
    for (const n of nodes) {
      const a = n.src.map((s) => text.get(s.hash)!);
      if (n.op === "load") {
        const name = `${prefix}${tmp++}`;
        lines.push(...this.load(n, a, offsets, name));
        text.set(n.hash, name);
        continue;
      }
      bind(n, this.op(n, a));
    }
    return { lines, result: text.get(root.hash)! };
  }

  private load(n: Expr, idx: string[], offsets: CaptureOffsets, name: string): string[] {
    const arg = n.arg as LoadArg;
    const base = offsets[arg.slot];
    if (base === undefined) throw new ModTypeError({ message: `capture slot ${arg.slot} has no buffer offset` });
    const strides = arg.shape.map((_, d) => arg.shape.slice(d + 1).reduce((x, y) => x * y, 1));
    const lines = idx.map((e, d) => `let ${name}_i${d} = u32(${e});`);
    const ok = idx.map((_, d) => `(${name}_i${d} < ${arg.shape[d]}u)`).join(" && ") || "true";
    const flat = idx.map((_, d) => `${name}_i${d} * ${strides[d]}u`).join(" + ") || "0u";
    lines.push(`let ${name}_ok = ${ok};`);
    lines.push(`flex_err = flex_err | select(${ERR_CAPTURE_RANGE}u, 0u, ${name}_ok);`);
    lines.push(`let ${name}_w = caps[${base}u + select(0u, ${flat}, ${name}_ok)];`);
    lines.push(`let ${name}: ${WGSL_TYPE[n.dtype]} = bitcast<${WGSL_TYPE[n.dtype]}>(${name}_w);`);
    return lines;
  }

  private op(n: Expr, a: string[]): string {
    const t = n.dtype;
    const srcT = n.src[0]?.dtype;
    switch (n.op) {
      case "const": {
        const v = n.arg as number | boolean;
        if (t === "bool") return v ? "true" : "false";
        if (t === "i32") return i32Literal(v as number);
        const lit = f32Literal(v as number);
        if (lit.startsWith("flex_f32_bits")) this.use("flex_f32_bits");
        return lit;
      }
      case "arg": return String(n.arg);
      case "neg": return `(-${a[0]})`;
      case "abs": return `abs(${a[0]})`;
      case "exp": case "exp2": case "log": case "sqrt": case "floor": return `${n.op}(${a[0]})`;
      case "tanh": return `${this.use("flex_tanh")}(${a[0]})`;
      case "sigmoid": return `${this.use("flex_sigmoid")}(${a[0]})`;
      case "not": return `(!${a[0]})`;
      case "cast": return `${WGSL_TYPE[t]}(${a[0]})`;
      case "add": case "sub": case "mul": case "div": case "and": case "or":
        return `(${a[0]} ${INFIX[n.op]} ${a[1]})`;
      case "eq": case "ne": return `(${a[0]} ${INFIX[n.op]} ${a[1]})`;
      case "lt": case "le": case "gt": case "ge":
        // WGSL orders numbers only; JS compares bools as 0/1.
        return srcT === "bool" ? `(i32(${a[0]}) ${INFIX[n.op]} i32(${a[1]}))` : `(${a[0]} ${INFIX[n.op]} ${a[1]})`;
      case "pow": return `${this.use("flex_pow")}(${a[0]}, ${a[1]})`;
      case "min": case "max": return `${n.op}(${a[0]}, ${a[1]})`;
      case "floorDiv":
        return t === "i32" ? `${this.use("flex_floordiv_i32")}(${a[0]}, ${a[1]})` : `floor(${a[0]} / ${a[1]})`;
      case "mod":
        return t === "i32" ? `${this.use("flex_mod_i32")}(${a[0]}, ${a[1]})` : `${this.use("flex_mod_f32")}(${a[0]}, ${a[1]})`;
      // min(max()) rather than clamp(): equal to the IR when lo > hi.
      case "clamp": return `min(max(${a[0]}, ${a[1]}), ${a[2]})`;
      case "where": return `select(${a[2]}, ${a[1]}, ${a[0]})`;
      case "custom": return `${this.customName(n.arg as CustomOpDef)}(${a.join(", ")})`;
      case "load": throw new Error("unreachable: loads are statements");
      default: {
        const never: never = n.op;
        throw new ModTypeError({ message: `WGSL codegen: unknown op ${never}` });
      }
    }
  }

  /** `fn score_mod(score, b, h, q, kv) -> f32`. */
  scoreMod(mod: TracedMod, offsets: CaptureOffsets): string {
    const { lines, result } = this.body(mod.expr, offsets, "s");
    return fnText("fn score_mod(score: f32, b: i32, h: i32, q: i32, kv: i32) -> f32", lines, result);
  }

  /** `fn mask_mod(b, h, q, kv) -> bool`. */
  maskMod(mod: TracedMod, offsets: CaptureOffsets): string {
    const { lines, result } = this.body(mod.expr, offsets, "m");
    return fnText("fn mask_mod(b: i32, h: i32, q: i32, kv: i32) -> bool", lines, result);
  }

  /** The helper functions used so far (emit after generating the mods). */
  preamble(): string {
    const hs = [...Object.keys(HELPERS)].filter((h) => this.helpers.has(h)).map((h) => HELPERS[h]);
    return [...hs, ...this.customs.values()].join("\n\n");
  }
}

function fnText(signature: string, lines: string[], result: string): string {
  return `${signature} {\n${lines.map((l) => `  ${l}\n`).join("")}  return ${result};\n}`;
}

/** Captures of several mods packed one after another: per-mod slot offsets (u32 words) and the total. */
export function packCaptureLayout(mods: readonly TracedMod[]): { offsets: number[][]; words: number } {
  let words = 0;
  const offsets = mods.map((m) =>
    m.captures.map((c) => {
      const at = words;
      words += c.shape.reduce((x, y) => x * y, 1);
      return at;
    })
  );
  return { offsets, words };
}

/** Packs captured data (f32 as bits, i32 as is) per `packCaptureLayout`; at least one word. */
export function packCaptureData(mods: readonly TracedMod[], data: readonly (readonly ArrayLike<number>[])[]): Uint32Array {
  const { offsets, words } = packCaptureLayout(mods);
  const out = new Uint32Array(Math.max(1, words));
  mods.forEach((m, i) =>
    m.captures.forEach((c, s) => {
      const src = data[i][s];
      const at = offsets[i][s];
      if (c.dtype === "f32") out.set(new Uint32Array(Float32Array.from(src).buffer), at);
      else out.set(new Uint32Array(Int32Array.from(src).buffer), at);
    })
  );
  return out;
}
