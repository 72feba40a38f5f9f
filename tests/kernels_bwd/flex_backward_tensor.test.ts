/**
 * The tensor-family backward (kernels/flex_backward_tensor.ts) through the public API: f16 q, k, v, dOut,
 * `kernelOptions.family: "tensor"`, gradients realized with poisoned outputs and compared with the float64
 * oracle on the same f16 values. On an adapter without subgroup matrices (CI's lavapipe) the kernels run with
 * emulated matrix operations; where the adapter has them, the native intrinsics run the cases the family
 * proves there (D multiples of 16, whole tiles) and the rest emulated.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { flexAttention, type ScoreMod, type Tensor, tensor, vjp } from "../../mod.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import type { FlexBwd } from "../../lib/passes/flex_grad.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { bwdFamilyOf } from "../../lib/lower/plan_flex_grad_tensor.ts";
import { dqFromDsTensorSmemBytes, dqFromDsTensorWgsl, dsTRowStride } from "../../kernels/flex_bwd_dq_from_ds_tensor.ts";
import { flexBackwardTensorWgsl, type FlexBwdTensorConfig, flexBwdTensorSmemBytes } from "../../kernels/flex_backward_tensor.ts";
import { type BwdOverride, type BwdProblem, causal, checkTensorBwd, moreCasesSkip, softcap, tensorBwdSkip as skip } from "./tensor_bwd_fixture.ts";

interface TCase extends BwdProblem {
  /** The stored-dS' path (bwdTensorOverride.dqFromDs): this many head chunks (a scratch bound that forces them). */
  fromDs?: { layout: "dense" | "compact"; chunks: number; capBytes: number; gemm?: { BA: number; subgroups: number; BB: number; prefetch2?: boolean } };
  /** The fused dQ kernel even where the stored-dS' path applies (keeps it tested on whole tiles). */
  fusedDq?: boolean;
  /** The pipelined template's two register stages (oneStage off), dQ from the stored dS' (dense). */
  twoStage?: boolean;
}

/** The default plan (no override), the fused dQ kernel, or the stored-dS' path in `c.fromDs`'s chunks and layout. */
function check(c: TCase) {
  const override: BwdOverride = c.fromDs
    ? { ownerDirect: false, streamDirect: false, dqFromDs: true, dsLayout: c.fromDs.layout, dsChunkBytes: c.fromDs.capBytes, ...(c.fromDs.gemm ? { dqDs: c.fromDs.gemm } : {}) }
    : c.twoStage ? { ownerDirect: false, streamDirect: false, dqFromDs: true, dsLayout: "dense", oneStage: false }
    : c.fusedDq ? { ownerDirect: false, streamDirect: false, dqFromDs: false } : null;
  return checkTensorBwd(c, override, (kernels) => {
    if (c.fromDs) {
      // per chunk: the dK/dV kernel storing dS' then the dQ GEMM reading it, in the layout asked for
      expect(kernels.filter((l) => l.includes(`flex_bwd_dkdv_tensor`) && l.includes(` ds ${c.fromDs!.layout} heads `)).length).toBe(c.fromDs.chunks);
      expect(kernels.filter((l) => l.includes(`flex_bwd_dq_tensor`) && l.includes(`from dS'`) && l.includes(` ${c.fromDs!.layout} heads `)).length).toBe(c.fromDs.chunks);
      if (c.fromDs.gemm?.prefetch2) expect(kernels.filter((l) => l.includes(`from dS' BA${c.fromDs!.gemm!.BA} SG${c.fromDs!.gemm!.subgroups} BB${c.fromDs!.gemm!.BB} prefetch2`)).length).toBe(c.fromDs.chunks);
    } else {
      expect(kernels.filter((l) => /flex_bwd_(dq|dkdv)_tensor/.test(l)).length).toBe(2);
      if (c.twoStage) expect(kernels.filter((l) => l.includes("flex_bwd_dkdv_tensor") && l.includes(" two-stage ds dense")).length).toBe(1);
    }
  });
}

