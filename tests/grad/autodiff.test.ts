/**
 * vjp / grad / valueAndGrad over the lazy graph, realized on the CPU executor: elementwise glue ops,
 * flex attention (dq/dk/dv, learnable captures, lse cotangents, shared inputs) against the float64 reference
 * backward and float64 finite differences, and the typed errors.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { flexAttention, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { add, expand, mul, mulScalar, neg, reshape, sub, sum } from "../../lib/tensor/ops.ts";
import { grad, valueAndGrad, vjp } from "../../lib/passes/mod.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import type { FlexGradArg } from "../../lib/passes/flex_grad.ts";
import type { MaskMod, ScoreMod } from "../../lib/mods/trace.ts";
import { DTypeError, GradError, ShapeError, UndefinedDerivative } from "../../lib/errors.ts";
import { blockMaskOf, f64Inputs, finiteDiff, flexLoss, freshSeed, uniform } from "./fixtures.ts";
import { realize } from "./cpu_realizer.ts";

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const alibi = (slopes: Tensor): ScoreMod => (s, _b, h, q, kv) => s.add(slopes.at(h).mul(q.sub(kv)));

describe("autodiff: glue ops", () => {
  it("add / sub / mul / mulScalar / neg / sum: gradients of Σ (a+b)(a−3b) − Σ a", () => {
    const a = uniform([2, 3], freshSeed()), b = uniform([2, 3], freshSeed());
    const f = (a: Tensor, b: Tensor) => add(sum(mul(add(a, b), sub(a, mulScalar(b, 3)))), neg(sum(a)));
    const [da, db] = realize(...grad(f)(a, b));
    const A = a.data!, B = b.data!;
    expect(relL2(da, A.map((x, i) => 2 * x - 2 * B[i] - 1))).toBeLessThan(1e-6);
    expect(relL2(db, A.map((x, i) => -2 * x - 6 * B[i]))).toBeLessThan(1e-6);
  });

  it("scalar broadcast, reshape and expand: the scalar's gradient is a sum", () => {
    const a = uniform([2, 3], freshSeed()), s = tensor([0.7], []);
    const f = (a: Tensor, s: Tensor) => sum(mul(reshape(a, [6]), add(expand(s, [6]), mul(s, reshape(a, [6])))));
    // f = s·Σ a + s·Σ a²  →  da_i = s + 2 s a_i,  ds = Σ a + Σ a²
    const [da, ds] = realize(...grad(f)(a, s));
    const A = Array.from(a.data!);
    const S = Math.fround(0.7);
    expect(relL2(da, A.map((x) => S + 2 * S * x))).toBeLessThan(1e-6);
    expect(ds[0]).toBeCloseTo(A.reduce((t, x) => t + x + x * x, 0), 5);
  });

  it("an unused input gets zeros; an output that is an input gets the cotangent", () => {
    const a = uniform([3], freshSeed()), b = uniform([3], freshSeed()), ct = uniform([3], freshSeed());
    const [, back] = vjp((a: Tensor, _b: Tensor) => a, a, b);
    const [da, db] = realize(...back(ct));
    expect(Array.from(da)).toEqual(Array.from(ct.data!));
    expect(Array.from(db)).toEqual([0, 0, 0]);
  });

  it("shape and dtype errors are raised at construction", () => {
    expect(() => add(uniform([2], 1), uniform([3], 2))).toThrow(ShapeError);
    expect(() => mul(uniform([2], 1), tensor(new Int32Array([1, 2])))).toThrow(DTypeError);
    expect(() => reshape(uniform([2, 3], 1), [4])).toThrow(ShapeError);
    expect(() => expand(uniform([2], 1), [4])).toThrow(ShapeError);
  });
});

function qkv(B: number, Hq: number, Hkv: number, Sq: number, Skv: number, D = 16) {
  return [uniform([B, Hq, Sq, D], freshSeed()), uniform([B, Hkv, Skv, D], freshSeed()), uniform([B, Hkv, Skv, D], freshSeed())];
}

describe("autodiff: flex attention", () => {
  it("vjp(flexAttention) gives the reference backward's dq, dk, dv (GQA, causal, Sq != Skv)", () => {
    const [q, k, v] = qkv(2, 4, 2, 6, 10);
    const blockMask = blockMaskOf((_b, _h, q, kv) => q.add(4).ge(kv), 1, 1, 6, 10);
    const opts = { blockMask, enableGqa: true };
    const [out, back] = vjp((q: Tensor, k: Tensor, v: Tensor) => flexAttention(q, k, v, opts), q, k, v);
    const dOut = uniform(out.shape, freshSeed());
    const got = realize(...back(dOut));
    const call = makeFlexCall(q, k, v, opts);
    const ref = flexReferenceBwd(call, { ...f64Inputs(call), dOut: dOut.data! });
    for (const [g, r] of [[got[0], ref.dq], [got[1], ref.dk], [got[2], ref.dv]] as const) {
      expect(relL2(g, r)).toBeLessThan(1e-6);
      expect(r.some((x) => Math.abs(x) > 1e-3)).toBe(true);
    }
  });

  it("grad of Σ out·w with learnable alibi slopes matches float64 finite differences", () => {
    const [q, k, v] = qkv(1, 2, 2, 8, 8);
    const slopes = uniform([2], freshSeed(), -0.5, 0.5);
    const w = uniform([1, 2, 8, 16], freshSeed());
    const blockMask = blockMaskOf(causal, 1, 1, 8, 8);
    const loss = (q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) =>
      sum(mul(flexAttention(q, k, v, { scoreMod: alibi(slopes), blockMask }), w));
    const [value, grads] = valueAndGrad(loss)(q, k, v, slopes);
    const [val, ...gs] = realize(value, ...grads);
    // float64 finite differences of the same loss
    const call = makeFlexCall(q, k, v, { scoreMod: alibi(slopes), blockMask });
    const x = f64Inputs(call);
    const L = () => flexLoss(call, x, w.data!);
    // relative to max(|L|, 1): the loss can cancel to near 0 on random inputs while its f32 terms round at ~1e-7
    expect(Math.abs(val[0] - L()) / Math.max(Math.abs(L()), 1)).toBeLessThan(2e-5);
    const fds = [finiteDiff(x.q, L), finiteDiff(x.k, L), finiteDiff(x.v, L), finiteDiff(x.scoreCaptures[0], L)];
    gs.forEach((g, i) => expect(relL2(g, fds[i])).toBeLessThan(1e-5));
  });

  it("returnLse: cotangents on out and lse, and on lse alone", () => {
    const [q, k, v] = qkv(1, 2, 2, 8, 8);
    const blockMask = blockMaskOf((_b, _h, q, kv) => q.ge(2).and(q.ge(kv)), 1, 1, 8, 8); // rows 0, 1 fully masked
    const f = (q: Tensor, k: Tensor, v: Tensor) => flexAttention(q, k, v, { blockMask, returnLse: true });
    const [y, back] = vjp(f, q, k, v);
    const wOut = uniform(y.out.shape, freshSeed()), wLse = uniform(y.lse.shape, freshSeed());
    const call = makeFlexCall(q, k, v, { blockMask });
    const x = f64Inputs(call);
    for (const useOut of [true, false]) {
      const got = realize(...back({ out: useOut ? wOut : null, lse: wLse }));
      const zeros = new Float32Array(wOut.size);
      const L = () => flexLoss(call, x, useOut ? wOut.data! : zeros, wLse.data!);
      const fds = [finiteDiff(x.q, L), finiteDiff(x.k, L), finiteDiff(x.v, L)];
      expect(relL2(got[0], fds[0])).toBeLessThan(1e-5);
      expect(relL2(got[1], fds[1])).toBeLessThan(1e-5);
      if (useOut) expect(relL2(got[2], fds[2])).toBeLessThan(1e-5);
      else expect(got[2].every((g) => g === 0)).toBe(true); // lse does not depend on v
    }
  });

  it("one input used as q, k and v (and in the loss) accumulates every path", () => {
    const [x] = qkv(1, 2, 2, 6, 6);
    const f = (x: Tensor) => add(sum(mul(flexAttention(x, x, x), x)), sum(mulScalar(x, 0.5)));
    const [dx] = realize(...grad(f)(x));
    const call = makeFlexCall(x, x, x);
    const X = Float64Array.from(x.data!);
    const L = () => {
      const inputs = { q: X, k: X, v: X, scoreCaptures: [], maskCaptures: [] };
      return flexLoss(call, inputs, X) + 0.5 * X.reduce((a, b) => a + b, 0);
    };
    expect(relL2(dx, finiteDiff(X, L))).toBeLessThan(1e-5);
  });

  it("all gradient nodes of one call share one backward", () => {
    const [q, k, v] = qkv(1, 2, 2, 4, 4);
    const slopes = uniform([2], 3);
    const grads = grad((q: Tensor, k: Tensor, v: Tensor, s: Tensor) =>
      sum(flexAttention(q, k, v, { scoreMod: alibi(s) })))(q, k, v, slopes);
    const bwds = new Set(grads.map((g) => (g.arg as FlexGradArg).bwd));
    expect(grads.map((g) => g.op)).toEqual(["flexGrad", "flexGrad", "flexGrad", "flexGrad"]);
    expect(bwds.size).toBe(1);
    expect(grads.map((g) => (g.arg as FlexGradArg).which)).toEqual(["dq", "dk", "dv", "dcap:0"]);
  });
});

describe("autodiff: errors", () => {
  it("grad of a non-scalar is a GradError", () => {
    const [q, k, v] = qkv(1, 1, 1, 4, 4);
    expect(() => grad((q: Tensor, k: Tensor, v: Tensor) => flexAttention(q, k, v))(q, k, v)).toThrow(GradError);
    expect(() => valueAndGrad((a: Tensor) => a)(uniform([2], 1))).toThrow(GradError);
  });

  it("an i32 input asks for a gradient that does not exist: DTypeError", () => {
    const [q, k, v] = qkv(1, 1, 1, 4, 4);
    const docs = tensor(new Int32Array([0, 0, 1, 1]));
    const f = (q: Tensor, docs: Tensor) =>
      sum(flexAttention(q, k, v, { scoreMod: (s, _b, _h, qi, kv) => s.add(docs.at(qi).mul(docs.at(kv))) }));
    expect(() => grad(f)(q, docs)).toThrow(DTypeError);
  });

  it("a cotangent of the wrong shape or structure is a GradError", () => {
    const [q, k, v] = qkv(1, 1, 1, 4, 4);
    const [, back] = vjp((q: Tensor) => flexAttention(q, k, v), q);
    expect(() => back(uniform([1, 1, 4, 8], 1))).toThrow(GradError);
    const [, back2] = vjp((q: Tensor) => flexAttention(q, k, v, { returnLse: true }), q);
    expect(() => back2({ lse: uniform([1, 1, 5], 1) })).toThrow(GradError);
  });

  it("second order through a flex gradient is a GradError", () => {
    const [q, k, v] = qkv(1, 1, 1, 4, 4);
    const f = (q: Tensor) => sum(grad((q: Tensor) => sum(flexAttention(q, k, v)))(q)[0]);
    expect(() => grad(f)(q)).toThrow(GradError);
  });

  it("a mod with an undefined derivative fails the realize with UndefinedDerivative", () => {
    const [q, k, v] = qkv(1, 1, 1, 4, 4);
    const [dq] = grad((q: Tensor) => sum(flexAttention(q, k, v, { scoreMod: (s) => s.mul(0).sqrt().add(s) })))(q);
    expect(() => realize(dq)).toThrow(UndefinedDerivative);
  });

  it("an op with no rule is a GradError", () => {
    const a = uniform([2], 1);
    const odd = (a: Tensor) => sum(new Tensor("mystery" as never, [a], [2], "f32", undefined as never));
    expect(() => grad(odd)(a)).toThrow(GradError);
  });
});
