/**
 * The CPU interpreter of the mod IR, in float64 (the oracle's arithmetic): `compileExpr(e)` turns a traced
 * expression into a JS closure once, so dense evaluation over S×S entries stays cheap.
 *
 * Integer ops wrap to i32 as the GPU does; float ops are NOT rounded to f32 (float64 oracle).
 * A captured tensor read outside its shape throws CaptureOutOfRange (the GPU kernels report the same
 * through an error flag).
 */
import { applyOp, type CustomOpDef, type Expr, type LoadArg, toposort } from "../ir/expr.ts";
import { CaptureOutOfRange } from "../errors.ts";

export interface ModEnv {
  score: number;
  b: number;
  h: number;
  q: number;
  kv: number;
}

export type CaptureData = ArrayLike<number>;
export type Compiled = (env: ModEnv, captures: readonly CaptureData[]) => number | boolean;

/** Compiles `root` to a closure evaluating it on one (score, b, h, q, kv) point. */
export function compileExpr(root: Expr): Compiled {
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
