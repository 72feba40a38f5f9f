/**
 * The mod IR compiled to JavaScript source (run through `new Function`): straight-line code, one `const` per IR
 * node, in the interpreter's order (lib/mods/evaluate.ts), with the interpreter's exact float64 semantics:
 * integer ops wrap to i32 (`| 0`, `Math.imul`), i32 floorDiv / mod by 0 give 0, float ops are NOT rounded
 * to f32, every node is evaluated (no short-circuit: a `where` evaluates both sides, so a captured read out of
 * range throws CaptureOutOfRange whichever branch is taken, as in the interpreter).
 *
 * V8 / JSC then compile the generated function like hand-written JS: no closure call and no array of values
 * per node, which is what makes dense CPU evaluation (createBlockMask, the float64 oracle) fast.
 *
 * Code generation can be forbidden (a browser page whose CSP has no 'unsafe-eval'): `new Function` throws,
 * and the callers (evaluate.ts) keep the closure interpreter. An op this file does not know is refused
 * (`undefined` from `jsSource`), so the caller falls back to the interpreter rather than guessing.
 */
import type { ArgName, CustomOpDef, Expr, LoadArg, Op } from "../ir/expr.ts";
import { toposort } from "../ir/expr.ts";
import { CaptureOutOfRange } from "../errors.ts";

/** The generated statements of one expression, and what they need from outside. */
export interface JsBody {
  /** `const tN = …;` lines, children before parents. */
  readonly lines: readonly string[];
  /** The name holding the root's value. */
  readonly result: string;
  /** Capture slots read (each hoisted once as `cS = caps[S]`). */
  readonly slots: readonly number[];
  /** Custom ops called (as `F[i]`). */
  readonly customs: readonly CustomOpDef[];
}

/** An exact JS literal of a number (NaN, ±Infinity and −0 included) or boolean. */
export function jsLiteral(v: number | boolean): string {
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Object.is(v, -0)) return "(-0)";
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "(-Infinity)";
  return v < 0 ? `(${String(v)})` : String(v);
}

/** `num` of applyOp (roundF32 = false): i32 results wrap, others pass unchanged. */
function num(t: string, e: string): string { return t === "i32" ? `((${e}) | 0)` : `(${e})`; }

const BINARY_CMP: Partial<Record<Op, string>> = { eq: "===", ne: "!==", lt: "<", le: "<=", gt: ">", ge: ">=" };
const UNARY_MATH: Partial<Record<Op, string>> = {
  exp: "Math.exp", log: "Math.log", sqrt: "Math.sqrt", tanh: "Math.tanh", floor: "Math.floor",
};

/** One node's expression over its operands' names; undefined for an op this generator does not know. */
function nodeExpr(n: Expr, a: readonly string[]): string | undefined {
  const t = n.dtype;
  const [x, y, z] = a;
  const math = UNARY_MATH[n.op];
  if (math) return `${math}(${x})`;
  const cmp = BINARY_CMP[n.op];
  if (cmp) return `(${x} ${cmp} ${y})`;
  switch (n.op) {
    case "neg": return num(t, `-${x}`);
    case "abs": return num(t, `Math.abs(${x})`);
    case "exp2": return `Math.pow(2, ${x})`;
    case "sigmoid": return `(1 / (1 + Math.exp(-${x})))`;
    case "not": return `(!${x})`;
    case "add": return num(t, `${x} + ${y}`);
    case "sub": return num(t, `${x} - ${y}`);
    case "mul": return t === "i32" ? `Math.imul(${x}, ${y})` : `(${x} * ${y})`;
    case "div": return `(${x} / ${y})`;
    case "pow": return `Math.pow(${x}, ${y})`;
    case "min": return num(t, `Math.min(${x}, ${y})`);
    case "max": return num(t, `Math.max(${x}, ${y})`);
    case "floorDiv":
      return t === "i32" ? `(${y} === 0 ? 0 : (Math.floor(${x} / ${y}) | 0))` : `Math.floor(${x} / ${y})`;
    case "mod":
      return t === "i32"
        ? `(${y} === 0 ? 0 : ((${x} - ${y} * Math.floor(${x} / ${y})) | 0))`
        : `(${x} - ${y} * Math.floor(${x} / ${y}))`;
    case "and": return `(!!(${x} && ${y}))`;
    case "or": return `(!!(${x} || ${y}))`;
    case "clamp": return num(t, `Math.min(Math.max(${x}, ${y}), ${z})`);
    case "where": return `(${x} ? ${y} : ${z})`;
    case "cast": return t === "bool" ? `(!!${x})` : t === "i32" ? `(Math.trunc(+${x}) | 0)` : `(+${x})`;
    default: return undefined;
  }
}

