/**
 * The tensor ops (matmul, transpose, reshape, expand, broadcasting arithmetic, comparisons, logic, where,
 * exp / log / tanh, sum / max / logsumexp over dims, softmax, gather, repeat, repeatInterleave, cast):
 *
 * - every op on the GPU (outputs poisoned) against the CPU executor on fresh random inputs, with
 *   broadcasting and odd sizes: f32 rel. L2 ≤ 1e-5 elementwise, ≤ 1e-4 matmul / reductions; f16 within
 *   f16 rounding (≤ 2e-3); i32 / bool exact;
 * - every differentiable op's vjp against central finite differences on the CPU executor;
 * - attention written by hand from these ops equals flexAttention with a causal BlockMask, forward and
 *   gradients, on the GPU;
 * - the plans (one kernel per expression and dtypes, merged dims, the transposed matmul operand read in
 *   place) and the typed errors at construction.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { arange, rng, Tensor, tensor, type TypedData } from "../../lib/tensor/tensor.ts";
import { cast, expand, mulScalar, neg, reshape } from "../../lib/tensor/ops.ts";
import {
  add, and, div, eq, exp, gather, ge, gt, le, log, logsumexp, lt, matmul, max, mul, ne, not, or, repeat,
  repeatInterleave, softmax, sub, sum, tanh, transpose, where,
} from "../../mod.ts";
import { Expr } from "../../lib/ir/expr.ts";
import { vjp } from "../../lib/passes/mod.ts";
import { flexAttention } from "../../lib/attention/flex_attention.ts";
import { planNode } from "../../lib/lower/plan_node.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { realizeCpu } from "../../lib/runtime/cpu/executor.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../../lib/errors.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { blockMaskOf, cpu, freshSeed, gpu, randF32, randI32 } from "./fixtures.ts";

const noGpu = await gpuSkipReason();

const f16 = (t: Tensor) => cast(t, "f16");
/** Small integers (equalities happen), never all zero. */
const smallI32 = (shape: readonly number[]) => randI32(shape, -3, 3);
const boolOf = (shape: readonly number[]) => gt(randF32(shape), 0);

interface Case { node: Tensor; label: string; tol?: number }

function agrees(got: TypedData, want: TypedData, node: Tensor, label: string, tol: number) {
  expect({ label, n: got.length }).toEqual({ label, n: want.length });
  if (node.dtype === "i32" || node.dtype === "bool") {
    const bad = Array.from(got).findIndex((x, i) => x !== want[i]);
    expect({ label, firstMismatch: bad }).toEqual({ label, firstMismatch: -1 });
  } else {
    const err = relL2(got, want);
    expect({ label, err, ok: err <= (node.dtype === "f16" ? 2e-3 : tol) }).toEqual({ label, err, ok: true });
  }
}

/** One realize of all cases on the GPU, compared with the CPU executor. */
async function check(cases: Case[], tol = 1e-5) {
  const got = await gpu(...cases.map((c) => c.node));
  const want = cpu(...cases.map((c) => c.node));
  cases.forEach((c, i) => agrees(got[i], want[i], c.node, c.label, c.tol ?? tol));
}

const BCAST: [number[], number[]][] = [[[3, 1, 5], [4, 5]], [[7], [2, 3, 7]], [[2, 1], [1, 3]], [[257], []], [[1], [6, 1, 1]], [[2, 3, 4], [2, 3, 4]]];

