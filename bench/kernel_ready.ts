/**
 * How long a NEW mod waits for its kernel (issue #12: "a new mod's kernel ready ≤ 250 ms"), and that a new sequence
 * length rebuilds nothing, through the public API's graph on the default provider's device (a file-local executor that counts its pipelines):
 *
 *   deno run -A bench/kernel_ready.ts            (FLEX_WEBGPU=dawn on the GPU machine)
 *
 * For each dtype (f32: the portable family; f16: the tensor family where the adapter has subgroup matrices) and each of
 * READY_MODS fresh score mods (a distinct constant each, so every one is a new kernel; causal mask), it times the first
 * call of the mod (trace, WGSL, pipeline compile, launch, readback) and then a warm call of the same mod on fresh inputs;
 * "ready" = first − warm, the part a user waits for because the mod is new. Then calls at three new lengths per
 * dtype, counting the executor's pipelines (see below).
 * Tiered compilation (lib/runtime/tiered_compile.ts, on by default under Dawn; FLEX_TIERED=0 off): an f16 mod's first
 * call answers from the quick portable plan while the tensor kernel compiles in the background. Then per f16 mod:
 * "first result" (the first call: what the user waits for), "fast kernel ready" (from the first call's start until
 * the background compile settled: later calls run the tensor kernel), the warm call of the tensor kernel (after it),
 * and the warm call of the quick plan (the same mod with `family: "portable"` pinned, its pipelines cached by then);
 * "ready" is then first − the quick warm call (the compile the user waited for). Env: READY_MODS (default 8), READY_DTYPES (default f32,f16),
 * READY_SHAPE (B x H x S x D, default 1x8x1024x64). FLEX_TUNE_CACHE is left as set: with autotune "heuristic"
 * (the default) nothing is timed.
 */
import { causalMask, createBlockMask, type Expr, flexAttention, providerReport, randn, type Tensor } from "../mod.ts";
import { Effect } from "effect";
import { Gpu, runPromise, runWithGpu } from "../effect.ts";
import { createGpuExecutor } from "../lib/runtime/gpu_executor.ts";
import { tierTesting } from "../lib/lower/tiers.ts";

const env = (k: string) => Deno.env.get(k);
const N = Number(env("READY_MODS") ?? 8);
// READY_EMULATED_TIER=1: without subgroup matrices (lavapipe) f16 tiers up to the emulated tensor family (a local dry run)
tierTesting.emulatedTensorTier = env("READY_EMULATED_TIER") === "1";
const [B, H, S, D] = (env("READY_SHAPE") ?? "1x8x1024x64").split("x").map(Number);

const report = await providerReport();
console.log(`kernel ready: provider ${report.provider} (${report.adapter ?? "?"}), ${N} new mods per dtype, B${B} H${H} S${S} D${D}`);
// a file-local executor on the runtime's device (as tests/runtime/resources.test.ts): it can count its pipelines
const { device, executor: shared } = await runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
if (!device) { console.log("kernel ready: no GPU device (the CPU executor compiles nothing)"); Deno.exit(0); }
const executor = createGpuExecutor(device, shared.caps, shared.info);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let seed = 1;
// a per-run offset in every constant: drivers keep compiled shaders on disk (Mesa, NVIDIA), and a second run of the
// same mods would time the disk cache, not the compile
const runSalt = Math.random() / 1000;
const inputs = (s: number, dtype: "f32" | "f16") => [0, 1, 2].map(() => randn([B, H, s, D], { seed: seed++, dtype }));

async function call(scoreMod: (x: Expr, b: Expr, h: Expr, q: Expr, kv: Expr) => Expr, s: number, dtype: "f32" | "f16", family?: "portable"): Promise<number> {
  const [q, k, v] = inputs(s, dtype) as [Tensor, Tensor, Tensor];
  const blockMask = await createBlockMask(causalMask, null, null, s, s); // outside the timing: not the kernel's cost
  const t0 = performance.now();
  await runPromise(executor.realize([flexAttention(q, k, v, { scoreMod, blockMask, kernelOptions: family ? { family } : undefined }) as Tensor]));
  return performance.now() - t0;
}

// READY_DTYPES (default "f32,f16"): the dtypes to time (f16 alone when comparing tensor shapes via FLEX_TENSOR_FIRST)
const dtypes = (env("READY_DTYPES") ?? "f32,f16").split(",") as ("f32" | "f16")[];
for (const dtype of dtypes) {
  const ready: number[] = [], warm: number[] = [], firsts: number[] = [], fastReady: number[] = [], quickWarm: number[] = [];
  let mod = (x: Expr) => x;
  let tiered = false;
  for (let i = 0; i < N; i++) {
    const c = 1 + runSalt + (i + 1) / 997 + (dtype === "f16" ? 0.5 : 0); // a new constant: a new kernel
    mod = (x: Expr) => x.mul(c);
    const before = executor.tierStats();
    const t0 = performance.now();
    const first = await call(mod, S, dtype);
    const answeredQuick = executor.tierStats().quick > before.quick;
    await executor.settleCompiles();
    const fast = performance.now() - t0;
    const again = await call(mod, S, dtype);
    firsts.push(first);
    warm.push(again);
    if (answeredQuick) {
      tiered = true;
      fastReady.push(fast);
      await call(mod, S, dtype, "portable"); // the quick plan's kernels, cached by its first call
      const q = await call(mod, S, dtype, "portable");
      quickWarm.push(q);
      ready.push(first - q);
    } else ready.push(first - again);
  }
  // the last mod again at three new lengths: its kernel must not rebuild. The first (the longest but one) may compile
  // the split-KV combine once — a mod-independent kernel, one per Dv — when it turns split-KV on; the next two
  // (shorter and longer, ragged) must compile nothing
  const counts = [executor.pipelineCacheSize()];
  const times: number[] = [];
  for (const s2 of [S + 352, S + 160, S + 544]) {
    times.push(await call(mod, s2, dtype));
    await executor.settleCompiles(); // a split count's new kernel tiers up too
    counts.push(executor.pipelineCacheSize());
  }
  const f = (xs: number[]) => `${median(xs).toFixed(1)} ms (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
  if (tiered) {
    console.log(`${dtype} tiered: first result median ${f(firsts)}, fast kernel ready ${f(fastReady)}; warm call: tensor kernel ` +
      `${f(warm)}, quick plan ${f(quickWarm)}; stats ${JSON.stringify(executor.tierStats())}`);
  }
  const line = `${dtype}: ready median ${median(ready).toFixed(1)} ms (min ${Math.min(...ready).toFixed(1)}, max ` +
    `${Math.max(...ready).toFixed(1)}), warm call median ${median(warm).toFixed(1)} ms; new lengths ${S + 352}, ${S + 160}, ${S + 544}: ` +
    `${times.map((t) => t.toFixed(1)).join(", ")} ms, pipelines ${counts.join(" → ")}` +
    (counts[3] !== counts[1] ? "  REBUILT at a new length" : " (the 2nd and 3rd new lengths compiled nothing)");
  console.log(line);
}
Deno.exit(0);
