/**
 * The tensor-family backward's `ownRows` knob (kernels/flex_backward_tensor_pipe.ts): each subgroup's scalar pass
 * covers its own rows, so natively one workgroup barrier a tile remains; with it `oneFs` (S and dP through one f32
 * region) and `ownerSmem` (the owner operands in workgroup memory). All three are off by default (kept for device
 * measurements), so CI's emulated slice is one cheap case of the plain knob (its template compiled and checked); the
 * rest (oneFs + ownerSmem among them) run where the adapter has subgroup matrices, or emulated with
 * FLEX_TEST_OWN_ROWS_ALL=1; the WGSL tests below cover oneFs and ownerSmem everywhere. Gradients
 * through tests/kernels_bwd/tensor_bwd_fixture.ts (public API, poisoned outputs, float64 oracle on the same f16 values).
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import type { BwdTensorShape } from "../../lib/lower/flex_bwd_tensor_config.ts";
import { flexBackwardTensorWgsl, type FlexBwdTensorConfig, flexBwdTensorSmemBytes } from "../../kernels/flex_backward_tensor.ts";
import { type BwdProblem, causal, checkTensorBwd, softcap, IDENTITY_HOOKS, moreCasesSkip, tensorBwdSkip as skip, tileLoopOf } from "./tensor_bwd_fixture.ts";

interface Case extends BwdProblem {
  /** The dK/dV shape (ownRows on); dQ from the stored dS' unless `fused` (then the fused dQ kernel, own rows too). */
  shape: BwdTensorShape; fused?: boolean; layout?: "dense" | "compact";
  /** S and dP through one f32 region (oneFs); the owner operands in workgroup memory (ownerSmem). */
  oneFs?: boolean;
  ownerSmem?: boolean;
}

function check(c: Case) {
  const override = {
    ownerDirect: false, streamDirect: false, ownRows: true, ...(c.oneFs ? { oneFs: true } : {}), ...(c.ownerSmem ? { ownerSmem: true } : {}),
    shape: c.shape, dqFromDs: !c.fused, ...(c.layout ? { dsLayout: c.layout } : {}),
  };
  return checkTensorBwd(c, override, (all) => {
    // the own-rows kernels run: the dK/dV one (and the fused dQ one), of the pinned shape, with the knobs asked for
    const kernels = all.filter((l) => l.includes("flex_bwd_d"));
    const shape = `BA${c.shape.BA} SG${c.shape.subgroups} BB${c.shape.BB} `;
    expect(kernels.filter((l) => l.includes("own-rows") && l.includes(shape) && l.includes(" one-fs") === !!c.oneFs && l.includes(" owner-smem") === !!c.ownerSmem).length)
      .toBe(c.fused ? 2 : 1);
    if (!c.fused) expect(kernels.some((l) => l.includes("from dS'"))).toBe(true);
  });
}

const PIPE = { pipeline: true, quadPass: true, oneStage: true } as const;

// CI (emulated on lavapipe, 29 s cold with its forward): D 16 and the forward on 16 × 16 tiles for short compiles, two
// subgroups of 16 rows, softcap (a score mod with a derivative) + causal (partial diagonal blocks), GQA 2:1. The plain
// knob with the stored dS' (the default dQ path wherever it applies: whole tiles, here cross lengths 64 × 96, compact
// layout). The same shape with oneFs + ownerSmem on ragged lengths through the fused dQ kernel (each knob in both modes)
// is the first of MORE_CASES (33 s more cold).
const SMALL = {
  Hq: 2, Hkv: 1, D: 16, block: 32, mask: causal, score: softcap, forwardTile: { blockM: 16, blockN: 16 }, shape: { BA: 32, subgroups: 2, BB: 16, ...PIPE },
};
const CI_CASES: Case[] = [
  { ...SMALL, name: "own rows: softcap + causal, GQA 2:1, 64×96, D16, block 32, BA 32 SG 2 BB 16, stored dS' compact", Sq: 64, Skv: 96, layout: "compact" },
];

// shapes within lavapipe's 32 KiB of workgroup memory (the H200's default, BA 128 / 8 subgroups / BB 16, needs 41 KiB:
// bench/tensor_bwd_probe.ts checks it on the device); emulated each costs 0.5–1 min cold on lavapipe
const MORE_CASES: Case[] = [
  {
    ...SMALL, name: "one f32 region + owner operands in workgroup memory: softcap + causal, GQA 2:1, ragged 50×37, D16, the fused dQ kernel too",
    Sq: 50, Skv: 37, fused: true, oneFs: true, ownerSmem: true,
  },
  {
    name: "causal S128 block 64 (partial diagonal), GQA 4:2, B2, BA 64 SG 2 BB 16 (32 rows a subgroup), stored dS' compact",
    B: 2, Hq: 4, Hkv: 2, Sq: 128, D: 64, mask: causal, layout: "compact", shape: { BA: 64, subgroups: 2, BB: 16, ...PIPE },
  },
  {
    name: "one f32 region + owner operands in workgroup memory: softcap + causal, GQA 4:2, ragged 100×77, D40 (padded 48), Dv 24, " +
      "block 32, BA 32 SG 2 BB 16, the fused dQ kernel too",
    Hq: 4, Hkv: 2, Sq: 100, Skv: 77, D: 40, Dv: 24, block: 32, mask: causal, score: softcap, fused: true, oneFs: true, ownerSmem: true,
    shape: { BA: 32, subgroups: 2, BB: 16, ...PIPE },
  },
];

