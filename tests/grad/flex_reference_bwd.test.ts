/**
 * The float64 reference backward against central finite differences of the float64 forward
 * (flexReference), on fresh random inputs: rel. L2 ≤ 1e-6 for dq, dk, dv and captured-tensor gradients.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { type FlexOptions, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import type { MaskMod, ScoreMod } from "../../lib/mods/trace.ts";
import { Expr, where } from "../../lib/ir/expr.ts";
import { type Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { UndefinedDerivative } from "../../lib/errors.ts";
import { blockMaskOf, f64Inputs, finiteDiff, flexLoss, freshSeed, uniform } from "./fixtures.ts";

interface Scenario {
  readonly name: string;
  readonly B?: number;
  readonly Hq?: number;
  readonly Hkv?: number;
  readonly Sq?: number;
  readonly Skv?: number;
  readonly D?: number;
  readonly scoreMod?: (seed: number, dims: { Hq: number; Sq: number; Skv: number }) => ScoreMod;
  readonly maskMod?: MaskMod;
  /** Also put a cotangent on lse. */
  readonly withLse?: boolean;
  /** Expected number of fully masked rows (checked so the scenario does what it says). */
  readonly fullyMaskedRows?: boolean;
}

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

const SCENARIOS: Scenario[] = [
  { name: "no mods, B=2" , B: 2 },
  { name: "causal mask (partial and full blocks)", Sq: 12, Skv: 12, maskMod: causal },
  {
    name: "alibi with learnable slopes", maskMod: causal,
    scoreMod: (seed, { Hq }) => {
      const slopes = uniform([Hq], seed + 1, -0.5, 0.5);
      return (s, _b, h, q, kv) => s.add(slopes.at(h).mul(q.sub(kv)));
    },
  },
  {
    name: "relative-position bias table read twice", Sq: 7, Skv: 9,
    scoreMod: (seed, { Sq, Skv }) => {
      const n = Sq + Skv - 1;
      const table = uniform([n], seed + 2);
      return (s, _b, _h, q, kv) =>
        s.add(table.at(q.sub(kv).add(Skv - 1))).add(table.at(kv.sub(q).add(Sq - 1)).mul(s));
    },
  },
  {
    name: "softcap (tanh) with a per-head bias [H, Sq]", withLse: true,
    scoreMod: (seed, { Hq, Sq }) => {
      const bias = uniform([Hq, Sq], seed + 3);
      return (s, _b, h, q) => s.div(0.8).tanh().mul(0.8).add(bias.at(h, q));
    },
  },
  {
    name: "fully masked rows, with an lse cotangent", withLse: true, fullyMaskedRows: true,
    maskMod: (_b, _h, q, kv) => q.ge(3).and(q.ge(kv)),
  },
  {
    name: "GQA (4 query heads over 2 kv heads) with learnable per-query-head slopes", Hq: 4, Hkv: 2, maskMod: causal,
    scoreMod: (seed, { Hq }) => {
      const slopes = uniform([Hq], seed + 4);
      return (s, _b, h, q, kv) => s.add(slopes.at(h).mul(q.sub(kv).abs()).neg());
    },
  },
  { name: "Sq != Skv (6 × 11), sliding window", Sq: 6, Skv: 11, maskMod: (_b, _h, q, kv) => q.add(5).sub(kv).abs().le(3) },
  {
    name: "score mod masking with −∞ and clamp", withLse: true,
    scoreMod: () => (s, _b, _h, q, kv) =>
      where(q.sub(kv).abs().gt(4), Expr.const(-Infinity, "f32"), s.clamp(-0.3, 0.35).add(s.mul(0.5))),
  },
  {
    name: "an i32 capture (document ids) beside an f32 one", B: 2,
    scoreMod: (seed) => {
      const docs = tensor(new Int32Array([0, 0, 0, 1, 1, 1, 2, 2]));
      const w = uniform([3], seed + 5);
      return (s, _b, _h, q, kv) => where(docs.at(q).eq(docs.at(kv)), s.add(w.at(docs.at(q))), s.sub(1));
    },
  },
];

