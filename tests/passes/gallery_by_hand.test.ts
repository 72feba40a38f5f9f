/**
 * The gallery written by hand with tensor ops (index tensors computed on the host where a mod uses integer
 * arithmetic the tensor ops do not have) is fused — one flex kernel for the attention part — and equals its
 * unfused execution (FLEX_PASSES=none) and the gallery mod run by flexAttention on the float64 oracle
 * (rel. L2 ≤ 1e-4, f32); gradients through `grad` equal the flex backward's. Plus the property: random
 * elementwise score functions, fused == unfused.
 */
import fc from "fast-check";
import { describe, expect, it, relL2 } from "../harness.ts";
import {
  add, alibi, alibiSlopes, arange, cast, causalMask, checkerboard, createBlockMask, createMask, documentMask, exp, explain,
  flexAttention, ge, grad, jaggedMask, le, lt, matmul, type MaskMod, mul, natten, ne, noopMask, or, and, prefixLm, randn,
  reshape, type ScoreMod, slidingWindow, softcap, softmax, sub, sum, tanh, type Tensor, tensor, transpose, where, div, eq,
} from "../../mod.ts";
import { createCpuExecutor, realizeCpu } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { fuseAttention } from "../../lib/passes/fuse_attention.ts";

const cpu = createCpuExecutor();
const fusedValues = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
// deno-lint-ignore no-explicit-any
const g = globalThis as any;
function unfusedValues(...ts: Tensor[]) {
  const set = (v?: string) => g.Deno ? (v ? g.Deno.env.set("FLEX_PASSES", v) : g.Deno.env.delete("FLEX_PASSES")) : (v ? g.process.env.FLEX_PASSES = v : delete g.process.env.FLEX_PASSES);
  set("none");
  try { return realizeCpu(ts); } finally { set(undefined); }
}

const [B, H, S, D] = [1, 2, 64, 16];
const col = (t: Tensor) => reshape(t, [S, 1]), row = (t: Tensor) => reshape(t, [1, S]);
const qi = col(arange(S)), ki = row(arange(S));
const i32 = (a: ArrayLike<number>) => tensor(Int32Array.from(a), [a.length], { dtype: "i32" });
const docs = i32(Array.from({ length: S }, (_, i) => (i < 20 ? 0 : i < 45 ? 1 : 2)));
const offsets = [0, 10, 37, 64];
const jaggedIds = i32(Array.from({ length: S }, (_, i) => offsets.findIndex((o, j) => i >= o && i < offsets[j + 1])));
const nattenDense = createMask(natten(8, 8, 3, 3), 1, 1, S, S); // [1, 1, S, S] i32 0/1: an index tensor from the host
const parity = (t: ArrayLike<number>) => i32(Array.from(t, (x) => x % 2));
const slopes = alibiSlopes(H);
const NEG = -Infinity;

interface GalleryCase { name: string; mask?: MaskMod; score?: ScoreMod; hand: (s: Tensor) => Tensor }
const CASES: GalleryCase[] = [
  { name: "noop", hand: (s) => s },
  { name: "causal", mask: causalMask, hand: (s) => where(ge(qi, ki), s, NEG) },
  { name: "sliding window 12", mask: slidingWindow(12), hand: (s) => where(and(ge(qi, ki), le(sub(qi, ki), 12)), s, NEG) },
  { name: "prefix LM 10", mask: prefixLm(10), hand: (s) => where(or(lt(ki, 10), ge(qi, ki)), s, NEG) },
  { name: "document", mask: documentMask(docs), hand: (s) => add(s, where(eq(col(docs), row(docs)), 0, NEG)) },
  { name: "jagged", mask: jaggedMask(offsets), hand: (s) => where(eq(col(jaggedIds), row(jaggedIds)), s, NEG) },
  { name: "NATTEN 8×8 k3", mask: natten(8, 8, 3, 3), hand: (s) => where(ne(nattenDense, 0), s, NEG) },
  { name: "alibi + causal", mask: causalMask, score: alibi(slopes), hand: (s) => where(ge(qi, ki), add(s, mul(reshape(slopes, [H, 1, 1]), cast(sub(ki, qi), "f32"))), NEG) },
  { name: "softcap 5 + causal", mask: causalMask, score: softcap(5), hand: (s) => where(ge(qi, ki), mul(tanh(div(s, 5)), 5), NEG) },
  { name: "checkerboard", score: checkerboard, hand: (s) => where(ne(col(parity(arange(S).data!)), row(parity(arange(S).data!))), mul(s, 0.5), mul(s, 2)) },
];

