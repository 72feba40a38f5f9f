/**
 * The tensor-family backward's `lateLoads` knob (kernels/flex_backward_tensor_pipe.ts, one stage): the next streamed
 * tile's global loads go out after barrier A, beside the scalar pass, instead of at the tile's top, so no barrier lies
 * between them and their stores into the other slot (bench/RESULTS.md, session 15: on the H200 a barrier waits for the
 * warp's loads in flight). The default of the first dK/dV shape since session 16 (BA 128 / 8 / BB 16: 1–4 % faster
 * on the H200). That shape needs 41 KiB of workgroup memory (lavapipe allows 32), so the default plan's case runs
 * natively; the stored-dS' case of a pinned BA 64 shape with late loads runs everywhere (CI's emulated cover of the
 * template); the fused dQ kernel's case (its lateLoads is still off by default) natively, emulated with
 * FLEX_TEST_BWD_KNOBS_ALL=1; the WGSL tests everywhere. Gradients through
 * tests/kernels_bwd/tensor_bwd_fixture.ts (public API, poisoned outputs, float64 oracle on the same f16 values).
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import { hasNativeMatrices } from "../../lib/lower/flex_tensor_config.ts";
import type { BwdTensorShape } from "../../lib/lower/flex_bwd_tensor_config.ts";
import { flexBackwardTensorWgsl, type FlexBwdTensorConfig } from "../../kernels/flex_backward_tensor.ts";
import { type BwdProblem, causal, checkTensorBwd, IDENTITY_HOOKS, moreCasesSkip, softcap, tensorBwdSkip, tileLoopOf } from "./tensor_bwd_fixture.ts";

interface Case extends BwdProblem {
  shape: BwdTensorShape;
  fused?: boolean;
  /** Runs in CI too (emulated). */
  always?: boolean;
}

function check(c: Case) {
  const override = { ownerDirect: false, streamDirect: false, lateLoads: true, shape: c.shape, dqFromDs: !c.fused };
  return checkTensorBwd(c, override, (all) => {
    // the late-loads kernels run: the dK/dV one (and the fused dQ one), of the pinned shape
    const kernels = all.filter((l) => l.includes("flex_bwd_d"));
    const shape = `BA${c.shape.BA} SG${c.shape.subgroups} BB${c.shape.BB} `;
    expect(kernels.filter((l) => l.includes(" late-loads") && l.includes(shape)).length).toBe(c.fused ? 2 : 1);
  });
}

const PIPE = { pipeline: true, quadPass: true, oneStage: true } as const;
const CASES: Case[] = [
  {
    name: "softcap + causal, GQA 2:1, ragged 50×37, D16, block 32, BA 32 SG 2 BB 16, the fused dQ kernel too",
    Hq: 2, Hkv: 1, Sq: 50, Skv: 37, D: 16, block: 32, mask: causal, score: softcap, forwardTile: { blockM: 16, blockN: 16 },
    fused: true, shape: { BA: 32, subgroups: 2, BB: 16, ...PIPE },
  },
  {
    name: "causal S128 block 64 (several tiles a block, blocks crossed), GQA 4:2, B2, D64, BA 64 SG 4 BB 16, stored dS'",
    B: 2, Hq: 4, Hkv: 2, Sq: 128, D: 64, mask: causal, shape: { BA: 64, subgroups: 4, BB: 16, ...PIPE }, always: true,
  },
];

const skip = await moreCasesSkip("FLEX_TEST_BWD_KNOBS_ALL", "lateLoads in the fused dQ kernel (off by default)");
const noGpu = tensorBwdSkip;
const native = !noGpu && hasNativeMatrices((await getExecutor()).caps);

describe("tensor-family backward, loads after barrier A (lateLoads) vs the float64 oracle", () => {
  it.skipIf(noGpu || (!native && "the default dK/dV shape (BA 128, 41 KiB of workgroup memory) runs natively only"))("the default plan: causal S256 block 128, GQA 2:1, D64 — the dK/dV kernel of BA 128 SG 8 BB 16 with late loads, stored dS'", async () => {
    const c: BwdProblem = { name: "default plan, causal S256", Hq: 2, Hkv: 1, Sq: 256, D: 64, block: 128, mask: causal };
    await checkTensorBwd(c, null, (all) => {
      const dkdv = all.filter((l) => l.startsWith("flex_bwd_dkdv_tensor"));
      expect(dkdv.length).toBeGreaterThan(0);
      expect(dkdv.every((l) => l.includes("BA128 SG8 BB16 ") && l.includes(" late-loads"))).toBe(true);
      // the dQ side is the GEMM from the stored dS' (not a fused late-loads dQ kernel)
      expect(all.some((l) => l.startsWith("flex_bwd_dq_tensor from dS'"))).toBe(true);
    });
  });
  for (const c of CASES) it.skipIf(c.always ? noGpu : skip)(c.name, async () => void await check(c));
});

describe("tensor-family backward, lateLoads (WGSL)", () => {
  const base: FlexBwdTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BA: 128, subgroups: 8, BB: 16, emulate: false, subgroupSize: 32,
    ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, oneStage: true,
  };
  it("the next tile's loads after barrier A and before their slot stores; nothing else moves; one stage only", () => {
    for (const mode of ["dq", "dkdv"] as const) {
      const late = tileLoopOf(flexBackwardTensorWgsl(mode, { ...base, lateLoads: true }, IDENTITY_HOOKS));
      const plain = tileLoopOf(flexBackwardTensorWgsl(mode, base, IDENTITY_HOOKS));
      const barrierA = (loop: string) => loop.indexOf("workgroupBarrier(); // A:");
      const firstLoad = (loop: string) => loop.indexOf("(b_base + sb_nxt");
      expect(firstLoad(plain)).toBeGreaterThan(0);
      expect(firstLoad(plain)).toBeLessThan(barrierA(plain));
      expect(firstLoad(late)).toBeGreaterThan(barrierA(late));
      expect(firstLoad(late)).toBeLessThan(late.indexOf("workgroupBarrier(); // B:"));
      expect(late.split("workgroupBarrier()").length).toBe(plain.split("workgroupBarrier()").length);
      expect(late.length).toBe(plain.length); // the same text, moved
    }
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, oneStage: false, lateLoads: true }, IDENTITY_HOOKS)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, ownRows: true, lateLoads: true }, IDENTITY_HOOKS)).toThrow();
  });
});

releaseGpuAfterAll();