describe("tensor ops on the GPU vs the CPU executor", () => {
  it.skipIf(noGpu)("broadcasting add / sub / mul / div (f32, i32, JS numbers), neg, mulScalar", async () => {
    const cases: Case[] = [];
    for (const [sa, sb] of BCAST) {
      const a = randF32(sa), b = randF32(sb, 0.5, 2);
      for (const op of [add, sub, mul, div]) cases.push({ node: op(a, b), label: `${op.name} f32 [${sa}]·[${sb}]` });
      const ia = randI32(sa), ib = randI32(sb);
      for (const op of [add, sub, mul]) cases.push({ node: op(ia, ib), label: `${op.name} i32 [${sa}]·[${sb}]` });
    }
    const a = randF32([5, 67]);
    cases.push({ node: add(a, 2.5), label: "a + 2.5" }, { node: sub(1, a), label: "1 − a" }, { node: div(a, 3), label: "a / 3" });
    cases.push({ node: mul(randI32([9]), 3), label: "i32 · 3" }, { node: neg(a), label: "neg" }, { node: mulScalar(a, -0.3), label: "mulScalar" });
    await check(cases);
  });

  it.skipIf(noGpu)("exp / log / tanh and f16 storage (broadcasting, where, div)", async () => {
    const a = randF32([3, 129], -4, 4), p = randF32([3, 129], 0.1, 5);
    const big = tensor([-30, -12, -1, 0, 0.5, 12, 30, 1e-4]);
    const h = f16(randF32([4, 1, 33])), hb = f16(randF32([5, 33], 0.5, 2));
    await check([
      { node: exp(a), label: "exp" }, { node: log(p), label: "log" }, { node: tanh(a), label: "tanh" },
      { node: tanh(big), label: "tanh at large |x|" },
      { node: add(h, hb), label: "f16 add (broadcast)" }, { node: div(h, hb), label: "f16 div" }, { node: exp(h), label: "f16 exp" },
      { node: where(gt(h, 0), h, mul(hb, 2)), label: "f16 where" }, { node: cast(h, "f32"), label: "f16 → f32 (a fused f16 intermediate)" },
      { node: exp(sub(mul(h, hb), tanh(h))), label: "f16 fused chain" },
      { node: cast(div(exp(sub(mul(h, hb), h)), add(hb, 1)), "f32"), label: "f16 fused chain to f32 (each intermediate rounded)", tol: 2e-4 },
      // (f32 vs float64 math can round one f16 intermediate to the neighbouring f16 — ~5e-4/√n of rel. L2 —
      // while skipping the rounding altogether is off on every element)
    ]);
  });

  it.skipIf(noGpu)("comparisons → bool, and / or / not, where (broadcast, numbers), casts from bool / i32", async () => {
    const cases: Case[] = [];
    const fa = randF32([4, 1, 6]), fb = randF32([3, 6]);
    const ia = smallI32([4, 1, 6]), ib = smallI32([3, 6]);
    for (const op of [eq, ne, lt, le, gt, ge]) {
      cases.push({ node: op(fa, fb), label: `${op.name} f32` }, { node: op(ia, ib), label: `${op.name} i32` });
    }
    cases.push({ node: eq(fa, fa), label: "eq self" }, { node: le(ia, 0), label: "i32 ≤ 0 (number)" });
    const p = boolOf([4, 1, 6]), q = boolOf([3, 6]);
    cases.push({ node: and(p, q), label: "and" }, { node: or(p, q), label: "or" }, { node: not(p), label: "not" }, { node: and(p, true), label: "and true" });
    cases.push({ node: where(p, fb, fa), label: "where f32 (3-way broadcast)" }, { node: where(q, ia, -7), label: "where i32, number" });
    cases.push({ node: where(p, 1, 0), label: "where of two numbers" });
    cases.push({ node: cast(p, "f32"), label: "bool → f32" }, { node: cast(q, "i32"), label: "bool → i32" }, { node: cast(ia, "f32"), label: "i32 → f32" });
    cases.push({ node: cast(ib, "f16"), label: "i32 → f16" }, { node: sum(p), label: "sum(bool) → i32" });
    await check(cases);
  });

  it.skipIf(noGpu)("copies: reshape(−1), expand, transpose, repeat, repeatInterleave, gather (f32, i32, f16)", async () => {
    const x = randF32([2, 3, 5, 7]), xi = randI32([2, 3, 5, 7]), xh = f16(randF32([2, 3, 5, 7]));
    const cases: Case[] = [];
    for (const [t, dt] of [[x, "f32"], [xi, "i32"], [xh, "f16"]] as const) {
      cases.push(
        { node: reshape(t, [6, -1]), label: `${dt} reshape [6, −1]` },
        { node: transpose(t, 0, 2), label: `${dt} transpose 0 2` },
        { node: transpose(t, -1, -2), label: `${dt} transpose −1 −2` },
        { node: repeat(t, 2, 1, 1, 3), label: `${dt} repeat 2 1 1 3` },
        { node: repeatInterleave(t, 3, 1), label: `${dt} repeatInterleave 3 dim 1` },
        { node: repeatInterleave(t, 2, -1), label: `${dt} repeatInterleave 2 dim −1` },
        { node: expand(reshape(sum(t, 1), [2, 1, 5, 7]), [4, 2, 3, 5, 7]), label: `${dt} expand size-1 and leading dims` },
      );
    }
    const s = randF32([3, 1]);
    cases.push({ node: expand(s, [2, -1, 5]), label: "expand −1" }, { node: expand(sum(s), [5]), label: "expand a scalar" });
    cases.push({ node: repeat(randF32([3, 4]), [2, 2, 3]), label: "repeat with a new leading dim" });
    cases.push({ node: repeatInterleave(randI32([2, 3]), 2), label: "repeatInterleave flattened" });
    const r = rng(freshSeed());
    const index = (shape: number[], n: number) => tensor(Int32Array.from({ length: shape.reduce((a, b) => a * b) }, () => Math.floor(r() * n)), shape, { dtype: "i32" });
    const g = randF32([4, 6, 5]);
    cases.push(
      { node: gather(g, 0, index([7, 6, 5], 4)), label: "gather dim 0 (index longer)" },
      { node: gather(g, 1, index([3, 2, 4], 6)), label: "gather dim 1 (index smaller)" },
      { node: gather(g, -1, index([4, 6, 9], 5)), label: "gather dim −1" },
      { node: gather(f16(g), 2, index([2, 6, 3], 5)), label: "gather f16" },
      { node: gather(randI32([4, 6]), 1, index([4, 3], 6)), label: "gather i32" },
    );
    await check(cases);
  });

  it.skipIf(noGpu)("reductions: sum / max / logsumexp over dims (keepdim, long rows, strided, −∞ rows; i32, bool, f16), softmax", async () => {
    const x = randF32([2, 3, 5, 7], -3, 3);
    const cases: Case[] = [];
    for (const dim of [0, -1, 2, [1, 3], [0, 1, 2, 3]] as (number | number[])[]) {
      for (const keepdim of [false, true]) {
        cases.push(
          { node: sum(x, dim, { keepdim }), label: `sum dim ${dim} keepdim ${keepdim}` },
          { node: max(x, dim, { keepdim }), label: `max dim ${dim} keepdim ${keepdim}` },
          { node: logsumexp(x, dim, { keepdim }), label: `logsumexp dim ${dim} keepdim ${keepdim}` },
        );
      }
    }
    const long = randF32([5, 1000]), tall = randF32([1500, 3]), mid = randF32([40, 50, 3]);
    cases.push(
      { node: sum(long, -1), label: "sum of long rows (32 lanes)" }, { node: logsumexp(long, 1), label: "logsumexp long rows" },
      { node: sum(tall, 0), label: "sum of a strided tall dim (32 lanes)" }, { node: max(tall, 0), label: "max tall" },
      { node: sum(mid, [0, 2]), label: "sum dims 0 and 2" }, { node: softmax(long, -1), label: "softmax long rows" },
      { node: softmax(x, 1), label: "softmax dim 1" },
    );
    const masked = where(ge(reshape(arange(6), [6, 1]), reshape(arange(6), [1, 6])), randF32([6, 6]), -Infinity);
    const allMasked = where(lt(reshape(arange(4), [4, 1]), 0), randF32([4, 5]), -Infinity);
    cases.push({ node: logsumexp(masked, -1), label: "logsumexp causal rows" }, { node: logsumexp(allMasked, -1), label: "logsumexp all −∞ rows" });
    cases.push({ node: max(allMasked, 1), label: "max of −∞ rows" }, { node: softmax(masked, -1), label: "softmax of a causal score" });
    const xi = randI32([3, 37, 4]);
    cases.push({ node: sum(xi, 1), label: "i32 sum" }, { node: max(xi, [0, 2]), label: "i32 max" }, { node: sum(boolOf([6, 45]), -1), label: "bool sum → i32" });
    const xh = f16(randF32([3, 70, 5]));
    cases.push({ node: sum(xh, 1), label: "f16 sum" }, { node: max(xh, -1), label: "f16 max" }, { node: logsumexp(xh, 1), label: "f16 logsumexp" });
    cases.push({ node: sum(randF32([3, 0, 2]), 1), label: "sum of an empty dim" });
    await check(cases, 1e-4);
  });

  it.skipIf(noGpu)("matmul: batched, broadcast batch dims, odd sizes, vectors, a transposed operand, f16", async () => {
    const a = randF32([2, 3, 17, 33]), b = randF32([33, 19]);
    const c = randF32([5, 1, 8, 7]), d = randF32([3, 7, 9]);
    const t = randF32([2, 40, 9]);
    await check([
      { node: matmul(a, b), label: "[2,3,17,33] @ [33,19]" },
      { node: matmul(c, d), label: "[5,1,8,7] @ [3,7,9]" },
      { node: matmul(randF32([33, 1]), randF32([1, 65])), label: "outer product 33×65" },
      { node: matmul(randF32([70, 45]), randF32([45, 37])), label: "70×45 @ 45×37 (several tiles)" },
      { node: matmul(randF32([7]), randF32([3, 7, 4])), label: "vector @ batch" },
      { node: matmul(randF32([3, 5, 7]), randF32([7])), label: "batch @ vector" },
      { node: matmul(randF32([7]), randF32([7])), label: "dot" },
      { node: matmul(transpose(t, -1, -2), t), label: "tᵀ @ t (transposed operand)" },
      { node: matmul(t, transpose(t, 1, 2)), label: "t @ tᵀ" },
      { node: matmul(f16(randF32([3, 21, 18])), f16(randF32([18, 35]))), label: "f16 [3,21,18] @ [18,35]" },
    ], 1e-4);
  });

  it.skipIf(noGpu)("gather with an index out of range fails the realize with InvalidArgument (GPU and CPU)", async () => {
    const bad = gather(randF32([3, 4]), 1, tensor(new Int32Array([0, 4, 1, 2, 3, 0]), [3, 2]));
    await expect(gpu(bad)).rejects.toThrow(InvalidArgument);
    expect(() => cpu(bad)).toThrow(InvalidArgument);
    await expect(gpu(gather(randF32([3, 4]), 0, tensor(new Int32Array([-1]), [1, 1])))).rejects.toThrow(InvalidArgument);
  });
});

