/**
 * The generated-JS evaluator of the mod IR (lib/mods/compile_js.ts) against the closure interpreter
 * (lib/mods/evaluate.ts interpretExpr), value for value (Object.is: NaN equals NaN, −0 differs from 0) or the
 * same thrown error (class and message): on the fuzz's random score / mask trees with captured tensors, and on
 * a wider generator of its own (every op, i32 overflow, division by 0, NaN / ±Inf / −0 constants, custom ops,
 * reads out of range) at random points, including negative and huge indices and non-finite scores.
 * Also: the rectangle scan equals a per-entry loop, and with code generation forbidden (a CSP page)
 * compileExpr still evaluates through the interpreter.
 */
import fc from "fast-check";
import { describe, expect, it } from "../harness.ts";
import { Expr, type Scalar, where } from "../../lib/ir/expr.ts";
import { tensor, type Tensor } from "../../lib/tensor/tensor.ts";
import { traceMaskMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { customOp } from "../../lib/mods/custom_op.ts";
import {
  type CaptureData, type Compiled, compileExpr, compileExprJs, compileMaskScanJs, interpretExpr, type ModEnv, scanOf,
} from "../../lib/mods/evaluate.ts";
import { codegenAvailable, resetCodegenDetection } from "../../lib/mods/compile_js.ts";
import { capturesOf, maskModOf, modArb, scoreModOf } from "../fuzz/generators.ts";

type Outcome = { value: number | boolean } | { error: string };

function run(fn: Compiled, env: ModEnv, caps: readonly CaptureData[]): Outcome {
  try {
    return { value: fn(env, caps) };
  } catch (e) {
    return { error: `${(e as { _tag?: string })._tag ?? (e as Error).name}: ${(e as Error).message}` };
  }
}

function same(a: Outcome, b: Outcome): boolean {
  if ("error" in a || "error" in b) return "error" in a && "error" in b && a.error === b.error;
  return Object.is(a.value, b.value);
}

const scoreArb = fc.oneof(
  fc.double({ noDefaultInfinity: false, noNaN: false }),
  fc.double({ min: -30, max: 30, noNaN: true }),
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity),
);
const indexArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: -20, max: -1 }) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 31 - 1, -(2 ** 31), 65536, 46341) },
);
const pointArb = fc.record({ score: scoreArb, b: fc.integer({ min: 0, max: 3 }), h: fc.integer({ min: 0, max: 9 }), q: indexArb, kv: indexArb });

/** Checks every point; returns a description of the first disagreement (or null). */
function disagreement(root: Expr, caps: readonly CaptureData[], points: readonly ModEnv[]): string | null {
  const js = compileExprJs(root);
  if (!js) return "compileExprJs returned undefined";
  const ref = interpretExpr(root);
  for (const p of points) {
    const a = run(js, { ...p }, caps), b = run(ref, { ...p }, caps);
    if (!same(a, b)) return `${root.toString()} at ${JSON.stringify(p)}: compiled ${JSON.stringify(a)} vs interpreted ${JSON.stringify(b)}`;
  }
  return null;
}

// ---------------------------------------------------------------- a wider generator over the whole op set

const tanhApprox = customOp({ name: "tanh_cubic", wgsl: "return x0 - x0 * x0 * x0 / 3.0;", cpu: (x) => x - (x * x * x) / 3 });
const hypot = customOp({ name: "hypot2", wgsl: "return sqrt(x0 * x0 + x1 * x1);", cpu: (x, y) => Math.hypot(x, y) });

const f32Cap = tensor(Float32Array.from({ length: 24 }, (_, i) => (i % 7 === 3 ? NaN : (i - 11) / 4)), [4, 6]);
const i32Cap = tensor(Int32Array.from({ length: 10 }, (_, i) => [0, -1, 2 ** 31 - 1, 5, -7, 3, 9, -(2 ** 31), 1, 4][i]), [10], { dtype: "i32" });

/** `t.at(...ix)`; a constant index out of range (refused when the mod is built) is wrapped into range instead. */
function atOrWrapped(t: Tensor, ix: Expr[]): Expr {
  try {
    return t.at(...ix);
  } catch {
    return t.at(...ix.map((i, d) => (i.isConst ? i.mod(t.shape[d]) : i)));
  }
}

type Gen = { int: Expr; float: Expr; bool: Expr };

