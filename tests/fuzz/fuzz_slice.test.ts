/**
 * A FIXED-SEED slice of the fuzz (tests/fuzz/fuzz.ts is the long run): 35 random mods × 15 random shapes =
 * 525 cases, each on the GPU (Dawn) against the float64 CPU oracle through the public API (tests/fuzz/check.ts):
 * BlockMask states, out, lse, fully masked rows, CaptureOutOfRange agreement; the backward (dq, dk, dv and
 * learnable captured tables) on every 5th mod.
 *
 * Cost: every mod is new kernels (seconds each on lavapipe), every shape is data. It runs only in the Deno +
 * Dawn pass of tests/run.ts (the other passes skip it with the reason), so its compile budget is spent once.
 *
 * Backward budget: while the backward bakes the block-table length into its WGSL (a new sequence length
 * recompiles dq and dk/dv whenever the call has captured tensors; tests/fuzz/regressions.test.ts), a grad mod
 * that captures tensors runs its backward on 2 of its 15 shapes (shapes 0 and 8), a grad mod without captures on
 * all 15; backward mods are capped at D, Dv ≤ 32 (their compile dominates the slice on lavapipe; the long run
 * covers every head dim in the backward).
 */
import fc from "fast-check";
import { describe, expect, it, runtime } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { deviceInfo } from "../../mod.ts";
import { type Dim, factsOf, modArb, type ModSpec, shapeArb } from "./generators.ts";
import { runCase } from "./check.ts";

const SEED = 20261201, MODS = 35, SHAPES = 15, GRAD_EVERY = 5;
/** Shapes of a capturing grad mod that run the backward (each one recompiles it until the regression is fixed). */
const CAPTURING_BWD_EVERY = 8;

async function skipReason(): Promise<string | false> {
  const only = "the fuzz slice runs only in the Deno + Dawn pass (one kernel-compile budget)";
  if (runtime !== "deno") return `${only}; this pass is Bun`;
  const requested = Deno.env.get("FLEX_WEBGPU");
  if (requested && requested !== "dawn") return `${only}; this pass uses FLEX_WEBGPU=${requested}`;
  const noGpu = await gpuSkipReason();
  if (noGpu) return noGpu;
  const provider = (await deviceInfo()).provider;
  return provider === "dawn" ? false : `${only}; the provider here is ${provider}`;
}

const skip = await skipReason();

const capDim = (d: Dim): Dim => (d > 32 ? 32 : d);
export const SLICE_MODS: ModSpec[] = fc.sample(modArb({ gradEvery: 0 }), { seed: SEED, numRuns: MODS }).map((m, i) =>
  i % GRAD_EVERY === 0 ? { ...m, grad: true, D: capDim(m.D), Dv: capDim(m.Dv) } : m
);

const totals = { cases: 0, backward: 0, bothOob: 0, gpuOnlyOob: 0, nearKink: 0, failed: 0 };
const t0 = performance.now();

describe("fuzz slice (fixed seed): random mods × shapes, GPU == float64 oracle", () => {
  SLICE_MODS.forEach((mod, i) => {
    const facts = factsOf(mod);
    const capturing = facts.scoreReads.size + facts.maskReads.size > 0;
    const title = `mod ${i}${mod.grad ? " (+backward)" : ""}: D=${mod.D}/${mod.Dv} ${mod.dtype} ${facts.scoreCode.slice(20, 80)}`;
    it.skipIf(skip)(title, async () => {
      const shapes = fc.sample(shapeArb, { seed: SEED + 1 + i, numRuns: SHAPES });
      const failures: string[] = [];
      for (const [j, shape] of shapes.entries()) {
        const r = await runCase(mod, shape, { backward: !capturing || j % CAPTURING_BWD_EVERY === 0 });
        totals.cases++;
        if (r.backward) totals.backward++;
        if (r.outcome === "bothOutOfRange") totals.bothOob++;
        if (r.outcome === "gpuOnlyOutOfRange") totals.gpuOnlyOob++;
        if (r.outcome === "nearKink") totals.nearKink++;
        if (r.failure) { totals.failed++; failures.push(`[mod ${i}, shape ${j}] ${r.failure}`); }
      }
      if (failures.length) throw new Error(`${failures.length} of ${SHAPES} cases failed:\n\n${failures.join("\n\n")}`);
    });
  });

  it.skipIf(skip)(`ran ≥ ${MODS * SHAPES} cases`, () => {
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    console.log(`fuzz slice: ${totals.cases} cases (${totals.backward} with backward, ${totals.bothOob} CaptureOutOfRange on both, ` +
      `${totals.gpuOnlyOob} on the GPU only, ${totals.nearKink} near a kink), ${totals.failed} failed, ${s} s`);
    expect(totals.cases).toBe(MODS * SHAPES);
  });
});

releaseGpuAfterAll();