/** Σ w·y in float64 over a realized y. */
function weighted(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * w[i];
  return s;
}

/**
 * The vjp of `f` at random inputs (CPU executor) against central differences of L = Σ w·f(x), each input
 * element moved by ±h (the difference quotient uses the f32-stored perturbed values).
 */
function checkVjp(label: string, f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], h = 1e-2, tol = 2e-3) {
  const y = f(...inputs);
  const w = randF32(y.shape);
  const [, back] = vjp(f, ...inputs);
  const grads = realizeCpu(back(w));
  inputs.forEach((x, k) => {
    const data = Float32Array.from(x.data!);
    const fd = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const at = (v: number) => {
        const d = data.slice(); d[i] = v;
        const xs = inputs.map((t, j) => (j === k ? new Tensor("const", [], t.shape, "f32", d) : t));
        return { x: d[i], L: weighted(realizeCpu([f(...xs)])[0], w.data!) };
      };
      const up = at(data[i] + h), down = at(data[i] - h);
      fd[i] = (up.L - down.L) / (up.x - down.x);
    }
    const err = relL2(grads[k], fd);
    expect({ label, input: k, err, ok: err <= tol }).toEqual({ label, input: k, err, ok: true });
  });
}

/** Values well apart (no ties within ±h), shuffled. */
function separated(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = rng(freshSeed());
  const v = Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1);
  for (let i = n - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [v[i], v[j]] = [v[j], v[i]]; }
  return tensor(v, shape);
}

