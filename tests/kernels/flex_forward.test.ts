/**
 * The fused forward kernel on the GPU against the float64 oracle (lib/runtime/cpu/flex_reference.ts):
 * fresh random inputs, outputs poisoned with NaN first, rel. L2 ≤ 1e-4 on out and lse.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { nativeHalf } from "../native_slice.ts";
import { blockMaskOf, type Case, makeCall, runAgainstOracle } from "./helpers.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { type Expr, where } from "../../lib/ir/expr.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { chooseSplits, flexForwardSource } from "../../lib/lower/plan_flex.ts";
import { InvalidArgument } from "../../lib/errors.ts";

const TOL = 1e-4;
const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

async function check(c: Case) {
  const r = await runAgainstOracle(makeCall(c));
  expect(r.errOut).toBeLessThanOrEqual(TOL);
  expect(r.errLse).toBeLessThanOrEqual(TOL);
  return r;
}

function randomInts(n: number, hi: number, sorted = false): Int32Array {
  const a = Int32Array.from({ length: n }, () => Math.floor(Math.random() * hi));
  return sorted ? a.sort() : a;
}

describe("flex forward vs oracle", () => {
  // the deno/native pass: every other case (tests/native_slice.ts)
  const run = nativeHalf(skipReason);

  run("noop mask (BlockMask.noop), D=64", async () => void await check({ Sq: 128, D: 64 }));

  run("causal, odd length 300", async () => void await check({ Sq: 300, options: { blockMask: blockMaskOf(causal, 1, 1, 300, 300) } }));

  run("sliding window 48 + causal, block 64", async () => {
    const mask: MaskMod = (_b, _h, q, kv) => q.ge(kv).and(q.sub(kv).le(48));
    return void await check({ Sq: 256, D: 32, options: { blockMask: blockMaskOf(mask, 1, 1, 256, 256, 64) } });
  });

  run("prefix LM (prefix 40)", async () => {
    const mask: MaskMod = (_b, _h, q, kv) => kv.lt(40).or(q.ge(kv));
    return void await check({ Sq: 200, options: { blockMask: blockMaskOf(mask, 1, 1, 200, 200, 64) } });
  });

  run("document mask with an i32 captured tensor", async () => {
    const docs = tensor(randomInts(256, 5, true), [256], { dtype: "i32" });
    const mask: MaskMod = (_b, _h, q, kv) => docs.at(q).eq(docs.at(kv));
    return void await check({ Sq: 256, options: { blockMask: blockMaskOf(mask, 1, 1, 256, 256, 64) } });
  });

  run("alibi-like score mod with an f32 captured tensor + causal", async () => {
    const slopes = tensor([0.5, 0.25, 0.125, 0.0625], [4]);
    const scoreMod = (s: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) => s.add(slopes.at(h).mul(kv.sub(q)));
    return void await check({ Hq: 4, Sq: 160, options: { scoreMod, blockMask: blockMaskOf(causal, 1, 1, 160, 160, 64) } });
  });

  run("softcap (tanh), cap 2", async () => {
    const scoreMod = (s: Expr) => s.div(2).tanh().mul(2);
    return void await check({ Sq: 128, D: 32, options: { scoreMod, scale: 1 } });
  });

  run("checkerboard (where / mod / abs) and Python mod of negatives", async () => {
    const scoreMod = (s: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) =>
      where(q.sub(kv).abs().mod(2).eq(0), s.add(0.5), s.sub(0.5));
    const mask: MaskMod = (_b, _h, q, kv) => q.sub(kv).mod(3).ne(1).and(kv.sub(q).floorDiv(4).le(2));
    return void await check({ Sq: 192, options: { scoreMod, blockMask: blockMaskOf(mask, 1, 1, 192, 192, 64) } });
  });

  run("2-level gather offsets.at(ids.at(q))", async () => {
    const S = 200;
    const ids = tensor(randomInts(S, 4), [S], { dtype: "i32" });
    const offsets = tensor([0, 17, 60, 150], [4], { dtype: "i32" });
    const mask: MaskMod = (_b, _h, q, kv) => kv.ge(offsets.at(ids.at(q))).and(kv.le(q.add(30)));
    return void await check({ Sq: S, options: { blockMask: blockMaskOf(mask, 1, 1, S, S, 64) } });
  });

  run("GQA Hq=4, Hkv=2, causal", async () => void await check({ Hq: 4, Hkv: 2, Sq: 128, options: { blockMask: blockMaskOf(causal, 1, 1, 128, 128, 64) } }));

  run("cross attention Sq=96 × Skv=300", async () => {
    const mask: MaskMod = (_b, _h, q, kv) => kv.lt(q.mul(3).add(20));
    return void await check({ Sq: 96, Skv: 300, options: { blockMask: blockMaskOf(mask, 1, 1, 96, 300) } });
  });

  run("batch 2, mask per batch and head (no broadcast)", async () => {
    const mask: MaskMod = (b, h, q, kv) => kv.le(q.add(b.mul(7)).add(h.mul(3)));
    return void await check({ B: 2, Hq: 2, Sq: 100, options: { blockMask: blockMaskOf(mask, 2, 2, 100, 100, 32) } });
  });

  for (const D of [32, 128]) {
    run(`head dim ${D}, causal`, async () => void await check({ Sq: 144, D, options: { blockMask: blockMaskOf(causal, 1, 1, 144, 144, 64) } }));
  }
  run("head dim 256", async () => void await check({ Hq: 1, Sq: 64, D: 256 }));
  run("Dv ≠ D (D 64, Dv 32) and D 20 / Dv 44", async () => {
    await check({ Sq: 96, D: 64, Dv: 32, options: { blockMask: blockMaskOf(causal, 1, 1, 96, 96, 32) } });
    await check({ Hq: 1, Sq: 70, D: 20, Dv: 44 });
  });

  // split-KV: each row's kv blocks shared among workgroups, then merged by the combine kernel
  for (const [splits, why] of [[2, "even shares"], [3, "uneven shares (7 blocks)"], [16, "more splits than kv blocks: capped at 7"]] as const) {
    run(`split-KV ${splits} (${why}), causal, decoding-like Sq=5 over Skv=430, GQA`, async () => {
      const mask: MaskMod = (_b, _h, q, kv) => kv.le(q.add(425));
      const bm = blockMaskOf(mask, 1, 1, 5, 430, 64);
      const r = await check({ Hq: 4, Hkv: 2, Sq: 5, Skv: 430, D: 32, options: { blockMask: bm, enableGqa: true, kernelOptions: { splitKv: splits } } });
      expect(r.out.some((x) => x !== 0)).toBe(true);
    });
  }

  run("split-KV with fully masked rows and a score mod: out 0, lse −∞ where nothing is attended", async () => {
    const mask: MaskMod = (_b, _h, q, kv) => q.lt(3).and(kv.ge(q.mul(60)));
    const S = 8, Skv = 500;
    const r = await check({
      Hq: 1, Sq: S, Skv, D: 16,
      options: { blockMask: blockMaskOf(mask, 1, 1, S, Skv, 32), scoreMod: (s) => s.tanh().mul(3), kernelOptions: { splitKv: 4 } },
    });
    for (let i = 3; i < S; i++) {
      expect(r.lse[i]).toBe(-Infinity);
      for (let d = 0; d < 16; d++) expect(r.out[i * 16 + d]).toBe(0);
    }
  });

  run("fully masked rows: mask true only for q < 50 → out 0, lse −∞", async () => {
    const mask: MaskMod = (_b, _h, q, _kv) => q.lt(50);
    const S = 128, Dv = 64;
    const r = await check({ Hq: 1, Sq: S, options: { blockMask: blockMaskOf(mask, 1, 1, S, S, 64) } });
    for (let i = 50; i < S; i++) {
      expect(r.lse[i]).toBe(-Infinity);
      for (let d = 0; d < Dv; d++) expect(r.out[i * Dv + d]).toBe(0);
    }
    for (let i = 0; i < 50; i++) expect(Number.isFinite(r.lse[i])).toBe(true);
  });

  run("a score mod returning −∞ masks (no NaN), also whole rows", async () => {
    const scoreMod = (s: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) => where(kv.gt(q).or(q.lt(10)), -Infinity, s);
    const r = await check({ Hq: 1, Sq: 100, options: { scoreMod } });
    for (let i = 0; i < 10; i++) expect(r.lse[i]).toBe(-Infinity);
  });

  for (const bs of [16, [32, 64], 100, 7] as (number | [number, number])[]) {
    run(`block size ${JSON.stringify(bs)}, causal, length 210`, async () =>
      void await check({ Hq: 1, Sq: 210, D: 32, options: { blockMask: blockMaskOf(causal, 1, 1, 210, 210, bs) } }));
  }

  run("kernelOptions blockM / blockN override (16 / 32)", async () => {
    const c: Case = { Hq: 1, Sq: 130, options: { blockMask: blockMaskOf(causal, 1, 1, 130, 130, 64), kernelOptions: { blockM: 16, blockN: 32 } } };
    const cfg = flexForwardSource(makeCall(c), gpu.caps).config;
    expect([cfg.BM, cfg.BN]).toEqual([16, 32]);
    await check(c);
  });
});


describe("split-KV choice (chooseSplits)", () => {
  it("follows kernelOptions.splitKv (capped at the kv block count) and rejects a bad value", () => {
    expect(chooseSplits(4, 10, 3)).toBe(3);
    expect(chooseSplits(4, 2, 8)).toBe(2);
    expect(chooseSplits(10_000, 100, 4)).toBe(4);
    expect(() => chooseSplits(4, 10, 0)).toThrow(InvalidArgument);
    expect(() => chooseSplits(4, 10, 1.5)).toThrow(InvalidArgument);
  });
  it("splits only grids too small to fill a GPU, keeping ≥ 2 kv blocks per split", () => {
    expect(chooseSplits(4096, 32)).toBe(1);     // B4 H16 S4096: plenty of workgroups
    expect(chooseSplits(32, 256)).toBe(8);      // decoding B1 H16, 32k keys: 256 / 32
    expect(chooseSplits(2, 256)).toBe(16);      // capped
    expect(chooseSplits(16, 3)).toBe(1);        // too few kv blocks to share
    expect(chooseSplits(16, 4)).toBe(2);
  });
});

releaseGpuAfterAll();