// Each emulated kernel compiles for long on lavapipe (LLVM), so the CI slice is two cases (4 kernels) that together
// cover noop, causal, a score mod with a derivative, GQA, ragged lengths, D 64 and a non-16 D with a non-16 Dv (the
// staged path), an lse cotangent. The device probe (bench/tensor_bwd_probe.ts) runs the intrinsics on the gallery
// and every operand-source variant.
const CASES: TCase[] = [
  { name: "noop D64 (fused dQ kernel)", Sq: 64, D: 64, fusedDq: true },
  { name: "softcap + causal, GQA 4:2, ragged 100×77, D40 (padded to 48), Dv 24, lse cotangent", Hq: 4, Hkv: 2, Sq: 100, Skv: 77, D: 40, Dv: 24, mask: causal, score: softcap, block: 32, withLse: true },
];

// dQ from the stored dS' (kernels/flex_bwd_dq_from_ds_tensor.ts): whole tiles, D % 16 = 0; a scratch bound of one
// kv head's dS' forces several head chunks (the chunk's first head as a uniform in both kernels)
const S128 = 128 * dsTRowStride(128) * 2; // one q head's dense f16 scratch at S 128, bytes (compact causal, block 64: 3/4 of it)
const FROM_DS: TCase[] = [
  { name: "stored dS': noop S128 D64, dense, 2 head chunks", Sq: 128, D: 64, fromDs: { layout: "dense", chunks: 2, capBytes: S128 } },
  {
    name: "stored dS': causal S128 block 64 (partial diagonal), GQA 4:2, B2, compact, 2 head chunks", B: 2, Hq: 4, Hkv: 2, Sq: 128, D: 64,
    mask: causal, fromDs: { layout: "compact", chunks: 2, capBytes: 3 * S128 },
  },
];

// Knobs that are off by default (lib/lower/flex_bwd_tensor_config.ts: every shape one register stage, the GEMM one
// register set): natively where the adapter has subgroup matrices, emulated only with FLEX_TEST_BWD_KNOBS_ALL=1. No
// emulated case of either stays in CI: the cheapest already costs 32 s (two stages) and 59 s (prefetch2) cold on
// lavapipe, over the ~20 s a knob's CI case may take; the WGSL tests below check both templates' structure everywhere.
const KNOB_CASES: TCase[] = [
  // two register stages (tile t + 2's loads across the back edge; their walk words in one aligned array), storing dS'
  // for the dQ GEMM: GQA, partial and full blocks, the lookups at t + 2
  { name: "two stages + stored dS': softcap + causal, GQA 2:1, 96×64, D16, block 32", Hq: 2, Hkv: 1, Sq: 96, Skv: 64, D: 16, mask: causal, score: softcap, block: 32, twoStage: true, forwardTile: { blockM: 16, blockN: 16 } },
  {
    // the GEMM's two register sets: one tile a block (a lookup every tile), odd tile counts (q block 2: 3 kv blocks)
    name: "stored dS', GEMM with two register sets: causal S96 block 32, GQA 2:1, D16, compact, BA 32 SG 2 BB 32", Hq: 2, Hkv: 1, Sq: 96, D: 16,
    mask: causal, block: 32, forwardTile: { blockM: 16, blockN: 16 },
    fromDs: { layout: "compact", chunks: 1, capBytes: 1 << 30, gemm: { BA: 32, subgroups: 2, BB: 32, prefetch2: true } },
  },
];
const knobSkip = await moreCasesSkip("FLEX_TEST_BWD_KNOBS_ALL", "two-stage and prefetch2 (knobs off by default)");

// the stored-dS' path is the default natively since session 8 (its GEMM's misaligned walk words fixed): these cases
// run emulated in CI and on the intrinsics where the adapter has subgroup matrices

