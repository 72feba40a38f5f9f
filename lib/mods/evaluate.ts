/**
 * CPU evaluation of the mod IR, in float64 (the oracle's arithmetic). `compileExpr(e)` turns a traced
 * expression into a JS function once: generated JavaScript (lib/mods/compile_js.ts) where the runtime allows
 * code generation, else the closure interpreter below (`interpretExpr`, e.g. on a browser page whose CSP
 * forbids 'unsafe-eval'). Both have the same semantics, value for value (tests/mods/compile_js.test.ts).
 * `compileMaskScan(e)` evaluates a mask over a whole (q, kv) rectangle in one call (createBlockMask's inner
 * loop, with the mask inlined into the loop body).
 *
 * Integer ops wrap to i32 as the GPU does; float ops are NOT rounded to f32 (float64 oracle).
 * A captured tensor read outside its shape throws CaptureOutOfRange (the GPU kernels report the same
 * through an error flag).
 */
import { applyOp, type CustomOpDef, type Expr, type LoadArg, toposort } from "../ir/expr.ts";
import { CaptureOutOfRange } from "../errors.ts";
import { buildFunction, jsBody, jsPreamble } from "./compile_js.ts";

export interface ModEnv {
  score: number;
  b: number;
  h: number;
  q: number;
  kv: number;
}

export type CaptureData = ArrayLike<number>;
/**
 * A mod compiled to a JS function of one (score, b, h, q, kv) point and its captures' values.
 * @ignore
 */
export type Compiled = (env: ModEnv, captures: readonly CaptureData[]) => number | boolean;

/** A bounded cache of compiled functions by IR hash; custom ops are compared by identity (their `cpu` is not hashed). */
class CompileCache<F> {
  private readonly map = new Map<string, { customs: readonly CustomOpDef[]; fn: F }>();
  get(root: Expr, build: () => F): F {
    const customs = toposort(root).filter((n) => n.op === "custom").map((n) => n.arg as CustomOpDef);
    const hit = this.map.get(root.hash);
    if (hit && hit.customs.length === customs.length && hit.customs.every((c, i) => c === customs[i])) return hit.fn;
    const fn = build();
    if (this.map.size >= 512) this.map.clear();
    this.map.set(root.hash, { customs, fn });
    return fn;
  }
}

const exprCache = new CompileCache<Compiled>();

/**
 * Compiles `root` to a function evaluating it on one (score, b, h, q, kv) point: generated JS, else the interpreter.
 *
 * @example
 * ```ts
 * import { compileExpr, traceMaskMod, causalMask } from "@flex/attention";
 * const f = compileExpr(traceMaskMod(causalMask).expr);
 * console.log(f({ score: 0, b: 0, h: 0, q: 3, kv: 1 }, [])); // true
 * ```
 */
export function compileExpr(root: Expr): Compiled {
  return exprCache.get(root, () => compileExprJs(root) ?? interpretExpr(root));
}

/** `root` as generated JavaScript; undefined where code generation is unavailable. */
export function compileExprJs(root: Expr): Compiled | undefined {
  const body = jsBody(root, (name) => `env.${name}`);
  if (!body) return undefined;
  const src = [
    "return function compiledMod(env, caps) {",
    ...jsPreamble(body), ...body.lines, `return ${body.result};`,
    "};",
  ].join("\n");
  return buildFunction<Compiled>(src, body.customs);
}

/**
 * Per-rectangle mask evaluation: bit 1 set if some entry of [q0, q1) × [k0, k1) is true, bit 2 if some is false
 * (score = 0). Every entry is evaluated in row-major order, exactly as calling the mask per entry would.
 */
export type MaskScan = (b: number, h: number, q0: number, q1: number, k0: number, k1: number, caps: readonly CaptureData[]) => number;

export const SCAN_SOME_TRUE = 1, SCAN_SOME_FALSE = 2;

const scanCache = new CompileCache<MaskScan>();

export function compileMaskScan(root: Expr): MaskScan {
  return scanCache.get(root, () => compileMaskScanJs(root) ?? scanOf(interpretExpr(root)));
}

/** The scan as generated JavaScript (the mask inlined into the loop); undefined where code generation is unavailable. */
export function compileMaskScanJs(root: Expr): MaskScan | undefined {
  const body = jsBody(root, (name) => (name === "score" ? "0" : name));
  if (!body) return undefined;
  const src = [
    "return function maskScan(b, h, q0, q1, k0, k1, caps) {",
    ...jsPreamble(body),
    "let flags = 0;",
    "for (let q = q0; q < q1; q++) for (let kv = k0; kv < k1; kv++) {",
    ...body.lines,
    `flags |= ${body.result} ? 1 : 2;`,
    "}",
    "return flags;",
    "};",
  ].join("\n");
  return buildFunction<MaskScan>(src, body.customs);
}

/** The scan over any per-point function (the fallback). */
export function scanOf(fn: Compiled): MaskScan {
  return (b, h, q0, q1, k0, k1, caps) => {
    const env: ModEnv = { score: 0, b, h, q: 0, kv: 0 };
    let flags = 0;
    for (let q = q0; q < q1; q++) {
      env.q = q;
      for (let kv = k0; kv < k1; kv++) { env.kv = kv; flags |= fn(env, caps) ? SCAN_SOME_TRUE : SCAN_SOME_FALSE; }
    }
    return flags;
  };
}

/** The closure-tree interpreter: one closure per IR node, values in an array (works where codegen is forbidden). */
export function interpretExpr(root: Expr): Compiled {
  const nodes = toposort(root);
  const index = new Map(nodes.map((n, i) => [n.hash, i]));
  type Step = (vals: (number | boolean)[], env: ModEnv, caps: readonly CaptureData[]) => number | boolean;
  const steps: Step[] = nodes.map((n): Step => {
    const src = n.src.map((s) => index.get(s.hash)!);
    switch (n.op) {
      case "const": { const v = n.arg as number | boolean; return () => v; }
      case "arg": { const name = n.arg as keyof ModEnv; return (_v, env) => env[name]; }
      case "load": {
        const a = n.arg as LoadArg;
        const strides = a.shape.map((_, d) => a.shape.slice(d + 1).reduce((x, y) => x * y, 1));
        return (vals, _env, caps) => {
          let flat = 0;
          for (let d = 0; d < src.length; d++) {
            const i = vals[src[d]] as number;
            if (i < 0 || i >= a.shape[d] || !Number.isInteger(i)) {
              throw new CaptureOutOfRange({
                message: `captured tensor #${a.slot} (shape [${a.shape}]) read at index ${i} in dimension ${d}`,
              });
            }
            flat += i * strides[d];
          }
          return caps[a.slot][flat];
        };
      }
      case "custom": {
        const def = n.arg as CustomOpDef;
        return (vals) => def.cpu(...src.map((s) => vals[s] as number));
      }
      default: {
        const op = n.op, t = n.dtype;
        if (src.length === 1) { const [a] = src; return (vals) => applyOp(op, t, [vals[a]], false); }
        if (src.length === 2) { const [a, b] = src; return (vals) => applyOp(op, t, [vals[a], vals[b]], false); }
        return (vals) => applyOp(op, t, src.map((s) => vals[s]), false);
      }
    }
  });
  const last = steps.length - 1;
  return (env, caps) => {
    const vals: (number | boolean)[] = new Array(steps.length);
    for (let i = 0; i < steps.length; i++) vals[i] = steps[i](vals, env, caps);
    return vals[last];
  };
}
