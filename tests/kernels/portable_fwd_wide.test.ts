/**
 * The portable forward's wide register tile (kernels/flex_forward.ts flexForwardWideWgsl: TM 4 / 8 rows a thread as
 * vec4 halves, probabilities staged per V chunk) against the float64 oracle: fresh random inputs, outputs poisoned,
 * rel. L2 ≤ 1e-4 on out and lse. Shapes are pinned through flexConfigOverride and kept small (lavapipe compiles
 * each kernel in seconds): TM 8 with subgroup row reductions; the H200 default's thread tile (TM 8 × 8 columns) through
 * workgroup memory with Q re-staged per D chunk and V chunks narrower than 4·G, at D 128 (the H200 call checked D 64
 * and 128 against float64 too); TM 4; causal with ragged and cross lengths, a score mod, GQA, dropout + returnAux + split-KV with fully masked rows. And the
 * heuristic: the wide default exactly where it was measured faster.
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { blockMaskOf, type Case, makeCall, runAgainstOracle } from "./helpers.ts";
import { type FlexForwardConfig, flexForwardSmemBytes } from "../../kernels/flex_forward.ts";
import { chooseFlexConfig, flexConfigCandidates, flexConfigOverride } from "../../lib/lower/flex_config.ts";
import { type Capabilities, DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { flexForwardSource } from "../../lib/lower/plan_flex.ts";
import { flexNodes } from "../../lib/attention/flex_attention.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import type { Tensor } from "../../lib/tensor/tensor.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import { relL2 } from "../harness.ts";

const TOL = 1e-4;
const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
type Shape = Pick<FlexForwardConfig, "BM" | "BN" | "TM" | "G" | "DK" | "NV">;

/** Runs `f` with every forward of head dim D pinned to the wide `shape` (subgroup reductions where the adapter allows). */
async function pinned<T>(shape: Shape, f: () => Promise<T>): Promise<T> {
  const caps = gpu.caps;
  const subgroups = caps.features.has("subgroups") && (caps.subgroupMinSize ?? 0) >= shape.G && (caps.subgroupMinSize ?? 0) % shape.G === 0;
  flexConfigOverride.pick = (p) => ({ family: "portable", D: p.D, Dv: p.Dv, identityScore: p.identityScore, subgroups, wide: true, ...shape });
  try {
    return await f();
  } finally {
    flexConfigOverride.pick = undefined;
  }
}

/** The call runs the wide kernel (not a fallback), and out / lse match the oracle. */
async function check(shape: Shape, c: Case) {
  return await pinned(shape, async () => {
    const call = makeCall(c);
    const { code, config } = flexForwardSource(call, gpu.caps);
    expect(config.wide).toBe(true);
    expect(code).toContain("wide register tile");
    expect(flexForwardSmemBytes(config)).toBeLessThanOrEqual(gpu.caps.limits.maxComputeWorkgroupStorageSize);
    const r = await runAgainstOracle(call);
    expect(r.errOut).toBeLessThanOrEqual(TOL);
    expect(r.errLse).toBeLessThanOrEqual(TOL);
    return r;
  });
}

// TM 8 · 4 columns a thread, subgroup reductions on adapters with subgroups of ≥ 8 (lavapipe: 8)
const TM8 = { BM: 32, BN: 32, TM: 8, G: 8, DK: 32, NV: 32 } as const;
// the H200 default's thread tile (BM128 BN128 TM8 G16 DK16 NV32) at half the rows so that it fits lavapipe's 32 KiB
// with `red` (G 16 > lavapipe's subgroups): Q re-staged per DK = 16 chunk, V chunks of 32 < 4·G = 64 keys
const DEFAULT_TILE = { BM: 64, BN: 128, TM: 8, G: 16, DK: 16, NV: 32 } as const;
// TM 4, 8 columns a thread
const TM4 = { BM: 64, BN: 32, TM: 4, G: 4, DK: 32, NV: 16 } as const;