describe("vjp of the tensor ops vs central finite differences (CPU executor)", () => {
  it("broadcasting add / sub / mul / div, exp / log / tanh, where", () => {
    checkVjp("add broadcast", (a, b) => add(a, b), [randF32([3, 1, 4]), randF32([2, 4])]);
    checkVjp("sub broadcast", (a, b) => sub(a, b), [randF32([2, 1]), randF32([3])]);
    checkVjp("mul broadcast", (a, b) => mul(a, b), [randF32([3, 1, 4]), randF32([2, 4])]);
    checkVjp("div broadcast", (a, b) => div(a, b), [randF32([2, 3]), randF32([3], 0.5, 2)]);
    checkVjp("mul by a scalar tensor", (a, s) => mul(a, s), [randF32([2, 3]), randF32([])]);
    checkVjp("exp", (a) => exp(a), [randF32([2, 5])]);
    checkVjp("log", (a) => log(a), [randF32([2, 5], 0.5, 3)]);
    checkVjp("tanh", (a) => tanh(a), [randF32([2, 5], -2, 2)]);
    const c = boolOf([3, 1]);
    checkVjp("where (broadcast operands)", (a, b) => where(c, a, b), [randF32([3, 4]), randF32([4])]);
  });

  it("expand, reshape, transpose, repeat, repeatInterleave, gather", () => {
    checkVjp("expand", (a) => expand(a, [2, 3, 4]), [randF32([3, 1])]);
    checkVjp("reshape −1", (a) => reshape(a, [-1, 2]), [randF32([3, 4])]);
    checkVjp("transpose", (a) => transpose(a, 0, -1), [randF32([2, 3, 4])]);
    checkVjp("repeat", (a) => repeat(a, 2, 1, 3), [randF32([2, 3])]);
    checkVjp("repeatInterleave", (a) => repeatInterleave(a, 3, 1), [randF32([2, 3, 2])]);
    const index = tensor(new Int32Array([0, 2, 2, 1, 1, 1, 0, 0, 2, 2, 0, 1]), [4, 3]);
    checkVjp("gather (repeated indices: scatter-add)", (a) => gather(a, 0, index), [randF32([3, 3])]);
    checkVjp("gather dim 1", (a) => gather(a, 1, tensor(new Int32Array([2, 2, 0, 1]), [2, 2])), [randF32([3, 3])]);
  });

  it("sum / max / logsumexp over dims, softmax, matmul", () => {
    checkVjp("sum dim", (a) => sum(a, 1), [randF32([2, 3, 4])]);
    checkVjp("sum dims keepdim", (a) => sum(a, [0, 2], { keepdim: true }), [randF32([2, 3, 4])]);
    checkVjp("max dim (no ties)", (a) => max(a, -1), [separated([3, 5])]);
    checkVjp("max dims keepdim", (a) => max(a, [0, 1], { keepdim: true }), [separated([3, 2, 2])]);
    checkVjp("logsumexp", (a) => logsumexp(a, 1), [randF32([3, 4], -2, 2)]);
    checkVjp("softmax", (a) => softmax(a, -1), [randF32([3, 5], -2, 2)]);
    checkVjp("softmax dim 0", (a) => softmax(a, 0), [randF32([3, 4], -2, 2)]);
    checkVjp("matmul broadcast batch", (a, b) => matmul(a, b), [randF32([2, 1, 3, 4]), randF32([3, 4, 2])]);
    checkVjp("matmul with a transposed operand", (a, b) => matmul(a, transpose(b, -1, -2)), [randF32([2, 3, 4]), randF32([2, 5, 4])]);
    checkVjp("matmul vector", (a, b) => matmul(a, b), [randF32([4]), randF32([2, 4, 3])]);
  });

  it("max splits the gradient evenly among tied maxima; comparisons give no gradient", () => {
    const x = tensor([[1, 3, 3], [2, 0, 2]]);
    const [, back] = vjp((a: Tensor) => max(a, 1), x);
    expect(Array.from(realizeCpu(back(tensor([1, 2])))[0])).toEqual([0, 0.5, 0.5, 1, 0, 1]);
    const [, back2] = vjp((a: Tensor) => where(gt(a, 2), a, 0), x);
    expect(Array.from(realizeCpu(back2(tensor([[1, 1, 1], [1, 1, 1]])))[0])).toEqual([0, 1, 1, 0, 0, 0]);
  });
});

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

