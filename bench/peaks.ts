/**
 * The f16 → f32 subgroup-matrix (tensor-core) MMA peak of a provider, measured in raw WebGPU on a device of its
 * own (the library's executor does not hand out its device). Each subgroup keeps 2×4 result matrices in registers
 * and chains `iters` rounds of 8 subgroupMatrixMultiplyAccumulate on operands loaded once, so the loop is nothing but
 * MMAs; the WGSL spelling is the one bench/probe_device.ts and ../shared/gpu/gemm_probe.mjs verified on the H100/H200.
 * Returns TF/s, or a string saying why there is no figure (no `chromium-experimental-subgroup-matrix`, no f16→f32
 * config, a compile error). `deno run -A bench/peaks.ts dawn|native` prints {"mma": TF/s or reason} as one JSON line:
 * bench/table.ts runs it that way, in a child process, so a crash of the Dawn addon here cannot take the bench down.
 */
import { dawnSource } from "../lib/runtime/providers.ts";

export const MMA_FEATURE = "chromium-experimental-subgroup-matrix";
const FEATURE = MMA_FEATURE;
const TM = 2, TN = 4; // result matrices per subgroup

type MatrixConfig = { M: number; N: number; K: number; componentType: string; resultComponentType: string };

function mmaWgsl(M: number, N: number, K: number): string {
  const accs: string[] = [], mmas: string[] = [], stores: string[] = [];
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < TN; j++) {
      accs.push(`var c${i}_${j}: CM;`);
      mmas.push(`c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`);
      stores.push(`subgroupMatrixStore<row_major>(&C, ${(i * TN + j) * M * N}u, c${i}_${j}, ${N}u);`);
    }
  }
  const loadA = Array.from({ length: TM }, (_, i) => `let a${i} = subgroupMatrixLoad<LM, row_major>(&A, ${i * M * K}u, ${K}u);`);
  const loadB = Array.from({ length: TN }, (_, j) => `let b${j} = subgroupMatrixLoad<RM, row_major>(&A, ${TM * M * K + j * K * N}u, ${N}u);`);
  // WGSL's subgroup matrix types are <T, columns, rows>: left M×K, right K×N, result M×N.
  return `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
alias LM = subgroup_matrix_left<f16, ${K}, ${M}>; alias RM = subgroup_matrix_right<f16, ${N}, ${K}>; alias CM = subgroup_matrix_result<f32, ${N}, ${M}>;
struct P { iters: u32 }
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(128) fn main() {
  ${loadA.join(" ")}
  ${loadB.join(" ")}
  ${accs.join(" ")}
  for (var it = 0u; it < p.iters; it++) { ${mmas.join(" ")} }
  ${stores.join(" ")}
}`;
}

async function gpuOf(provider: string): Promise<GPU | undefined> {
  if (provider === "dawn") return await dawnSource().load();
  return (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
}

/** The measured MMA peak in TF/s, or why there is none. */
export async function mmaPeak(provider: string, workgroups = 8192, iters = 1024): Promise<number | string> {
  const gpu = await gpuOf(provider);
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return "no adapter";
  if (!adapter.features.has(FEATURE as GPUFeatureName)) return `no ${FEATURE}`;
  const configs = ((adapter.info as { subgroupMatrixConfigs?: MatrixConfig[] }).subgroupMatrixConfigs ?? [])
    .filter((c) => c.componentType === "f16" && c.resultComponentType === "f32");
  const cfg = configs.find((c) => c.M === 16 && c.N === 16 && c.K === 16) ?? configs[0];
  if (!cfg) return "no f16→f32 subgroup-matrix config";
  const { M, N, K } = cfg;
  const wanted = ["shader-f16", "subgroups", FEATURE, "timestamp-query"].filter((f) => adapter.features.has(f as GPUFeatureName));
  const device = await adapter.requestDevice({ requiredFeatures: wanted as GPUFeatureName[] });
  try {
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: mmaWgsl(M, N, K) });
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const err = await device.popErrorScope();
    if (err) return `MMA probe: ${err.message.split("\n")[0].slice(0, 120)}`;
    const U = GPUBufferUsage;
    const a = device.createBuffer({ size: (TM * M * K + TN * K * N + 8) * 2, usage: U.STORAGE | U.COPY_DST });
    device.queue.writeBuffer(a, 0, new Uint16Array((TM * M * K + TN * K * N + 8)).fill(0x2000)); // small f16 values
    const c = device.createBuffer({ size: TM * TN * M * N * 4, usage: U.STORAGE });
    const u = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST });
    device.queue.writeBuffer(u, 0, new Uint32Array([iters, 0, 0, 0]));
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [a, c, u].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const x = Math.min(workgroups, device.limits.maxComputeWorkgroupsPerDimension);
    const wgs = [x, Math.ceil(workgroups / x)] as const;
    const ms = await timeDispatches(device, pipeline, bindGroup, wgs, 4);
    const subgroups = 128 / ((adapter.info as { subgroupMaxSize?: number }).subgroupMaxSize || 32);
    const flops = wgs[0] * wgs[1] * subgroups * iters * TM * TN * 2 * M * N * K;
    return flops / (ms * 1e-3) / 1e12;
  } finally {
    device.destroy();
  }
}

/** Best-of-3 GPU milliseconds per dispatch of `n` dispatches in one pass (timestamps, else the wall clock). */
async function timeDispatches(device: GPUDevice, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, wgs: readonly [number, number], n: number) {
  const stamps = device.features.has("timestamp-query") ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  let best = Infinity;
  for (let rep = 0; rep < 4; rep++) { // rep 0 warms up
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(stamps ? { timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(wgs[0], wgs[1]);
    pass.end();
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    if (stamps) {
      enc.resolveQuerySet(stamps, 0, 2, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
    }
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    let ms = (performance.now() - t0) / n;
    if (stamps) {
      await read.mapAsync(GPUMapMode.READ);
      const [b, e] = new BigInt64Array(read.getMappedRange().slice(0));
      read.unmap();
      if (e > b) ms = Number(e - b) / 1e6 / n;
    }
    read.destroy();
    if (rep > 0) best = Math.min(best, ms);
  }
  return best;
}

if (import.meta.main) {
  let mma: number | string;
  try {
    mma = await mmaPeak(Deno.args[0] ?? "dawn");
  } catch (e) {
    mma = `MMA probe failed: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`;
  }
  console.log(JSON.stringify({ mma }));
  Deno.exit(0); // Dawn's addon can keep the process alive
}