const moreSkip = await moreCasesSkip("FLEX_TEST_OWN_ROWS_ALL", "own-rows");

describe("tensor-family backward, own-rows scalar pass vs the float64 oracle", () => {
  for (const c of CI_CASES) it.skipIf(skip)(c.name, async () => void await check(c));
  for (const c of MORE_CASES) it.skipIf(moreSkip)(c.name, async () => void await check(c));
});

describe("tensor-family backward, own-rows scalar pass (WGSL)", () => {
  const hooks = IDENTITY_HOOKS;
  const base: FlexBwdTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BA: 128, subgroups: 8, BB: 16, emulate: false, subgroupSize: 32,
    ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, oneStage: true, ownRows: true,
  };
  const loopOf = tileLoopOf;
  it("natively one barrier a tile, after the accumulate and the next tile's slot store; the pass indexes by the subgroup's lane", () => {
    for (const mode of ["dq", "dkdv"] as const) {
      for (const storeDs of mode === "dkdv" ? [undefined, "dense", "compact"] as const : [undefined]) {
        const code = flexBackwardTensorWgsl(mode, { ...base, ...(storeDs ? { storeDs } : {}) }, hooks);
        const loop = loopOf(code);
        expect(loop.split("workgroupBarrier()").length - 1).toBe(1);
        expect(loop.indexOf("workgroupBarrier()")).toBeGreaterThan(loop.lastIndexOf("subgroupMatrixMultiplyAccumulate"));
        expect(code).toContain("@builtin(subgroup_invocation_id) sg_lane: u32");
        expect(loop).toContain("let qd = sg_lane + e * 32u;");
        expect(loop).toContain("let r = sg * 16u + qd / 4u;");
      }
    }
  });
  it("emulated: a barrier on each side of the pass as well (lavapipe's invocations do not share a step), lanes from the index", () => {
    const code = flexBackwardTensorWgsl("dkdv", { ...base, emulate: true }, hooks);
    expect(loopOf(code).split("workgroupBarrier()").length - 1).toBe(3);
    expect(code).not.toContain("subgroup_invocation_id");
    expect(code).toContain("let qd = tid % 32u + e * 32u;");
  });
  it("one f32 region: S and dP both at fs offset 0, dP stored after the pass read S, still one barrier a tile, 10 KiB less", () => {
    const code = flexBackwardTensorWgsl("dkdv", { ...base, oneFs: true, storeDs: "dense" }, hooks);
    const loop = loopOf(code);
    expect(loop.split("workgroupBarrier()").length - 1).toBe(1);
    expect(code).toContain(`var<workgroup> fs: array<f32, ${128 * 20}>;`);
    const readS = loop.indexOf("let s4 = vec4<f32>(fs[so]"), storeDp = loop.indexOf("subgroupMatrixStore<row_major>(&fs, 0u + (sg * 16u + 16u * (0u)) * 20u + 16u * (0u), x0_0", readS);
    expect(readS).toBeGreaterThan(0);
    expect(storeDp).toBeGreaterThan(readS);
    expect(loop.indexOf("let dp4 = vec4<f32>(fs[so]")).toBeGreaterThan(storeDp);
    expect(flexBwdTensorSmemBytes(base, "dkdv") - flexBwdTensorSmemBytes({ ...base, oneFs: true }, "dkdv")).toBe(128 * 20 * 4);
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, ownRows: false, oneFs: true }, hooks)).toThrow();
  });
  it("owner operands in workgroup memory: no owner registers, left matrices from their region, + 2·BA rows of memory", () => {
    const c = { ...base, BA: 64, subgroups: 4, oneFs: true, ownerSmem: true, storeDs: "dense" as const };
    const code = flexBackwardTensorWgsl("dkdv", c, hooks);
    expect(code).not.toContain("var a10_0");
    expect(loopOf(code).split("workgroupBarrier()").length - 1).toBe(1);
    expect(loopOf(code)).toContain("let al = subgroupMatrixLoad<LM, row_major>(&hs, 7680u + (sg * 16u + 16u * (0u)) * 72u + 16u * (3u), 72u);");
    expect(flexBwdTensorSmemBytes(c, "dkdv")).toBeLessThanOrEqual(49152);
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, ownRows: false, ownerSmem: true }, hooks)).toThrow();
  });
  it("needs the quad pass and one stage; without the knob the kernel is the old one", () => {
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, quadPass: false }, hooks)).toThrow();
    expect(() => flexBackwardTensorWgsl("dkdv", { ...base, oneStage: false }, hooks)).toThrow();
    const old = flexBackwardTensorWgsl("dkdv", { ...base, ownRows: undefined }, hooks);
    expect(old).not.toContain("sg_lane");
    expect(loopOf(old).split("workgroupBarrier()").length - 1).toBe(2);
  });
});

releaseGpuAfterAll();