function handAttention(q: Tensor, k: Tensor, v: Tensor, gfn: (s: Tensor) => Tensor) {
  return matmul(softmax(gfn(mul(matmul(q, transpose(k, -2, -1)), 1 / Math.sqrt(D))), -1), v);
}

describe("the gallery by hand is fused and equals the unfused graph and the oracle", () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]), w = randn([B, H, S, D]);
      const hand = handAttention(q, k, v, c.hand);
      const e = explain(hand);
      expect({ name: c.name, flex: e.kernels.filter((l) => l.includes("flex")).length }).toEqual({ name: c.name, flex: 1 });
      expect(fuseAttention([hand])[0].op).toBe("flexOut");
      const blockMask = c.mask ? await createBlockMask(c.mask === noopMask ? noopMask : c.mask, null, null, S, S, { blockSize: 16 }) : undefined;
      const oracle = flexAttention(q, k, v, { scoreMod: c.score, blockMask });
      const [fused, want] = await fusedValues(hand, oracle);
      const [unfused] = unfusedValues(hand);
      expect({ name: c.name, vsOracle: relL2(fused, want) <= 1e-4, vsUnfused: relL2(fused, unfused) <= 1e-4 }).toEqual({ name: c.name, vsOracle: true, vsUnfused: true });
      const gh = grad((q: Tensor, k: Tensor, v: Tensor) => sum(mul(handAttention(q, k, v, c.hand), w)))(q, k, v);
      const gf = grad((q: Tensor, k: Tensor, v: Tensor) => sum(mul(flexAttention(q, k, v, { scoreMod: c.score, blockMask }), w)))(q, k, v);
      const [a, b] = [await fusedValues(...gh), await fusedValues(...gf)];
      a.forEach((x, i) => expect({ name: c.name, i, ok: relL2(x, b[i]) <= 1e-4 }).toEqual({ name: c.name, i, ok: true }));
    });
  }
});

describe("property: random elementwise score functions, fused == unfused", () => {
  // a random tree over the scaled score s, the positions (as index tensors) and a per-head bias, kept finite
  type Node = (s: Tensor) => Tensor;
  const bias = randn([H, 1, 1], { seed: 9 });
  const leaf: fc.Arbitrary<Node> = fc.constantFrom<Node>(
    (s) => s, () => cast(qi, "f32"), () => cast(ki, "f32"), () => bias, () => tensor([0.5], []),
  );
  const tree: fc.Arbitrary<Node> = fc.letrec<{ t: Node }>((rec) => ({
    t: fc.oneof({ depthSize: "small", withCrossShrink: true },
      leaf,
      fc.tuple(rec("t"), rec("t")).map(([a, b]): Node => (s) => add(a(s), b(s))),
      fc.tuple(rec("t"), rec("t")).map(([a, b]): Node => (s) => mul(tanh(a(s)), b(s))),
      rec("t").map((a): Node => (s) => tanh(div(a(s), 8))),
      rec("t").map((a): Node => (s) => exp(tanh(a(s)))),
      fc.tuple(rec("t"), rec("t")).map(([a, b]): Node => (s) => where(ge(qi, ki), a(s), b(s))),
    ),
  })).t;
  it("fused == unfused on fresh inputs (rel. L2 ≤ 1e-4), and every generated program is fused", () => {
    let notFused = 0;
    fc.assert(fc.property(tree, fc.integer({ min: 1, max: 1e6 }), (score, seed) => {
      const q = randn([B, H, S, D], { seed }), k = randn([B, H, S, D], { seed: seed + 1 }), v = randn([B, H, S, D], { seed: seed + 2 });
      const hand = handAttention(q, k, v, (s) => add(s, score(s)));
      if (fuseAttention([hand])[0].op !== "flexOut") notFused++;
      const [fused] = realizeCpu([hand]);
      const [unfused] = unfusedValues(hand);
      return relL2(fused, unfused) <= 1e-4;
    }), { numRuns: 40, seed: 20261201 });
    expect(notFused).toBe(0);
  });
});
