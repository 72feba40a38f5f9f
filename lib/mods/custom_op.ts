/**
 * `customOp({ name, wgsl, cpu, grad })`: a user-defined pointwise f32 function usable inside mods, for what
 * the built-in ops cannot say (or say slowly): an approximate tanh, a fused polynomial, a lookup formula.
 *
 *   const square = customOp({ name: "square", wgsl: "return x0 * x0;", cpu: (x) => x * x,
 *                             grad: ([x], g) => [g.mul(x).mul(2)] });
 *   const mod = (score) => square(score);
 *
 * - `wgsl` is the BODY of `fn NAME(x0: f32, x1: f32, ...) -> f32` (parameters are x0, x1, ...).
 * - `cpu` evaluates the same function in float64: it is what the CPU oracle runs, so keep the two in step.
 * - `grad(xs, g)` returns one Expr per input: the vector-Jacobian product, built from the mod language
 *   (optional; without it, differentiating through the op fails in the derivative pass).
 * - `arity` defaults to `cpu.length`.
 * Inputs are lifted (numbers) and converted to f32; the result is f32. The op's identity in kernel-cache
 * keys is its name and WGSL text.
 */
import { type CustomOpDef, Expr, type Scalar } from "../ir/expr.ts";
import { InvalidArgument } from "../errors.ts";
import { named } from "./named.ts";

/**
 * What `customOp` needs: a name, a WGSL body, a float64 twin, and optionally a derivative and an arity.
 *
 * @example
 * ```ts
 * import { customOp } from "@flex/attention";
 * const cube = customOp({ name: "cube", wgsl: "return x0 * x0 * x0;", cpu: (x) => x ** 3, grad: ([x], g) => [x.mul(x).mul(3).mul(g)] });
 * ```
 */
export interface CustomOpSpec {
  /** The WGSL function name (an identifier, not a WGSL keyword). */
  readonly name: string;
  /** The body of `fn name(x0: f32, …) -> f32`. */
  readonly wgsl: string;
  /** The same function in float64, for the CPU executor and the oracle. */
  readonly cpu: (...xs: number[]) => number;
  /** The vjp: inputs and the output's gradient → one Expr per input, in the mod language. */
  readonly grad?: (xs: readonly Expr[], g: Expr) => readonly Expr[];
  /** The number of inputs (default: `cpu.length`). */
  readonly arity?: number;
}

/**
 * A custom op as a callable, carrying its definition (for code generators and tests).
 *
 * @example
 * ```ts
 * import { tanhApprox } from "@flex/attention";
 * console.log(tanhApprox.def.name, tanhApprox.def.arity); // tanh_approx 1
 * ```
 */
export interface CustomOpFn {
  (...xs: Scalar[]): Expr;
  /** The definition the code generators read. */
  readonly def: CustomOpDef;
}

// WGSL keywords and reserved words a function name must not take (the ones a user could plausibly pick).
const WGSL_RESERVED = new Set([
  "alias", "break", "case", "const", "const_assert", "continue", "continuing", "default", "diagnostic", "discard",
  "else", "enable", "false", "fn", "for", "if", "let", "loop", "override", "requires", "return", "struct", "switch",
  "true", "var", "while", "bool", "f16", "f32", "i32", "u32", "vec2", "vec3", "vec4", "mat2x2", "mat3x3", "mat4x4",
  "array", "atomic", "ptr", "sampler", "texture_2d", "self", "this", "super", "null", "nil", "new", "static",
  "class", "mod", "module", "async", "await", "import", "export", "function", "type", "typedef", "macro",
]);

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function bad(message: string): never {
  throw new InvalidArgument({ message: `customOp: ${message}` });
}

function checkName(name: unknown): string {
  if (typeof name !== "string" || !IDENT.test(name)) {
    bad(`name ${JSON.stringify(name)} must be a WGSL identifier (letters, digits, _; not starting with a digit)`);
  }
  if (name === "_" || name.startsWith("__")) bad(`name "${name}" is reserved in WGSL (no "_" alone, no leading "__")`);
  if (WGSL_RESERVED.has(name)) bad(`name "${name}" is a WGSL keyword or reserved word; pick another`);
  return name;
}

function checkArity(spec: CustomOpSpec): number {
  const arity = spec.arity ?? spec.cpu.length;
  if (!Number.isInteger(arity) || arity < 1 || arity > 8) {
    bad(`op ${spec.name} needs an arity of 1…8 inputs, got ${arity}` +
      (spec.arity === undefined ? " (taken from cpu.length; pass `arity` when cpu uses rest or default parameters)" : ""));
  }
  return arity;
}

/** Wraps `grad` so a wrong number of returned gradients is reported at the op, not deep in a pass. */
function checkedGrad(name: string, arity: number, grad: CustomOpSpec["grad"]): CustomOpDef["grad"] {
  if (grad === undefined) return undefined;
  if (typeof grad !== "function") bad(`grad of ${name} must be a function (xs, g) => Expr[]`);
  return (xs, g) => {
    const out = grad(xs, g);
    if (!Array.isArray(out) || out.length !== arity) {
      bad(`grad of ${name} must return ${arity} expression(s), one per input; got ${Array.isArray(out) ? out.length : typeof out}`);
    }
    return out.map((e) => (e instanceof Expr ? e : Expr.const(e as unknown as number, "f32")));
  };
}

/**
 * A user-defined pointwise op for mods: its own WGSL, a float64 twin for the CPU, and a derivative for autodiff.
 *
 * @example
 * ```ts
 * import { customOp, flexAttention, randn } from "@flex/attention";
 * const square = customOp({ name: "square", wgsl: "return x0 * x0;", cpu: (x) => x * x, grad: ([x], g) => [x.mul(2).mul(g)] });
 * const x = randn([1, 1, 64, 16]);
 * const out = flexAttention(x, x, x, { scoreMod: (s) => square(s).mul(0.1) });
 * ```
 */
export function customOp(spec: CustomOpSpec): CustomOpFn {
  const name = checkName(spec?.name);
  if (typeof spec.wgsl !== "string" || !spec.wgsl.includes("return")) {
    bad(`wgsl of ${name} must be a function body with a return statement, e.g. "return x0 * x0;"`);
  }
  if (typeof spec.cpu !== "function") bad(`cpu of ${name} must be a function (...xs: number[]) => number`);
  const arity = checkArity(spec);
  const def: CustomOpDef = { name, arity, wgsl: spec.wgsl, cpu: spec.cpu, grad: checkedGrad(name, arity, spec.grad) };
  const fn = named(name, (...xs: Scalar[]) => Expr.custom(def, xs)) as unknown as CustomOpFn;
  Object.defineProperty(fn, "def", { value: def, enumerable: true });
  return fn;
}