/**
 * The statements computing `root`. `arg(name)` gives the JS expression of a symbolic argument (an `env.q` read,
 * a loop variable, a constant). `prefix` keeps the names of two bodies in one function apart.
 * Undefined when the IR holds an op this generator does not know.
 */
export function jsBody(root: Expr, arg: (name: ArgName) => string, prefix = "t"): JsBody | undefined {
  const nodes = toposort(root);
  const name = new Map<string, string>();
  const lines: string[] = [];
  const slots = new Set<number>();
  const customs: CustomOpDef[] = [];
  for (const n of nodes) {
    const v = `${prefix}${name.size}`;
    const a = n.src.map((s) => name.get(s.hash)!);
    let e: string | undefined;
    switch (n.op) {
      case "const": e = jsLiteral(n.arg as number | boolean); break;
      case "arg": e = arg(n.arg as ArgName); break;
      case "load": {
        const l = n.arg as LoadArg;
        slots.add(l.slot);
        let flat = "0", stride = 1;
        const terms: string[] = [];
        for (let d = l.shape.length - 1; d >= 0; d--) { terms.unshift(`${a[d]} * ${stride}`); stride *= l.shape[d]; }
        if (terms.length) flat = `0 + ${terms.join(" + ")}`;
        // checked in dimension order, as the interpreter does; (i | 0) === i is Number.isInteger for |i| < 2³¹
        a.forEach((i, d) => {
          lines.push(`if (!((${i} | 0) === ${i} && ${i} >= 0 && ${i} < ${l.shape[d]})) oob(${l.slot}, ${JSON.stringify(String(l.shape))}, ${i}, ${d});`);
        });
        e = `c${l.slot}[${flat}]`;
        break;
      }
      case "custom": {
        const def = n.arg as CustomOpDef;
        let k = customs.indexOf(def);
        if (k < 0) { k = customs.length; customs.push(def); }
        e = `F${k}(${a.join(", ")})`;
        break;
      }
      default: e = nodeExpr(n, a);
    }
    if (e === undefined) return undefined;
    lines.push(`const ${v} = ${e};`);
    name.set(n.hash, v);
  }
  return { lines, result: name.get(root.hash)!, slots: [...slots].sort((x, y) => x - y), customs };
}

/** Throws the interpreter's CaptureOutOfRange for a read outside a captured tensor. */
function oob(slot: number, shape: string, i: number, d: number): never {
  throw new CaptureOutOfRange({ message: `captured tensor #${slot} (shape [${shape}]) read at index ${i} in dimension ${d}` });
}

/** The preamble every generated function starts with: captures and custom ops bound to short names. */
export function jsPreamble(body: Pick<JsBody, "slots" | "customs">, capsName = "caps"): string[] {
  return [
    ...body.slots.map((s) => `const c${s} = ${capsName}[${s}];`),
    ...body.customs.map((_, k) => `const F${k} = F[${k}];`),
  ];
}

let codegenAllowed: boolean | undefined;

/**
 * Builds a function from generated source: `new Function("oob", "F", src)(oob, customs)`; `src` must
 * `return function …`. Undefined where code generation is forbidden (remembered: one failed attempt per process).
 */
export function buildFunction<T>(src: string, customs: readonly CustomOpDef[]): T | undefined {
  if (codegenAllowed === false) return undefined;
  let factory: (o: typeof oob, f: readonly ((...xs: number[]) => number)[]) => T;
  try {
    factory = new Function("oob", "F", `"use strict";\n${src}`) as typeof factory;
    codegenAllowed = true;
  } catch (e) {
    // a CSP refusal is an EvalError; a SyntaxError would be a bug here, so let it show
    if (e instanceof SyntaxError) throw e;
    codegenAllowed = false;
    return undefined;
  }
  return factory(oob, customs.map((c) => c.cpu));
}

/** Forgets the detection (tests that forbid code generation for a while). */
export function resetCodegenDetection(): void { codegenAllowed = undefined; }

/** Whether generated code runs here (false after `new Function` was refused, e.g. by a CSP). */
export function codegenAvailable(): boolean {
  if (codegenAllowed === undefined) buildFunction("return function () {};", []);
  return codegenAllowed === true;
}
