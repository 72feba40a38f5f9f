import { describe, expect, it } from "../harness.ts";
import { Expr } from "../../lib/ir/expr.ts";
import { customOp } from "../../lib/mods/custom_op.ts";
import { traceScoreMod } from "../../lib/mods/trace.ts";
import { softcap, softcapApprox, tanhApprox, tanhApproxValue } from "../../lib/mods/gallery/mod.ts";
import { evalAt, scoreFn } from "./dense.ts";

const score = Expr.arg("score");

describe("customOp", () => {
  const square = customOp({ name: "square", wgsl: "return x0 * x0;", cpu: (x) => x * x, grad: ([x], g) => [g.mul(x).mul(2)] });

  it("builds a custom node: f32, inputs lifted and converted to f32, arity from cpu.length", () => {
    const e = square(Expr.arg("q"));
    expect(e.op).toBe("custom");
    expect(e.dtype).toBe("f32");
    expect(e.src[0].dtype).toBe("f32");
    expect(square.def.arity).toBe(1);
    expect(square.name).toBe("square");
    expect(evalAt(e, { q: -3 })).toBe(9);
    expect(evalAt(square(2.5))).toBe(6.25);
  });

  it("two-input ops evaluate with their cpu function", () => {
    const hyp = customOp({ name: "hyp", wgsl: "return sqrt(x0 * x0 + x1 * x1);", cpu: (a, b) => Math.hypot(a, b) });
    expect(hyp.def.arity).toBe(2);
    expect(evalAt(hyp(score, 4), { score: 3 })).toBe(5);
  });

  it("the wrong number of inputs is a ModTypeError", () => {
    expect(() => square(score, score)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
    expect(() => square()).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
  });

  it("validates the name as a WGSL identifier", () => {
    const cpu = (x: number) => x;
    for (const name of ["1abc", "has-dash", "", "a b", "__x", "_", "fn", "let", "f32", "return"]) {
      expect(() => customOp({ name, wgsl: "return x0;", cpu })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }));
    }
    expect(customOp({ name: "_ok2", wgsl: "return x0;", cpu }).name).toBe("_ok2");
  });

  it("validates arity, wgsl and cpu", () => {
    const rest = (...xs: number[]) => xs[0];
    expect(() => customOp({ name: "r", wgsl: "return x0;", cpu: rest })).toThrow(/arity/);
    expect(customOp({ name: "r", wgsl: "return x0;", cpu: rest, arity: 3 }).def.arity).toBe(3);
    expect(() => customOp({ name: "r", wgsl: "x0", cpu: (x) => x })).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }));
    expect(() => customOp({ name: "r", wgsl: "return x0;", cpu: 1 as unknown as () => number }))
      .toThrow(expect.objectContaining({ _tag: "InvalidArgument" }));
  });

  it("grad returns one Expr per input; a wrong count is reported at the op", () => {
    const g = square.def.grad!([score], Expr.const(1, "f32"));
    expect(g.length).toBe(1);
    expect(evalAt(g[0], { score: 3 })).toBe(6);
    const bad = customOp({ name: "bad", wgsl: "return x0;", cpu: (x) => x, grad: () => [] });
    expect(() => bad.def.grad!([score], score)).toThrow(expect.objectContaining({ _tag: "InvalidArgument" }));
  });

  it("the hash keys on name and WGSL text", () => {
    const a = customOp({ name: "f", wgsl: "return x0 + 1.0;", cpu: (x) => x + 1 });
    const b = customOp({ name: "f", wgsl: "return x0 + 2.0;", cpu: (x) => x + 2 });
    const a2 = customOp({ name: "f", wgsl: "return x0 + 1.0;", cpu: (x) => x + 1 });
    expect(traceScoreMod((s) => a(s)).hash).not.toBe(traceScoreMod((s) => b(s)).hash);
    expect(traceScoreMod((s) => a(s)).hash).toBe(traceScoreMod((s) => a2(s)).hash);
  });
});

describe("tanh_approx (soft-cap custom op)", () => {
  const xs = [-10, -3, -2.999, -1.5, -0.3, 0, 1e-4, 0.7, 1, 2.5, 3, 7, 100];

  it("cpu evaluation matches its definition x(27 + x²)/(27 + 9x²), clamped to ±1 beyond |x| = 3", () => {
    for (const x of xs) {
      const want = Math.abs(x) >= 3 ? Math.sign(x) : (x * (27 + x * x)) / (27 + 9 * x * x);
      expect(evalAt(tanhApprox(score), { score: x })).toBeCloseTo(want, 12);
      expect(tanhApproxValue(x)).toBeCloseTo(want, 12);
    }
    expect(Number.isNaN(tanhApproxValue(NaN))).toBe(true);
  });

  it("is a close approximation of tanh (|error| < 0.025)", () => {
    for (let x = -6; x <= 6; x += 0.01) expect(Math.abs(tanhApproxValue(x) - Math.tanh(x))).toBeLessThan(0.025);
  });

  it("its grad matches a central finite difference of the definition", () => {
    const grad = tanhApprox.def.grad!;
    for (const x of [-4, -2.5, -1, -0.2, 0, 0.4, 1.3, 2.9, 5]) {
      const g = evalAt(grad([score], Expr.const(1, "f32"))[0], { score: x }) as number;
      const eps = 1e-6;
      const fd = (tanhApproxValue(x + eps) - tanhApproxValue(x - eps)) / (2 * eps);
      expect(g).toBeCloseTo(fd, 5);
    }
    // the cotangent scales the gradient
    expect(evalAt(grad([score], Expr.const(2, "f32"))[0], { score: 0 })).toBe(2);
  });

  it("softcapApprox(cap) = cap · tanh_approx(score / cap), close to softcap(cap)", () => {
    const approx = scoreFn(softcapApprox(2)), exact = scoreFn(softcap(2));
    for (const s of [-9, -3, -0.5, 0, 0.25, 1.7, 4, 30]) {
      expect(approx(s, 0, 0, 0, 0)).toBeCloseTo(2 * tanhApproxValue(s / 2), 12);
      expect(Math.abs(approx(s, 0, 0, 0, 0) - exact(s, 0, 0, 0, 0))).toBeLessThan(0.05);
    }
  });
});