describe("attention written by hand from the tensor ops", () => {
  it.skipIf(noGpu)("matmul(softmax(q·kᵀ·scale + bias, causal via where), v) equals flexAttention with a causal BlockMask: forward and gradients", async () => {
    const [B, H, S, D] = [1, 2, 50, 16];
    const q = randF32([B, H, S, D]), k = randF32([B, H, S, D]), v = randF32([B, H, S, D]), bias = randF32([S, S], -0.5, 0.5);
    const scale = 1 / Math.sqrt(D);
    const mask = blockMaskOf(causal, 1, 1, S, S);
    const iq = reshape(arange(S), [S, 1]), ik = reshape(arange(S), [1, S]);
    const manual = (q: Tensor, k: Tensor, v: Tensor, bias: Tensor) => {
      const s = add(mul(matmul(q, transpose(k, -2, -1)), scale), bias);
      return matmul(softmax(where(ge(iq, ik), s, -Infinity), -1), v);
    };
    const flex = (q: Tensor, k: Tensor, v: Tensor, bias: Tensor) =>
      flexAttention(q, k, v, { blockMask: mask, scoreMod: (s, _b, _h, qi, kv) => s.add(bias.at(qi, kv)) });
    const dOut = randF32([B, H, S, D]);
    const [ym, backM] = vjp(manual, q, k, v, bias);
    const [yf, backF] = vjp(flex, q, k, v, bias);
    const roots = [ym, ...backM(dOut), yf, ...backF(dOut)];
    const got = await gpu(...roots);
    const names = ["out", "dq", "dk", "dv", "dbias"];
    for (let i = 0; i < 5; i++) {
      const err = relL2(got[i], got[i + 5]);
      expect({ what: names[i], err, ok: err <= 1e-4 }).toEqual({ what: names[i], err, ok: true });
    }
    // and the hand-written graph on the GPU equals its CPU oracle
    const want = cpu(...roots.slice(0, 5));
    for (let i = 0; i < 5; i++) expect({ what: names[i], ok: relL2(got[i], want[i]) <= 1e-4 }).toEqual({ what: names[i], ok: true });
  });
});

