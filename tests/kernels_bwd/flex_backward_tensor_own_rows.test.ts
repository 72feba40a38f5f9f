/**
 * The tensor-family backward's `ownRows` knob (kernels/flex_backward_tensor_pipe.ts): each subgroup's scalar pass
 * covers its own rows, so natively one workgroup barrier a tile remains. Gradients through the public API (f16 q, k,
 * v, dOut, poisoned outputs) against the float64 oracle on the same f16 values; emulated on CI's lavapipe (the
 * emulation keeps a barrier around the pass), the intrinsics where the adapter has them.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { createBlockMask, type FlexOptions, flexAttention, type MaskMod, realizeAll, type ScoreMod, setPoison, type Tensor, vjp } from "../../mod.ts";
import { deviceInfo, getExecutor } from "../../lib/runtime/mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { explain } from "../../lib/lower/explain.ts";
import { type BwdTensorShape, setBwdTensorOverride } from "../../lib/lower/flex_bwd_tensor_config.ts";
import { flexBackwardTensorWgsl, type FlexBwdTensorConfig, flexBwdTensorSmemBytes } from "../../kernels/flex_backward_tensor.ts";

const info = await deviceInfo().catch(() => null);
const skip = !info || info.provider === "cpu" ? "no GPU adapter"
  : !info.features.includes("shader-f16") ? "the adapter lacks shader-f16 (the emulated tensor family needs it)"
  : info.provider !== "dawn" ? "the emulated tensor-family backward runs on the Dawn provider only (CI time)" : false;

/** As tests/kernels_bwd/flex_backward_tensor.test.ts: 2× PyTorch's f16 error against float64. */
const TOL = 6e-4;
const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const softcap: ScoreMod = (score) => score.div(20).tanh().mul(20);

interface Case {
  name: string; B?: number; Hq?: number; Hkv?: number; S: number; Skv?: number; D: number; Dv?: number; block?: number;
  mask?: MaskMod; score?: ScoreMod;
  /** The dK/dV shape (ownRows on); dQ from the stored dS' unless `fused` (then the fused dQ kernel, own rows too). */
  shape: BwdTensorShape; fused?: boolean; layout?: "dense" | "compact";
  /** S and dP through one f32 region (oneFs); the owner operands in workgroup memory (ownerSmem). */
  oneFs?: boolean;
  ownerSmem?: boolean;
}

async function check(c: Case) {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.S, Dv = c.Dv ?? c.D;
  const f16 = { dtype: "f16" as const };
  const q = randn([B, Hq, c.S, c.D], f16), k = randn([B, Hkv, Skv, c.D], f16), v = randn([B, Hkv, Skv, Dv], f16);
  const dOut = randn([B, Hq, c.S, Dv], f16);
  const blockMask = c.mask ? await createBlockMask(c.mask, 1, 1, c.S, Skv, { blockSize: c.block ?? 64 }) : undefined;
  const opts: FlexOptions = { blockMask, scoreMod: c.score, enableGqa: Hq !== Hkv, kernelOptions: { family: "tensor" } };
  const [y, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
  const call = (y as Tensor).arg as FlexCall;
  const grads = back(dOut);
  setBwdTensorOverride({
    ownerDirect: false, streamDirect: false, ownRows: true, ...(c.oneFs ? { oneFs: true } : {}), ...(c.ownerSmem ? { ownerSmem: true } : {}), shape: c.shape, dqFromDs: !c.fused, ...(c.layout ? { dsLayout: c.layout } : {}),
  });
  let kernels: readonly string[], got: Awaited<ReturnType<typeof realizeAll>>;
  try {
    kernels = explain(grads, (await getExecutor()).caps).kernels.filter((l) => l.includes("flex_bwd_d"));
    setPoison(true);
    got = await realizeAll(grads);
  } finally {
    setBwdTensorOverride(null);
  }
  // the own-rows kernels ran: the dK/dV one (and the fused dQ one), of the pinned shape
  const shape = `BA${c.shape.BA} SG${c.shape.subgroups} BB${c.shape.BB} `;
  expect(kernels.filter((l) => l.includes("own-rows") && l.includes(shape) && l.includes(" one-fs") === !!c.oneFs && l.includes(" owner-smem") === !!c.ownerSmem).length).toBe(c.fused ? 2 : 1);
  if (!c.fused) expect(kernels.some((l) => l.includes("from dS'"))).toBe(true);
  const ref = flexReferenceBwd(call, {
    q: q.data!, k: k.data!, v: v.data!, scoreCaptures: [], maskCaptures: call.blockMask.tracedMask.captures.map((t) => (t as Tensor).data!),
    dOut: dOut.data!, dLse: null,
  });
  const errors = { dq: relL2(got[0], ref.dq), dk: relL2(got[1], ref.dk), dv: relL2(got[2], ref.dv) };
  const ok = Object.values(errors).every((e) => e <= TOL);
  expect({ case: c.name, errors, ok }).toEqual({ case: c.name, errors, ok: true });
}

// shapes within lavapipe's 32 KiB of workgroup memory (the H200's default, BA 128 / 8 subgroups / BB 16, needs 41 KiB:
// bench/tensor_bwd_probe.ts checks it on the device). CI time: each forward here is the one a case of
// tests/kernels_bwd/flex_backward_tensor.test.ts compiles (same mods, head dims, blocks, GQA), so only the own-rows
// kernels are new (≈ 10 s each on lavapipe)
const CASES: Case[] = [
  {
    name: "causal S128 block 64 (partial diagonal), GQA 4:2, B2, BA 64 SG 2 BB 16 (32 rows a subgroup), stored dS' compact",
    B: 2, Hq: 4, Hkv: 2, S: 128, D: 64, mask: causal, layout: "compact",
    shape: { BA: 64, subgroups: 2, BB: 16, pipeline: true, quadPass: true, oneStage: true },
  },
  {
    name: "one f32 region + owner operands in workgroup memory: softcap + causal, GQA 4:2, ragged 100×77, D40 (padded 48), Dv 24, " +
      "block 32, BA 32 SG 2 BB 16, the fused dQ kernel too",
    Hq: 4, Hkv: 2, S: 100, Skv: 77, D: 40, Dv: 24, block: 32, mask: causal, score: softcap, fused: true, oneFs: true, ownerSmem: true,
    shape: { BA: 32, subgroups: 2, BB: 16, pipeline: true, quadPass: true, oneStage: true },
  },
];

describe("tensor-family backward, own-rows scalar pass vs the float64 oracle", () => {
  for (const c of CASES) it.skipIf(skip)(c.name, async () => void await check(c));
});

describe("tensor-family backward, own-rows scalar pass (WGSL)", () => {
  const hooks = { preamble: "", scoreMod: "", maskMod: "", scoreModGrad: "", identityScore: true, capReads: 0, capCode: "" };
  const base: FlexBwdTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BA: 128, subgroups: 8, BB: 16, emulate: false, subgroupSize: 32,
    ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, oneStage: true, ownRows: true,
  };
  const loopOf = (code: string) => code.slice(code.indexOf("for (var t = 0u; t < n_tiles; t++) {"), code.lastIndexOf("sb_cur = sb_nxt;"));
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
