/**
 * `deno task fuzz`: the long fuzz run — random mods (tests/fuzz/generators.ts) × random shapes, each case on
 * the selected GPU provider against the float64 CPU oracle (tests/fuzz/check.ts), with fast-check shrinking.
 *
 *   FUZZ_CASES    total (mod, shape) cases, default 10000
 *   FUZZ_SEED     fast-check seed, default random; PRINTED first so a failure can be replayed
 *   FUZZ_PATH     replay: the path fast-check printed with the failure (with the same FUZZ_SEED)
 *   FUZZ_SHAPES   shapes per mod (default 10): a mod costs kernel compiles, a shape costs none
 *   FUZZ_GRAD     1 mod in FUZZ_GRAD runs the backward on all its shapes (default 5; 0 = forward only)
 *   FUZZ_SHRINK_S seconds of shrinking after the first failure (default 900; every candidate mod compiles anew);
 *                 then the smallest counterexample so far is reported
 *
 * Prints progress, then one final line `fuzz: N cases (M mods, K backward) seed S: passed|FAILED`; exits 1 on
 * a failure after printing fast-check's report (seed, path, shrunk counterexample) and the readable failure of
 * the shrunk case (mod source, shapes, expected vs got).
 *
 *   XDG_RUNTIME_DIR=/tmp LP_NUM_THREADS=1 FLEX_WEBGPU=dawn FUZZ_CASES=200 deno task fuzz
 */
import fc from "fast-check";
import { deviceInfo, resetRuntime } from "../../mod.ts";
import { describeShape, modArb, type ModSpec, shapeArb, type ShapeSpec } from "./generators.ts";
import { runCase } from "./check.ts";

const env = (k: string) => Deno.env.get(k);
const CASES = Number(env("FUZZ_CASES") ?? 10000);
const SEED = env("FUZZ_SEED") !== undefined ? Number(env("FUZZ_SEED")) : (Math.random() * 2 ** 31) | 0;
const SHAPES = Math.max(1, Number(env("FUZZ_SHAPES") ?? 10));
const GRAD = Number(env("FUZZ_GRAD") ?? 5);
const SHRINK_S = Number(env("FUZZ_SHRINK_S") ?? 900);
const PATH = env("FUZZ_PATH");
const numRuns = Math.max(1, Math.ceil(CASES / SHAPES));

const info = await deviceInfo();
console.log(`fuzz: FUZZ_SEED=${SEED} FUZZ_CASES=${CASES} (${numRuns} mods × ${SHAPES} shapes, 1 mod in ${GRAD || "∞"} with backward)` +
  ` on ${info.provider} "${info.adapter}"${PATH ? ` replaying path ${PATH}` : ""}`);
if (info.provider === "cpu") console.log("fuzz: WARNING: the provider is the CPU executor itself; this compares the oracle with itself");

const t0 = performance.now();
const stats = { cases: 0, mods: 0, backward: 0, bothOob: 0, gpuOnlyOob: 0, nearKink: 0, failedRuns: 0 };
let firstFailureAt: number | undefined;
let lastFailure: string | undefined;
let lastPrint = performance.now();
const secs = () => ((performance.now() - t0) / 1000).toFixed(0);

const property = fc.asyncProperty(
  modArb({ gradEvery: GRAD }),
  fc.array(shapeArb, { minLength: SHAPES, maxLength: SHAPES }),
  async (mod: ModSpec, shapes: ShapeSpec[]) => {
    // out of shrinking time: every further candidate "passes", so fast-check stops at the smallest failure so far
    if (firstFailureAt !== undefined && (performance.now() - firstFailureAt) / 1000 > SHRINK_S) return;
    if (firstFailureAt === undefined) stats.mods++;
    for (const [i, shape] of shapes.entries()) {
      const r = await runCase(mod, shape);
      if (firstFailureAt === undefined) {
        stats.cases++;
        if (r.backward) stats.backward++;
        if (r.outcome === "bothOutOfRange") stats.bothOob++;
        if (r.outcome === "gpuOnlyOutOfRange") stats.gpuOnlyOob++;
        if (r.outcome === "nearKink") stats.nearKink++;
        if (stats.cases % 50 === 0 || performance.now() - lastPrint > 60_000) {
          lastPrint = performance.now();
          console.log(`fuzz: [${stats.cases}/${CASES}] ${stats.mods} mods, ${stats.backward} backward, ` +
            `${stats.bothOob} CaptureOutOfRange on both, ${stats.gpuOnlyOob} on the GPU only, ${stats.nearKink} near a kink, ${secs()} s`);
        }
      }
      if (r.failure) {
        stats.failedRuns++;
        if (firstFailureAt === undefined) {
          firstFailureAt = performance.now();
          console.log(`fuzz: FAILURE at case ${stats.cases} (${secs()} s); shrinking for up to ${SHRINK_S} s ...\n${r.failure}`);
        } else {
          console.log(`fuzz: shrink step ${stats.failedRuns - 1} still fails (${secs()} s): ${r.failure.split("\n")[0]}`);
        }
        lastFailure = `${r.failure}\n(shape ${i + 1} of ${shapes.length}: ${describeShape(shape)})`;
        throw new Error(r.failure);
      }
    }
    // lavapipe's JIT slows down as shaders pile up in one device: a fresh device every 25 mods
    if (firstFailureAt === undefined && stats.mods % 25 === 0) await resetRuntime();
  },
);

let failed = false;
try {
  await fc.assert(property, { seed: SEED, numRuns, path: PATH, verbose: 0 });
} catch (e) {
  failed = true;
  console.log("\n--- fast-check report ---\n" + (e instanceof Error ? e.message : String(e)));
  if (lastFailure) console.log("\n--- the shrunk counterexample, readable ---\n" + lastFailure);
  console.log(`\nreplay: FUZZ_SEED=${SEED} FUZZ_CASES=${CASES} FUZZ_SHAPES=${SHAPES} FUZZ_GRAD=${GRAD} FUZZ_PATH=<path above> deno task fuzz`);
}
console.log(`fuzz: ${stats.cases} cases (${stats.mods} mods, ${stats.backward} backward, ${stats.bothOob + stats.gpuOnlyOob} CaptureOutOfRange, ${stats.nearKink} near a kink) ` +
  `seed ${SEED} in ${secs()} s: ${failed ? "FAILED" : "passed"}`);
await resetRuntime();
Deno.exit(failed ? 1 : 0);
