/**
 * A FIXED-SEED slice of the fuzz (tests/fuzz/fuzz.ts is the long run): 25 random mods × 21 random shapes =
 * 525 cases, each on the GPU (Dawn) against the float64 CPU oracle through the public API (tests/fuzz/check.ts):
 * BlockMask states, out, lse, fully masked rows, CaptureOutOfRange agreement; the backward (dq, dk, dv and
 * learnable captured tables) on every shape of every 5th mod (of those whose calls reach the kernels).
 *
 * Cost: every mod is new kernels (seconds each on lavapipe), every shape is data, so the slice spends its
 * budget on few mods with many shapes, and keeps each mod to ONE decode-tile kernel (tests/fuzz/slice_shapes.ts:
 * about half the forward-only mods run their small-Sq shapes through the decode tile in one units class, the
 * other mods through the query-tile forward). It runs only in the Deno + Dawn pass of tests/run.ts (the other
 * passes skip it with the reason), so its compile budget is spent once. Backward mods are f32 with D, Dv ≤ 32 (their compile dominates
 * on lavapipe: an f16 one cost 20–25 s more; the long run covers f16 and every head dim in the backward).
 */
import fc from "fast-check";
import { describe, expect, it, runtime } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { deviceInfo } from "../../mod.ts";
import { type Dim, factsOf, modArb, type ModSpec, shapeArb } from "./generators.ts";
import { runCase } from "./check.ts";
import { type DecodePlan, decodePlanArb, fitDecodeShape, isDecodeShape } from "./slice_shapes.ts";
import { flexDecodeSwitch } from "../../lib/lower/flex_decode_config.ts";

const SEED = 20261201, MODS = 25, SHAPES = 21, GRAD_EVERY = 5;

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
/**
 * Every GRAD_EVERY-th mod that reaches the kernels runs the backward: not one with a constant out-of-range read
 * (it throws at trace time) or a mask read that may go out of range (mostly CaptureOutOfRange in createBlockMask).
 */
let reaching = 0;
const reachesKernels = (m: ModSpec) => { const f = factsOf(m); return !f.constOob && !f.maskMayOob; };
export const SLICE_MODS: ModSpec[] = fc.sample(modArb({ gradEvery: 0 }), { seed: SEED, numRuns: MODS }).map((m) =>
  reachesKernels(m) && reaching++ % GRAD_EVERY === 0 ? { ...m, grad: true, dtype: "f32", D: capDim(m.D), Dv: capDim(m.Dv) } : m
);
/** Grad mods spend their compile budget on the backward: their small-Sq shapes run the query tile (no decode kernel). */
export const SLICE_DECODE: DecodePlan[] = fc.sample(decodePlanArb, { seed: SEED + 7, numRuns: MODS })
  .map((p, i) => (SLICE_MODS[i].grad ? { ...p, units: 0 } : p));
/** The shapes of mod i: shapeArb's, moved into the mod's decode class. */
export const sliceShapes = (i: number) =>
  fc.sample(shapeArb, { seed: SEED + 1 + i, numRuns: SHAPES }).map((s) => fitDecodeShape(SLICE_MODS[i], SLICE_DECODE[i], s));

const totals = { cases: 0, backward: 0, decode: 0, bothOob: 0, gpuOnlyOob: 0, nearKink: 0, failed: 0 };
const t0 = performance.now();

describe("fuzz slice (fixed seed): random mods × shapes, GPU == float64 oracle", () => {
  SLICE_MODS.forEach((mod, i) => {
    const facts = factsOf(mod);
    const decode = SLICE_DECODE[i].units;
    const title = `mod ${i}${mod.grad ? " (+backward)" : ""}${decode ? ` (decode ${decode})` : ""}: D=${mod.D}/${mod.Dv} ${mod.dtype} ` +
      facts.scoreCode.slice(20, 80);
    it.skipIf(skip)(title, async () => {
      const failures: string[] = [];
      flexDecodeSwitch.enabled = decode !== 0;
      try {
        for (const [j, shape] of sliceShapes(i).entries()) {
          const r = await runCase(mod, shape);
          totals.cases++;
          if (r.backward) totals.backward++;
          if (decode && isDecodeShape(mod, shape)) totals.decode++;
          if (r.outcome === "bothOutOfRange") totals.bothOob++;
          if (r.outcome === "gpuOnlyOutOfRange") totals.gpuOnlyOob++;
          if (r.outcome === "nearKink") totals.nearKink++;
          if (r.failure) { totals.failed++; failures.push(`[mod ${i}, shape ${j}] ${r.failure}`); }
        }
      } finally {
        flexDecodeSwitch.enabled = true;
      }
      if (failures.length) throw new Error(`${failures.length} of ${SHAPES} cases failed:\n\n${failures.join("\n\n")}`);
    });
  });

  it.skipIf(skip)(`ran ≥ ${MODS * SHAPES} cases`, () => {
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    console.log(`fuzz slice: ${totals.cases} cases (${totals.backward} with backward, ${totals.decode} on the decode tile, ${totals.bothOob} CaptureOutOfRange on both, ` +
      `${totals.gpuOnlyOob} on the GPU only, ${totals.nearKink} near a kink), ${totals.failed} failed, ${s} s`);
    expect(totals.cases).toBe(MODS * SHAPES);
  });
});

releaseGpuAfterAll();