describe("portable forward, wide register tile vs oracle", () => {
  const run = it.skipIf(skipReason);

  run("TM 8: causal with ragged lengths (Sq 200 × Skv 190) and full blocks, softcap score mod, GQA; D 32", async () => {
    await check(TM8, { Sq: 200, Skv: 190, D: 32, options: { blockMask: blockMaskOf(causal, 1, 1, 200, 190, 64) } });
    await check(TM8, { Sq: 96, D: 32, options: { scoreMod: (s: Expr) => s.div(2).tanh().mul(2) } });
    await check(TM8, { Hq: 4, Hkv: 2, Sq: 100, D: 32, options: { blockMask: blockMaskOf(causal, 1, 1, 100, 100, 32) } });
  });

  run("the H200 default's thread tile (8 × 8) through workgroup memory: causal D 128, cross lengths Sq 70 × Skv 200", async () => {
    await check(DEFAULT_TILE, { Sq: 70, Skv: 200, D: 128, options: { blockMask: blockMaskOf(causal, 1, 1, 70, 200, 128) } });
  });

  run("TM 4 with dropout, returnAux and split-KV 3: out, lse and maxScore vs oracle; fully masked rows give 0 / −∞", async () => {
    const lateStart: MaskMod = (_b, _h, q, kv) => q.ge(3).and(q.ge(kv));
    const S = 90;
    const call = makeCall({
      Sq: S, D: 32,
      options: {
        blockMask: blockMaskOf(lateStart, 1, 1, S, S, 32), scoreMod: (s: Expr) => s.div(3).tanh().mul(3),
        dropout: { p: 0.2, seed: 7 }, returnAux: true, kernelOptions: { splitKv: 3 },
      },
    });
    await pinned(TM4, async () => {
      const { out, lse, maxScore } = flexNodes(call);
      setPoison(true);
      const got = await Effect.runPromise(gpu.executor.realize([out, lse, maxScore!]));
      const data = (t: unknown) => (t as Tensor).data!;
      const ref = flexReference(call, {
        q: data(call.q), k: data(call.k), v: data(call.v),
        scoreCaptures: call.scoreMod.captures.map(data), maskCaptures: call.blockMask.tracedMask.captures.map(data),
      });
      expect(relL2(got[0], ref.out)).toBeLessThanOrEqual(TOL);
      expect(relL2(got[1], ref.lse)).toBeLessThanOrEqual(TOL);
      expect(relL2(got[2], ref.maxScore)).toBeLessThanOrEqual(TOL);
      for (const h of [0, 1]) for (let i = 0; i < 3; i++) {
        expect(got[1][h * S + i]).toBe(-Infinity);
        expect(got[2][h * S + i]).toBe(-Infinity);
        for (let d = 0; d < 32; d++) expect(got[0][(h * S + i) * 32 + d]).toBe(0);
      }
    });
  });
});

describe("portable forward heuristic: the wide tile where measured", () => {
  const h200ish: Capabilities = {
    ...DEFAULT_CAPABILITIES, features: new Set(["subgroups"]), subgroupMinSize: 32, subgroupMaxSize: 32,
    limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 },
  };
  const pick = (D: number, identityScore: boolean, caps = h200ish, QB = 128) => chooseFlexConfig({ D, Dv: D, QB, KB: QB, identityScore }, caps);
  it("D 64 and 128, identity score, 128-blocks: BM128 BN128 TM8 G16 DK16 NV32 with subgroups", () => {
    for (const D of [64, 128]) {
      expect(pick(D, true)).toEqual({
        family: "portable", D, Dv: D, BM: 128, BN: 128, TM: 8, G: 16, DK: 16, NV: 32, identityScore: true, subgroups: true, wide: true,
      });
    }
  });
  it("narrow elsewhere: a score mod, D 32 / 80, 64-blocks, no subgroups, a software adapter", () => {
    expect(pick(64, false).wide).toBeUndefined();
    expect(pick(32, true).wide).toBeUndefined();
    expect(pick(80, true).wide).toBeUndefined();
    expect(pick(64, true, h200ish, 64).wide).toBeUndefined();
    expect(pick(64, true, { ...h200ish, features: new Set(), subgroupMinSize: undefined, subgroupMaxSize: undefined }).wide).toBeUndefined();
    expect(pick(64, true, { ...h200ish, software: true }).wide).toBeUndefined();
    expect(flexConfigCandidates({ D: 64, Dv: 64, QB: 128, KB: 128, identityScore: true }, { ...h200ish, software: true }).some((c) => c.wide)).toBe(false);
  });
});

releaseGpuAfterAll();