function run(sc: Scenario, seed: number) {
  const B = sc.B ?? 1, Hq = sc.Hq ?? 2, Hkv = sc.Hkv ?? Hq, Sq = sc.Sq ?? 8, Skv = sc.Skv ?? Sq, D = sc.D ?? 16;
  const q = uniform([B, Hq, Sq, D], seed + 10), k = uniform([B, Hkv, Skv, D], seed + 11), v = uniform([B, Hkv, Skv, D], seed + 12);
  const options: FlexOptions = {
    scoreMod: sc.scoreMod?.(seed, { Hq, Sq, Skv }),
    blockMask: sc.maskMod ? blockMaskOf(sc.maskMod, 1, 1, Sq, Skv) : undefined,
    enableGqa: Hq !== Hkv,
    scale: 0.9 / Math.sqrt(D), // a non-default scale, so a missing factor shows
  };
  const call = makeFlexCall(q, k, v, options);
  const wOut = uniform([B, Hq, Sq, D], seed + 20).data!;
  const wLse = sc.withLse ? uniform([B, Hq, Sq], seed + 21).data! : undefined;
  const x = f64Inputs(call);
  const loss = () => flexLoss(call, x, wOut, wLse);

  const got = flexReferenceBwd(call, { ...x, dOut: wOut, dLse: wLse });
  const checks: [string, Float64Array, Float64Array][] = [
    ["dq", got.dq, finiteDiff(x.q, loss)],
    ["dk", got.dk, finiteDiff(x.k, loss)],
    ["dv", got.dv, finiteDiff(x.v, loss)],
  ];
  call.scoreMod.captures.forEach((c, slot) => {
    const g = got.dScoreCaptures[slot];
    if (c.dtype === "i32") { expect(g).toBeNull(); return; }
    checks.push([`dcap${slot}`, g!, finiteDiff(x.scoreCaptures[slot], loss)]);
  });
  for (const [name, a, fd] of checks) {
    const err = relL2(a, fd);
    if (!(err <= 1e-6)) throw new Error(`${sc.name}: ${name} rel. L2 ${err} vs finite differences (seed ${seed})`);
    // a gradient that is all zeros would pass trivially against an all-zero reference: demand signal
    expect(fd.some((g) => Math.abs(g) > 1e-3)).toBe(true);
  }
  if (sc.fullyMaskedRows) {
    // rows 0..2 attend nothing: their dq is exactly zero
    for (let i = 0; i < 3 * D; i++) expect(got.dq[i]).toBe(0);
  }
}

describe("flexReferenceBwd", () => {
  for (const sc of SCENARIOS) {
    it(`${sc.name}: matches finite differences`, () => run(sc, freshSeed()));
  }

  it("a NaN derivative at an attended entry fails with UndefinedDerivative", () => {
    const q = uniform([1, 1, 4, 16], freshSeed()), k = uniform([1, 1, 4, 16], freshSeed()), v = uniform([1, 1, 4, 16], freshSeed());
    // sqrt(0·s) is 0 (the forward is fine) but its derivative is ∞·0 = NaN
    const call = makeFlexCall(q, k, v, { scoreMod: (s) => s.mul(0).sqrt().add(s) });
    const x = f64Inputs(call);
    const dOut = uniform([1, 1, 4, 16], 7).data!;
    expect(() => flexReferenceBwd(call, { ...x, dOut })).toThrow(UndefinedDerivative);
  });

  it("the same NaN derivative on masked entries only is not an error", () => {
    const q = uniform([1, 1, 4, 16], freshSeed()), k = uniform([1, 1, 4, 16], freshSeed()), v = uniform([1, 1, 4, 16], freshSeed());
    // the bad branch is only taken where q < kv, which the causal mask removes
    const bad = (s: Expr, q: Expr, kv: Expr) => where(q.lt(kv), s.mul(0).sqrt(), s);
    const call = makeFlexCall(q, k, v, {
      scoreMod: (s, _b, _h, qi, kv) => bad(s, qi, kv).add(0),
      blockMask: blockMaskOf(causal, 1, 1, 4, 4, 2),
    });
    const x = f64Inputs(call);
    const r = flexReferenceBwd(call, { ...x, dOut: uniform([1, 1, 4, 16], 8).data! });
    expect(r.dq.every(Number.isFinite)).toBe(true);
    // without the mask those entries are attended, and the NaN is reported
    const open = makeFlexCall(q, k, v, { scoreMod: (s, _b, _h, qi, kv) => bad(s, qi, kv).add(0) });
    expect(() => flexReferenceBwd(open, { ...f64Inputs(open), dOut: uniform([1, 1, 4, 16], 8).data! })).toThrow(UndefinedDerivative);
  });

  it("gradients of mask-mod captures are not produced; score captures used only by the mask are", () => {
    const docs = tensor(new Int32Array([0, 0, 1, 1, 1, 2]));
    const mask: MaskMod = (_b, _h, q, kv) => docs.at(q).eq(docs.at(kv));
    const q = uniform([1, 2, 6, 16], freshSeed()), k = uniform([1, 2, 6, 16], freshSeed()), v = uniform([1, 2, 6, 16], freshSeed());
    const call = makeFlexCall(q, k, v, { blockMask: blockMaskOf(mask, 1, 1, 6, 6, 2) });
    const r = flexReferenceBwd(call, { ...f64Inputs(call), dOut: uniform([1, 2, 6, 16], 9).data! });
    expect(r.dScoreCaptures.length).toBe(0);
    expect((call.blockMask.tracedMask.captures[0] as Tensor).dtype).toBe("i32");
  });
});
