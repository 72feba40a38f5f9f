/**
 * The tensor-family dK/dV kernel's `roleSplit` form (kernels/flex_backward_tensor_pipe.ts): the subgroups in two roles
 * over the same owner rows — role 0 holds K and dK (S = K·Qᵀ, dK += dS'·Q), role 1 V and dV (dP = V·dOᵀ, dV += P·dO) —
 * so a lane holds one owner set and one accumulator set. Off by default, so CI runs one cheap case emulated on lavapipe
 * (D 16, 16 × 16 forward tiles, 16 s cold): the stored-dS' dQ path on whole tiles (compact scratch); the rest — ragged
 * lengths with D 40 / Dv 48 (one padded width) through the fused dQ kernel (39 s more cold) among them — where the adapter
 * has subgroup matrices (or FLEX_TEST_ROLE_SPLIT_ALL=1).
 * Gradients through tests/kernels_bwd/tensor_bwd_fixture.ts (public API, poisoned outputs, float64 oracle).
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import type { BwdTensorShape } from "../../lib/lower/flex_bwd_tensor_config.ts";
import { flexBackwardTensorWgsl, type FlexBwdTensorConfig } from "../../kernels/flex_backward_tensor.ts";
import { type BwdProblem, causal, checkTensorBwd, softcap, IDENTITY_HOOKS, moreCasesSkip, tensorBwdSkip as skip, tileLoopOf } from "./tensor_bwd_fixture.ts";

interface Case extends BwdProblem {
  shape: BwdTensorShape; fused?: boolean; layout?: "dense" | "compact";
}

function check(c: Case) {
  const override = { ownerDirect: false, streamDirect: false, shapeFor: { dkdv: c.shape }, dqFromDs: !c.fused, ...(c.layout ? { dsLayout: c.layout } : {}) };
  return checkTensorBwd(c, override, (all) => {
    // the role-split dK/dV kernel of the pinned shape runs, and dQ as asked (from the stored dS' or the fused kernel)
    const kernels = all.filter((l) => l.includes("flex_bwd_d"));
    const shape = `BA${c.shape.BA} SG${c.shape.subgroups} BB${c.shape.BB} `;
    expect(kernels.filter((l) => l.includes("flex_bwd_dkdv") && l.includes(shape) && l.includes(" role-split")).length).toBe(1);
    expect(kernels.some((l) => l.includes("from dS'"))).toBe(!c.fused);
  });
}

const RS = { pipeline: true, quadPass: true, oneStage: true, roleSplit: true, mode: "dkdv" } as const;
const SMALL = { Hq: 2, Hkv: 1, D: 16, block: 32, mask: causal, score: softcap, forwardTile: { blockM: 16, blockN: 16 }, shape: { BA: 32, subgroups: 4, BB: 16, ...RS } };
const CI_CASES: Case[] = [
  { ...SMALL, name: "role split: softcap + causal, GQA 2:1, 64×96, D16, block 32, BA 32 SG 4 BB 16, stored dS' compact", Sq: 64, Skv: 96, layout: "compact" },
];
const MORE_CASES: Case[] = [
  {
    ...SMALL, name: "role split: softcap + causal, GQA 2:1, ragged 50×37, D40 / Dv 48 (one padded width), the fused dQ kernel",
    Sq: 50, Skv: 37, D: 40, Dv: 48, fused: true,
  },
  { name: "role split: noop S256, D64, BA 64 SG 8 BB 16, stored dS' dense", Hq: 2, Sq: 256, D: 64, shape: { BA: 64, subgroups: 8, BB: 16, ...RS }, layout: "dense" },
  {
    name: "role split: causal S256 block 64, GQA 4:2, B2, D64, BA 64 SG 4 BB 16 (32 rows a group), stored dS'",
    B: 2, Hq: 4, Hkv: 2, Sq: 256, D: 64, mask: causal, shape: { BA: 64, subgroups: 4, BB: 16, ...RS },
  },
  { name: "role split: softcap + causal S256, D128, BA 64 SG 8 BB 16", Hq: 2, Sq: 256, D: 128, mask: causal, score: softcap, shape: { BA: 64, subgroups: 8, BB: 16, ...RS } },
];

const moreSkip = await moreCasesSkip("FLEX_TEST_ROLE_SPLIT_ALL", "role-split");

describe("tensor-family backward, role-split dK/dV vs the float64 oracle", () => {
  for (const c of CI_CASES) it.skipIf(skip)(c.name, async () => void await check(c));
  for (const c of MORE_CASES) it.skipIf(moreSkip)(c.name, async () => void await check(c));
});

describe("tensor-family backward, role-split dK/dV (WGSL)", () => {
  const hooks = IDENTITY_HOOKS;
  const base: FlexBwdTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BA: 64, subgroups: 8, BB: 16, emulate: false, subgroupSize: 32,
    ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, oneStage: true, roleSplit: true, storeDs: "dense",
  };
  const loopOf = tileLoopOf;
  it("one owner set and one accumulator set a lane: half the products of the plain form a subgroup, offsets by role", () => {
    const code = flexBackwardTensorWgsl("dkdv", base, hooks);
    const plain = flexBackwardTensorWgsl("dkdv", { ...base, BA: 128, roleSplit: undefined }, hooks);
    const mmas = (s: string) => s.split("subgroupMatrixMultiplyAccumulate(").length - 1;
    expect(mmas(loopOf(code)) * 2).toBe(mmas(loopOf(plain)));
    expect(code).not.toContain("var a20_0");
    expect(code).not.toContain("var c20_0");
    expect(code).toContain("let role = sg / 4u;");
    expect(code).toContain("let rg = sg % 4u;");
    expect(loopOf(code).split("workgroupBarrier()").length - 1).toBe(2);
    // both accumulators reach grads: dK × scale at off_dk, dV at off_dv
    expect(code).toContain("grads[4u * P.off_dk + (a_base + row) * 64u + 0u + cc] = x * P.scale;");
    expect(code).toContain("grads[4u * P.off_dv + (a_base + row) * 64u + 0u + cc] = x;");
  });
  it("is a dkdv form of the one-stage quad pass with one padded head width", () => {
    expect(() => flexBackwardTensorWgsl("dq", base, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, oneStage: false, storeDs: undefined }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, Dv: 32 }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, subgroups: 3, BA: 16 }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, ownRows: true }, hooks)).toThrow();
  });
});

releaseGpuAfterAll();
