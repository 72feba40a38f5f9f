/**
 * Where a new f16 mod's compile goes, per kernel of its forward plan, and whether Dawn's createComputePipelineAsync
 * settles and compiles off the JS thread (issue #12, kernel ready):
 *
 *   deno run -A bench/async_compile_probe.ts        (FLEX_WEBGPU=dawn; on lavapipe the tensor family runs emulated)
 *
 * Per launch of the plan of a fresh score mod: createShaderModule (Tint's parse + validation), getCompilationInfo,
 * createComputePipeline (Tint's codegen + the driver) — then the same for another fresh mod through
 * createComputePipelineAsync while a 1 ms interval counts its ticks (a JS thread blocked by the compile does not tick)
 * and, meanwhile, a sync compile of the portable kernel of a third mod (does other work proceed?).
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, type Expr, flexAttention, randn, type Tensor } from "../mod.ts";
import { Gpu, runPromise, runWithGpu } from "../effect.ts";
import { planNode } from "../lib/lower/plan_node.ts";
import type { KernelLaunch } from "../lib/lower/plan.ts";
import type { KernelOptions } from "../lib/attention/kernel_options.ts";

const [B, H, S, D] = (Deno.env.get("PROBE_SHAPE") ?? "1x8x1024x64").split("x").map(Number);
const { device, executor } = await runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
if (!device) { console.log("async compile probe: no GPU device"); Deno.exit(0); }
const caps = executor.caps;
const native = caps.subgroupMatrixConfigs.length > 0;
const salt = Math.random() / 1000;
const blockMask = await createBlockMask(causalMask, null, null, S, S);
const q = randn([B, H, S, D], { seed: 1, dtype: "f16" }), k = randn([B, H, S, D], { seed: 2, dtype: "f16" }), v = randn([B, H, S, D], { seed: 3, dtype: "f16" });

/** The launches of the forward plan of a fresh mod (the tensor family: automatic where native, forced elsewhere). */
function launchesOf(i: number, family?: "portable" | "tensor"): KernelLaunch[] {
  const c = 1.25 + salt + i / 991;
  const kernelOptions: KernelOptions = family ? { family } : native ? {} : { family: "tensor" };
  const out = flexAttention(q, k, v, { scoreMod: (x: Expr) => x.mul(c), blockMask, kernelOptions }) as Tensor;
  // the plan and the plans of its computed inputs (the portable f16 path: casts, the f32 twin's forward, converts)
  const launches: KernelLaunch[] = [], seen = new Set<Tensor>();
  const visit = (t: Tensor) => {
    if (t.op === "const" || seen.has(t)) return;
    seen.add(t);
    const plan = planNode(t, caps);
    plan.defines.forEach((d) => seen.add(d));
    for (const l of plan.launches) for (const b of l.bindings) if (b.kind === "input") visit(b.tensor);
    launches.push(...plan.launches);
  };
  visit(out);
  return launches;
}

const layoutFor = (l: KernelLaunch) => {
  const group = device.createBindGroupLayout({
    entries: l.bindings.map((b, i) => ({
      binding: i, visibility: GPUShaderStage.COMPUTE,
      buffer: b.kind === "input" || b.kind === "data" || (b.kind === "scratch" && b.readOnly) ? { type: "read-only-storage" as const }
        : b.kind === "uniform" ? { type: "uniform" as const } : { type: "storage" as const },
    })),
  });
  return device.createPipelineLayout({ bindGroupLayouts: [group] });
};

const f = (x: number) => x.toFixed(1);
const timedSync = async (l: KernelLaunch) => {
  const t0 = performance.now();
  const module = device.createShaderModule({ code: l.code, label: l.label });
  const t1 = performance.now();
  await module.getCompilationInfo();
  const t2 = performance.now();
  device.pushErrorScope("validation");
  device.createComputePipeline({ layout: layoutFor(l), compute: { module, entryPoint: l.entryPoint } });
  const t3 = performance.now();
  const err = await device.popErrorScope();
  return { module: t1 - t0, info: t2 - t1, pipeline: t3 - t2, total: performance.now() - t0, err: err?.message };
};