const wide = fc.letrec<Gen>((tie) => {
  const int = tie("int") as fc.Arbitrary<Expr>;
  const float = tie("float") as fc.Arbitrary<Expr>;
  const bool = tie("bool") as fc.Arbitrary<Expr>;
  const rec = { depthSize: "small" as const, maxDepth: 5 };
  const num = fc.oneof(int, float);
  const intOps = ["add", "sub", "mul", "min", "max", "floorDiv", "mod"] as const;
  const floatBin = ["add", "sub", "mul", "div", "pow", "min", "max", "floorDiv", "mod"] as const;
  const floatUn = ["neg", "abs", "exp", "exp2", "log", "sqrt", "tanh", "sigmoid", "floor"] as const;
  const cmp = ["eq", "ne", "lt", "le", "gt", "ge"] as const;
  // deno-lint-ignore no-explicit-any
  const call = (x: Expr, m: string, ...a: Scalar[]) => (x as any)[m](...a) as Expr;
  return {
    int: fc.oneof(
      rec,
      { weight: 4, arbitrary: fc.constantFrom("b", "h", "q", "kv").map((n) => Expr.arg(n as "q")) },
      { weight: 1, arbitrary: fc.constantFrom(0, 1, -1, 3, 7, 2 ** 31 - 1, -(2 ** 31), 65536).map((v) => Expr.const(v, "i32")) },
      { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...intOps), int, int).map(([o, x, y]) => call(x, o, y)) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom("neg", "abs"), int).map(([o, x]) => call(x, o)) },
      { weight: 1, arbitrary: fc.tuple(int, int, int).map(([x, lo, hi]) => x.clamp(lo, hi)) },
      { weight: 1, arbitrary: fc.tuple(bool, int, int).map(([c, x, y]) => where(c, x, y)) },
      { weight: 1, arbitrary: float.map((x) => x.toInt()) },
      { weight: 1, arbitrary: bool.map((x) => x.toInt()) },
      // reads: raw indices, in or out of range depending on the point
      { weight: 1, arbitrary: int.map((i) => atOrWrapped(i32Cap, [i])) },
    ),
    float: fc.oneof(
      rec,
      { weight: 4, arbitrary: fc.constant(Expr.arg("score")) },
      { weight: 1, arbitrary: fc.constantFrom(0.5, -2.25, 0, -0, NaN, Infinity, -Infinity, 1e30, 3.4e38).map((v) => Expr.const(v, "f32")) },
      { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...floatBin), float, num).map(([o, x, y]) => call(x, o, y)) },
      { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...floatUn), float).map(([o, x]) => call(x, o)) },
      { weight: 1, arbitrary: fc.tuple(float, num, num).map(([x, lo, hi]) => x.clamp(lo, hi)) },
      { weight: 1, arbitrary: fc.tuple(bool, float, num).map(([c, x, y]) => where(c, x, y)) },
      { weight: 1, arbitrary: int.map((x) => x.toFloat()) },
      { weight: 1, arbitrary: float.map((x) => tanhApprox(x)) },
      { weight: 1, arbitrary: fc.tuple(float, num).map(([x, y]) => hypot(x, y)) },
      { weight: 1, arbitrary: fc.tuple(int, int).map(([i, j]) => atOrWrapped(f32Cap, [i.mod(4), j])) },
    ),
    bool: fc.oneof(
      rec,
      { weight: 1, arbitrary: fc.boolean().map((v) => Expr.const(v)) },
      { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...cmp), num, num).map(([o, x, y]) => call(x, o, y)) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom("eq", "ne"), bool, bool).map(([o, x, y]) => call(x, o, y)) },
      { weight: 2, arbitrary: fc.tuple(fc.constantFrom("and", "or"), bool, bool).map(([o, x, y]) => call(x, o, y)) },
      { weight: 1, arbitrary: bool.map((x) => x.not()) },
      { weight: 1, arbitrary: fc.tuple(bool, bool, bool).map(([c, x, y]) => Expr.node("where", "bool", [c, x, y])) },
      // raw nodes the methods never build: a cast to bool, a bool neg
      { weight: 1, arbitrary: num.map((x) => Expr.node("cast", "bool", [x], "bool")) },
    ),
  };
});

/** A wide expression with its loads given slots (as the tracer does), and its captures' data. */
function traced(e: Expr): { root: Expr; caps: CaptureData[] } {
  const t = traceScoreMod((s, b, h, q, kv) => {
    void s; void b; void h; void q; void kv;
    return e.dtype === "bool" ? where(e, 1.5, -0.5) : e;
  });
  return { root: t.expr, caps: t.captures.map((c) => (c as Tensor).data!) };
}