describe("tensor-family backward vs the float64 oracle", () => {
  const run = it.skipIf(skip);
  for (const c of CASES) run(c.name, async () => void await check(c));
  for (const c of FROM_DS) it.skipIf(skip)(c.name, async () => void await check(c));
  for (const c of KNOB_CASES) it.skipIf(knobSkip)(c.name, async () => void await check(c));
  run("a score mod with captured f32 tensors: the tensor backward unless the slopes' gradient is asked (then portable: it sums capture gradients)", async () => {
    const slopes = tensor(Float32Array.from([0.5, 0.25]), [2]);
    const q = randn([1, 2, 32, 32], { dtype: "f16" });
    const opts = (s: Tensor) => ({ scoreMod: ((sc, _b, h, qi, kv) => sc.add(s.at(h).mul(kv.sub(qi)))) as ScoreMod, kernelOptions: { family: "tensor" as const } });
    const find = (t: Tensor): Tensor | undefined => t.op === "flexGrad" ? t : t.inputs.map(find).find((x) => x);
    const caps = (await getExecutor()).caps;
    const familyOfGrad = (g: Tensor) => bwdFamilyOf((find(g)!.arg as { bwd: FlexBwd }).bwd, caps);
    const [y, back] = vjp((q) => flexAttention(q, q, q, opts(slopes)), q);
    const [dq] = back(randn([1, 2, 32, 32], { dtype: "f16" }));
    expect(((y as Tensor).arg as FlexCall).scoreMod.captures.length).toBe(1);
    expect(familyOfGrad(dq)).not.toBe("portable");
    const [, back2] = vjp((q, s) => flexAttention(q, q, q, opts(s)), q, slopes);
    const [dq2, dslopes] = back2(randn([1, 2, 32, 32], { dtype: "f16" }));
    expect(familyOfGrad(dq2)).toBe("portable");
    expect(familyOfGrad(dslopes)).toBe("portable");
  });
});