console.log(`async compile probe: ${native ? "native" : "emulated"} tensor family, B${B} H${H} S${S} D${D}, code chars per launch below`);
// 1. sync, per launch (the executor's path today)
for (const l of launchesOf(1)) {
  const r = await timedSync(l);
  console.log(`  sync  ${l.label} (${l.code.length} chars): createShaderModule ${f(r.module)} ms, getCompilationInfo ${f(r.info)}, ` +
    `createComputePipeline ${f(r.pipeline)}, total ${f(r.total)}${r.err ? `  ERROR ${r.err}` : ""}`);
}
for (const l of launchesOf(2, "portable")) {
  const r = await timedSync(l);
  console.log(`  sync  portable ${l.label} (${l.code.length} chars): module ${f(r.module)} ms, info ${f(r.info)}, pipeline ${f(r.pipeline)}, total ${f(r.total)}`);
}

// a portable f16 realize of one more mod, compiled and warm before the async part: then realized again during it
const c5 = 1.5 + salt;
const warmCall = () => runPromise(executor.realize([flexAttention(q, k, v, { scoreMod: (x: Expr) => x.mul(c5), blockMask, kernelOptions: { family: "portable" } }) as Tensor]));
await warmCall();

// 2. async: does it settle, how long, does the JS thread tick meanwhile, and does a sync compile of another kernel proceed
const main = launchesOf(3).find((l) => l.label.startsWith("flex_forward"))!;
let ticks = 0, maxGap = 0, last = performance.now();
const timer = setInterval(() => { const n = performance.now(); maxGap = Math.max(maxGap, n - last); last = n; ticks++; }, 1);
const t0 = performance.now();
const module = device.createShaderModule({ code: main.code, label: main.label });
const tModule = performance.now() - t0;
await module.getCompilationInfo();
const tInfo = performance.now() - t0;
last = performance.now(); maxGap = 0; ticks = 0;
const tA = performance.now();
let settledAt = 0;
const pending = device.createComputePipelineAsync({ layout: layoutFor(main), compute: { module, entryPoint: main.entryPoint } })
  .then((p) => { settledAt = performance.now(); return p; }, (e) => { settledAt = performance.now(); return e as Error; });
const tCall = performance.now() - tA;
// meanwhile: which device waits proceed — a popErrorScope, an empty submit's onSubmittedWorkDone, a mapAsync
const stamp = () => f(performance.now() - tA);
const waits: string[] = [];
device.pushErrorScope("validation");
await device.popErrorScope();
waits.push(`popErrorScope at ${stamp()}`);
device.queue.submit([device.createCommandEncoder().finish()]);
await device.queue.onSubmittedWorkDone();
waits.push(`onSubmittedWorkDone at ${stamp()}`);
const rb = device.createBuffer({ size: 256, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
await rb.mapAsync(GPUMapMode.READ);
rb.unmap();
rb.destroy();
waits.push(`mapAsync at ${stamp()}`);
waits.push(`(async compile ${settledAt === 0 ? "still pending" : "settled"})`);
// then a portable kernel of another mod, synchronously, then a whole realize of a third (compile, launch, readback)
const other = launchesOf(4, "portable").find((l) => l.label.startsWith("flex_forward"))!;
const o = await timedSync(other);
const otherDoneAt = performance.now() - tA;
const tR = performance.now();
await warmCall();
const realizeMs = performance.now() - tR;
const realizeDoneAt = performance.now() - tA;
const pendingAtRealize = settledAt === 0;
const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 30000));
const result = await Promise.race([pending, timeout]);
clearInterval(timer);
const settled = result !== "timeout";
console.log(`  async ${main.label}: module ${f(tModule)} ms, +info ${f(tInfo - tModule)}; createComputePipelineAsync call returned in ${f(tCall)} ms, ` +
  (settled ? `settled ${result instanceof Error ? `REJECTED (${result.message}) ` : ""}after ${f(settledAt - tA)} ms` : "did NOT settle in 30 s") +
  `; meanwhile a sync portable compile took ${f(o.total)} ms (done at ${f(otherDoneAt)} ms), a warm portable realize (cached pipelines) took ${f(realizeMs)} ms, ` +
  `done at ${f(realizeDoneAt)} ms (${pendingAtRealize ? "before" : "AFTER"} the async compile settled); waits: ${waits.join(", ")}; timer ticks ${ticks}, longest gap ${f(maxGap)} ms`);
Deno.exit(0);