describe("mods compiled to JS", () => {
  it("equals the interpreter on the fuzz's random score and mask mods with captures", () => {
    expect(codegenAvailable()).toBe(true);
    fc.assert(
      fc.property(modArb({ depth: 5 }), fc.integer({ min: 0, max: 1e6 }), fc.array(pointArb, { minLength: 8, maxLength: 16 }), (mod, seed, points) => {
        const capTensors = capturesOf(mod, seed);
        for (const kind of ["score", "mask"] as const) {
          let t;
          try {
            t = kind === "score" ? traceScoreMod(scoreModOf(mod, capTensors)) : mod.mask ? traceMaskMod(maskModOf(mod, capTensors)!) : undefined;
          } catch {
            continue; // a constant out-of-range read: refused at trace time, nothing to evaluate
          }
          if (!t) continue;
          const bad = disagreement(t.expr, t.captures.map((c) => (c as Tensor).data!), points);
          if (bad) throw new Error(bad);
        }
      }),
      { numRuns: 150, seed: 0x7a11 },
    );
  });

  it("equals the interpreter on every op with NaN, ±Inf, −0, i32 overflow, division by 0, custom ops and bad reads", () => {
    fc.assert(
      fc.property(fc.oneof(wide.int, wide.float, wide.bool), fc.array(pointArb, { minLength: 8, maxLength: 16 }), (e, points) => {
        const t = traced(e);
        const bad = disagreement(t.root, t.caps, points);
        if (bad) throw new Error(bad);
      }),
      { numRuns: 400, seed: 0x5eed },
    );
  });

  it("a rectangle scan equals the per-entry loop (both flags, every entry, same error)", () => {
    fc.assert(
      fc.property(
        wide.bool, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 9 }),
        fc.integer({ min: -3, max: 40 }), fc.integer({ min: 0, max: 12 }), fc.integer({ min: -3, max: 40 }), fc.integer({ min: 0, max: 12 }),
        (e, b, h, q0, nq, k0, nk) => {
          const t = traceMaskMod((bb, hh, q, kv) => { void bb; void hh; void q; void kv; return e; });
          const caps = t.captures.map((c) => (c as Tensor).data!);
          const js = compileMaskScanJs(t.expr)!;
          const ref = scanOf(interpretExpr(t.expr));
          const go = (f: typeof js): Outcome => {
            try { return { value: f(b, h, q0, q0 + nq, k0, k0 + nk, caps) }; } catch (err) { return { error: (err as Error).message }; }
          };
          const [x, y] = [go(js), go(ref)];
          if (!same(x, y)) throw new Error(`${t.expr.toString()}: scan ${JSON.stringify(x)} vs loop ${JSON.stringify(y)}`);
        },
      ),
      { numRuns: 300, seed: 0xb10c },
    );
  });

  it("the compiled code throws the interpreter's CaptureOutOfRange (message included)", () => {
    const cap = tensor([1, 2, 3], [3]);
    const t = traceScoreMod((s, _b, _h, q) => s.add(cap.at(q)));
    const js = compileExprJs(t.expr)!;
    const env = { score: 0, b: 0, h: 0, q: 3, kv: 0 };
    expect(() => js(env, [cap.data!])).toThrow("captured tensor #0 (shape [3]) read at index 3 in dimension 0");
    expect(run(js, env, [cap.data!])).toEqual(run(interpretExpr(t.expr), env, [cap.data!]));
    expect(js({ ...env, q: 2 }, [cap.data!])).toBe(3);
  });

  it("falls back to the interpreter where code generation is forbidden (a CSP page)", () => {
    const g = globalThis as { Function: FunctionConstructor };
    const original = g.Function;
    g.Function = function () { throw new EvalError("Refused to evaluate a string as JavaScript (CSP)"); } as unknown as FunctionConstructor;
    resetCodegenDetection();
    try {
      expect(codegenAvailable()).toBe(false);
      // a mod never compiled before in this process (cache keys are IR hashes)
      const t = traceScoreMod((s, _b, _h, q, kv) => s.mul(1.0009765625).add(q.sub(kv).toFloat().mul(0.001953125)));
      expect(compileExprJs(t.expr)).toBe(undefined);
      const f = compileExpr(t.expr);
      expect(f({ score: 2, b: 0, h: 0, q: 5, kv: 1 }, [])).toBe(2 * 1.0009765625 + 4 * 0.001953125);
    } finally {
      g.Function = original;
      resetCodegenDetection();
    }
    expect(codegenAvailable()).toBe(true);
  });
});
