/**
 * The materialized-mask baseline (`denseAttention`) realized on the GPU against `denseReference` (float64):
 * without and with a dense mask from `createMask` (broadcast and per batch/head), GQA, Sq ≠ Skv, odd lengths,
 * fully masked rows (out = 0); the CPU executor's denseAttention and fmaProbe entries; fmaProbe on the GPU.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import type { Tensor } from "../../lib/tensor/tensor.ts";
import { denseAttention, type DenseAttentionArg } from "../../lib/attention/baselines.ts";
import { createMask } from "../../lib/blockmask/create_block_mask.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { denseReference } from "../../lib/runtime/cpu/dense_reference.ts";
import { fmaProbe } from "../../lib/lower/probes.ts";
import { type AttnDims, cpu, gpu, randF32 } from "./fixtures.ts";

const noGpu = await gpuSkipReason();

interface Case extends AttnDims {
  name: string;
  mask?: { mod: MaskMod; B: number | null; H: number | null };
  fullyMaskedRows?: number;
}

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const CASES: Case[] = [
  { name: "no mask", B: 1, Hq: 2, Hkv: 2, Sq: 64, Skv: 64, D: 16 },
  { name: "causal mask broadcast over B and H", B: 2, Hq: 2, Hkv: 2, Sq: 65, Skv: 65, D: 16, mask: { mod: causal, B: null, H: null } },
  {
    name: "per-batch, per-head mask (sliding window shifted by b and h)", B: 2, Hq: 3, Hkv: 3, Sq: 40, Skv: 40, D: 16,
    mask: { mod: (b, h, q, kv) => q.sub(kv).add(b).add(h).abs().le(6), B: 2, H: 3 },
  },
  { name: "GQA (4 query heads on 2 kv heads)", B: 1, Hq: 4, Hkv: 2, Sq: 48, Skv: 48, D: 16, mask: { mod: causal, B: null, H: null } },
  { name: "Sq != Skv, odd lengths", B: 1, Hq: 2, Hkv: 1, Sq: 100, Skv: 37, D: 16, mask: { mod: (_b, _h, q, kv) => q.add(kv).mod(3).ne(0), B: 1, H: 1 } },
  {
    name: "fully masked rows give 0", B: 1, Hq: 2, Hkv: 2, Sq: 100, Skv: 100, D: 16, fullyMaskedRows: 10,
    mask: { mod: (_b, _h, q, kv) => q.ge(10).and(kv.le(q)), B: null, H: null },
  },
];

function build(c: Case): { node: Tensor; q: Tensor; k: Tensor; v: Tensor; mask?: Tensor } {
  const q = randF32([c.B, c.Hq, c.Sq, c.D]), k = randF32([c.B, c.Hkv, c.Skv, c.D]), v = randF32([c.B, c.Hkv, c.Skv, c.D]);
  const mask = c.mask ? createMask(c.mask.mod, c.mask.B, c.mask.H, c.Sq, c.Skv) : undefined;
  return { node: denseAttention(q, k, v, { mask, enableGqa: c.Hq !== c.Hkv }), q, k, v, mask };
}

function reference(x: ReturnType<typeof build>): Float32Array {
  return denseReference(x.node.arg as DenseAttentionArg, x.q.data!, x.k.data!, x.v.data!, x.mask?.data);
}

describe("denseAttention on the GPU vs denseReference", () => {
  for (const c of CASES) {
    it.skipIf(noGpu)(`${c.name}: B=${c.B} Hq=${c.Hq} Hkv=${c.Hkv} Sq=${c.Sq} Skv=${c.Skv} D=${c.D}`, async () => {
      const x = build(c);
      const [got] = await gpu(x.node);
      const want = reference(x);
      expect(want.some((w) => Math.abs(w) > 1e-3)).toBe(true);
      expect(relL2(got, want)).toBeLessThanOrEqual(1e-4);
      if (c.fullyMaskedRows) {
        const D = c.D;
        for (let bh = 0; bh < c.B * c.Hq; bh++) {
          const rows = got.slice(bh * c.Sq * D, (bh * c.Sq + c.fullyMaskedRows) * D);
          expect(rows.every((r) => r === 0)).toBe(true);
        }
      }
    });
  }
});

describe("CPU executor entries", () => {
  it("denseAttention realizes through CPU_OPS as denseReference", () => {
    const x = build(CASES[3]);
    const [got] = cpu(x.node);
    expect(relL2(got, reference(x))).toBe(0);
  });

  it("fmaProbe realizes on the CPU as zeros of the probe's size", () => {
    const p = fmaProbe(3, 4);
    const [got] = cpu(p);
    expect(got.length).toBe(3 * 256);
    expect(got.every((x) => x === 0)).toBe(true);
  });
});

describe("fmaProbe on the GPU", () => {
  it.skipIf(noGpu)("writes every element (poisoned output), finite values", async () => {
    const p = fmaProbe(5, 8);
    const [got] = await gpu(p);
    expect(got.length).toBe(5 * 256);
    expect(got.every((x) => Number.isFinite(x) && x !== 0)).toBe(true);
  });
});

releaseGpuAfterAll();