describe("tensor op plans", () => {
  const code = (t: Tensor) => planNode(t, DEFAULT_CAPABILITIES).launches.map((l) => l.code).join("\n");
  it("one kernel per (expression, dtypes): shapes, ranks and broadcasts are uniforms", () => {
    expect(code(add(randF32([3, 4]), randF32([4])))).toBe(code(add(randF32([30, 1, 40]), randF32([7, 40]))));
    expect(code(transpose(randF32([2, 3, 4]), 0, 2))).toBe(code(reshape(randF32([6]), [2, 3])));
    expect(code(sum(randF32([5, 7]), 1))).toBe(code(sum(randF32([50, 3, 9]), [0, 2])));
    expect(code(matmul(randF32([3, 4]), randF32([4, 5])))).toBe(code(matmul(randF32([2, 7, 3, 9]), randF32([9, 2]))));
    expect(code(add(randF32([3]), randF32([3])))).not.toBe(code(sub(randF32([3]), randF32([3]))));
  });

  it("elementwise chains fuse into one launch over the chain's leaves; reductions and matmuls stay inputs", () => {
    const x = randF32([4, 1, 6]), y = randF32([6]);
    const p = planNode(exp(sub(mul(x, 2), y)), DEFAULT_CAPABILITIES);
    expect(p.launches.length).toBe(1);
    expect(p.launches[0].label).toMatch(/^pointwise\.fused\.exp/);
    const inputs = p.launches[0].bindings.flatMap((b) => (b.kind === "input" ? [b.tensor] : []));
    expect(inputs.every((t) => t.op === "const")).toBe(true);
    const m = max(x, -1, { keepdim: true });
    const q = planNode(exp(sub(x, m)), DEFAULT_CAPABILITIES).launches[0].bindings.flatMap((b) => (b.kind === "input" ? [b.tensor] : []));
    expect(q).toEqual([x, m]);
  });

  it("contiguous dims merge (rank 1 for same-shape operands); a transposed matmul operand is read in place", () => {
    const p = planNode(add(randF32([2, 3, 4, 5, 6, 7, 8]), randF32([2, 3, 4, 5, 6, 7, 8])), DEFAULT_CAPABILITIES);
    const u = p.launches[0].bindings.find((b) => b.kind === "uniform")!;
    expect(u.kind === "uniform" && u.data[2]).toBe(1);
    const k = randF32([2, 5, 16]);
    const mm = planNode(matmul(randF32([2, 7, 16]), transpose(k, -2, -1)), DEFAULT_CAPABILITIES);
    expect(mm.launches[0].bindings[1]).toEqual({ kind: "input", tensor: k });
  });
});