// the pipelined template's WGSL (no GPU): what the device runs natively and CI cannot execute
describe("tensor-family backward, pipelined template (WGSL)", () => {
  const hooks = { preamble: "", scoreMod: "", maskMod: "", scoreModGrad: "", identityScore: true, capReads: 0, capCode: "" };
  const base: FlexBwdTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BA: 64, subgroups: 4, BB: 32, emulate: false, subgroupSize: 32,
    ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, oneStage: true,
  };
  it("walks the block table through workgroupUniformLoad, two barriers a tile, and fits the H200's 48 KiB", () => {
    for (const [mode, oneStage] of [["dq", true], ["dkdv", true], ["dq", false], ["dkdv", false]] as const) {
      const code = flexBackwardTensorWgsl(mode, { ...base, oneStage }, hooks);
      // two stages: the five walk words as one 16-byte-multiple array (lone u32 words shift the arrays natively)
      expect(code).toContain(oneStage ? "let n_partial = workgroupUniformLoad(&walk_np);" : "let n_partial = workgroupUniformLoad(&walk_w[0]);");
      if (!oneStage) expect(code).toContain("var<workgroup> walk_w: array<u32, 8>;");
      const loop = code.slice(code.indexOf("for (var t = 0u; t < n_tiles; t++) {"), code.lastIndexOf("sb_cur = sb_nxt;"));
      expect(loop.split("workgroupBarrier()").length - 1).toBe(2);
      // every matrix the products read comes from workgroup memory (the slots, P / dS')
      expect(/subgroupMatrixLoad<(LM|RM), \w+>\(&(qg|kg|vg|dog)/.test(loop)).toBe(false);
      expect(loop).toContain("subgroupMatrixLoad<RM, col_major>(&hs, slot_off + ");
      expect(flexBwdTensorSmemBytes(base, mode)).toBeLessThanOrEqual(49152);
    }
    // one stage: no staging register is carried across the loop's back edge (the H200 miscompiled that)
    const one = flexBackwardTensorWgsl("dq", base, hooks);
    expect(one).not.toContain("var sb_pf");
    expect(one).toContain("var sb_nxt = sb_cur;");
  });
  it("BA 128 with 16-column tiles stages the owner rows in two chunks (each subgroup loads from its own) and fits 48 KiB", () => {
    const c = { ...base, BA: 128, subgroups: 8, BB: 16 };
    for (const mode of ["dq", "dkdv"] as const) {
      const code = flexBackwardTensorWgsl(mode, c, hooks);
      expect(code).toContain("if (sg * 16u >= 64u && sg * 16u < 128u) {");
      expect(flexBwdTensorSmemBytes(c, mode)).toBeLessThanOrEqual(49152);
    }
    expect(() => flexBackwardTensorWgsl("dq", { ...c, ownerChunk: 48 }, hooks)).toThrow();
  });
  it("matrix staging binds the streamed operands as f16 and moves whole tiles as matrices; emulated or D % 16 ≠ 0 is refused", () => {
    const code = flexBackwardTensorWgsl("dq", { ...base, matrixStage: true }, hooks);
    expect(code).toContain("var<storage, read> kg: array<f16>;");
    expect(code).toContain("var<storage, read> qg: array<vec4<f16>>;");
    expect(code).toContain("subgroupMatrixStore<row_major>(&hs, ");
    expect(() => flexBackwardTensorWgsl("dq", { ...base, matrixStage: true, emulate: true }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dq", { ...base, matrixStage: true, D: 40 }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dq", { ...base, ownerDirect: true }, hooks)).toThrow();
  });
  it("stored dS': the dK/dV kernel stores it in its quad pass (no extra barrier); the dQ GEMM walks uniformly, one barrier a tile, fits 48 KiB", () => {
    for (const storeDs of ["dense", "compact"] as const) {
      const code = flexBackwardTensorWgsl("dkdv", { ...base, BA: 128, subgroups: 8, BB: 16, storeDs }, hooks);
      expect(code).toContain("@group(0) @binding(9) var<storage, read_write> dsg: array<vec4<f16>>;");
      const loop = code.slice(code.indexOf("for (var t = 0u; t < n_tiles; t++) {"), code.lastIndexOf("sb_cur = sb_nxt;"));
      expect(loop.split("workgroupBarrier()").length - 1).toBe(2);
      expect(loop).toContain(`dsg[(ds_at + r * ${storeDs === "compact" ? "P.QB" : "ds_stride"} + c0) / 4u] = dh;`);
      const dq = dqFromDsTensorWgsl({ D: 64, BA: 128, subgroups: 4, BB: 32, emulate: false }, { compact: storeDs === "compact" });
      const body = dq.slice(dq.indexOf("for (var t = 0u; t < n_tiles; t++) {"), dq.indexOf("sb_cur = sb_nxt;"));
      expect(body.split("workgroupBarrier()").length - 1).toBe(1);
      expect(dq).toContain("let n_partial = workgroupUniformLoad(&walk_s[0]);");
      // every workgroup variable a multiple of 16 bytes: the matrix operands start 16-byte aligned in any layout
      // the driver picks (three lone u32 words shifted the K loads by 12 bytes on the H200)
      const sizes = [...dq.matchAll(/var<workgroup> (\w+): (?:array<(\w+), (\d+)>|(\w+));/g)]
        .map(([, name, el, n, scalar]) => [name, ({ f16: 2, f32: 4, u32: 4 } as Record<string, number>)[el ?? scalar] * Number(n ?? 1)] as const);
      expect(sizes.length).toBeGreaterThanOrEqual(3);
      for (const [name, bytes] of sizes) expect(`${name} ${bytes % 16}`).toBe(`${name} 0`);
      expect(body).toContain("subgroupMatrixLoad<LM, col_major>(&dss, ");
      expect(/subgroupMatrixLoad<\w+, \w+>\(&(kg|dsg)/.test(dq)).toBe(false);
    }
    expect(dqFromDsTensorSmemBytes({ D: 64, BA: 128, subgroups: 4, BB: 32, emulate: false })).toBeLessThanOrEqual(49152);
    // two register stages store dS' from the same quad pass
    expect(flexBackwardTensorWgsl("dkdv", { ...base, oneStage: false, storeDs: "dense" }, hooks)).toContain("dsg[(ds_at + r * ds_stride + c0) / 4u] = dh;");
  });
  it("the dQ GEMM's prefetch2 (off by default; its oracle case runs natively or with FLEX_TEST_BWD_KNOBS_ALL=1): a second register set, two tiles a trip", () => {
    for (const emulate of [false, true]) {
      for (const compact of [false, true]) {
        const c = { D: 16, BA: 32, subgroups: 2, BB: 32, emulate, prefetch2: true };
        const two = dqFromDsTensorWgsl(c, { compact }), one = dqFromDsTensorWgsl({ ...c, prefetch2: undefined }, { compact });
        for (const s of ["var sb_b = 0u;", "var rkb0 = vec4<f16>(0.0h);", "for (var t = 0u; t < n_tiles; t += 2u) {"]) {
          expect(two).toContain(s);
          expect(one).not.toContain(s);
        }
      }
    }
    expect(dqFromDsTensorSmemBytes({ D: 64, BA: 128, subgroups: 8, BB: 16, emulate: false, prefetch2: true })).toBeLessThanOrEqual(49152);
  });
});

releaseGpuAfterAll();