describe("tensor ops: typed errors at construction", () => {
  it("shapes, dtypes, dims and arguments are checked when the node is built", () => {
    expect(() => add(randF32([2, 3]), randF32([4]))).toThrow(ShapeError);
    expect(() => add(randF32([2]), tensor(new Int32Array([1, 2])))).toThrow(DTypeError);
    expect(() => add(randI32([2]), 0.5)).toThrow(DTypeError);
    expect(() => div(randI32([2]), randI32([2]))).toThrow(DTypeError);
    expect(() => add(boolOf([2]), boolOf([2]))).toThrow(DTypeError);
    expect(() => exp(randI32([2]))).toThrow(DTypeError);
    expect(() => and(randF32([2]), randF32([2]))).toThrow(DTypeError);
    expect(() => not(randF32([2]))).toThrow(DTypeError);
    expect(() => where(randF32([2]), randF32([2]), 0)).toThrow(DTypeError);
    expect(() => add(randF32([2]), "x" as unknown as number)).toThrow(InvalidArgument);
    expect(() => matmul(randF32([2, 3]), randF32([4, 2]))).toThrow(ShapeError);
    expect(() => matmul(randF32([2, 2, 3]), randF32([3, 3, 2]))).toThrow(ShapeError);
    expect(() => matmul(randF32([]), randF32([3]))).toThrow(ShapeError);
    expect(() => matmul(randI32([2, 2]), randI32([2, 2]))).toThrow(DTypeError);
    expect(() => transpose(randF32([2, 3]), 0, 2)).toThrow(InvalidArgument);
    expect(() => sum(randF32([2, 3]), 2)).toThrow(InvalidArgument);
    expect(() => sum(randF32([2, 3]), [1, -1])).toThrow(InvalidArgument);
    expect(() => max(randF32([2, 0]), 1)).toThrow(ShapeError);
    expect(() => logsumexp(randI32([2]), 0)).toThrow(DTypeError);
    expect(() => reshape(randF32([2, 3]), [-1, -1])).toThrow(ShapeError);
    expect(() => reshape(randF32([2, 3]), [4, -1])).toThrow(ShapeError);
    expect(() => expand(randF32([2, 3]), [3])).toThrow(ShapeError);
    expect(() => expand(randF32([2, 3]), [2, 4])).toThrow(ShapeError);
    expect(() => repeat(randF32([2, 3]), 2)).toThrow(ShapeError);
    expect(() => repeatInterleave(randF32([2, 3]), -1, 0)).toThrow(InvalidArgument);
    expect(() => gather(randF32([2, 3]), 0, randF32([2, 3]))).toThrow(DTypeError);
    expect(() => gather(randF32([2, 3]), 0, randI32([2, 4]))).toThrow(ShapeError);
    expect(() => gather(randF32([2, 3]), 0, randI32([2]))).toThrow(ShapeError);
    expect(() => cast(randF32([2]), "bool")).toThrow(DTypeError);
  });

  it("where dispatches: Tensor arguments build the tensor op, symbolic scalars the IR node", () => {
    expect(where(boolOf([2]), randF32([2]), 0)).toBeInstanceOf(Tensor);
    expect(where(Expr.arg("q").ge(Expr.arg("kv")), 1, 0)).toBeInstanceOf(Expr);
    expect(() => where(Expr.arg("q").ge(0) as unknown as Tensor, randF32([2]), 0)).toThrow(InvalidArgument);
  });
});

releaseGpuAfterAll();
