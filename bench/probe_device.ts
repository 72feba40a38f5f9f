/**
 * `deno run -A bench/probe_device.ts`: prints what each WebGPU provider exposes (adapter, features, key
 * limits, subgroup-matrix configs) and checks which WGSL spelling of the experimental subgroup-matrix builtins
 * the Dawn build accepts, with a 16×16×16 f16→f32 product verified against the CPU. Independent of the library
 * (raw WebGPU) so it can diagnose a machine before anything else runs.
 */
const KEYS = ["maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupsPerDimension", "maxSubgroupSize", "minSubgroupSize"];

// deno-lint-ignore no-explicit-any
async function describe(name: string, gpu: any) {
  const a = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!a) { console.log(`${name}: no adapter`); return; }
  const info = a.info ?? {};
  console.log(`${name}: ${info.description || info.device} (${info.vendor}, ${info.architecture})`);
  console.log(`  features: ${[...a.features].sort().join(" ")}`);
  console.log(`  limits: ${KEYS.map((k) => `${k}=${a.limits[k]}`).join(" ")}`);
  if (info.subgroupMinSize) console.log(`  subgroup sizes: ${info.subgroupMinSize}..${info.subgroupMaxSize}`);
  if (info.subgroupMatrixConfigs) console.log(`  subgroupMatrixConfigs: ${JSON.stringify([...info.subgroupMatrixConfigs])}`);
  if (!a.features.has("chromium-experimental-subgroup-matrix")) return;
  const feats = ["chromium-experimental-subgroup-matrix", "shader-f16", "subgroups"].filter((f) => a.features.has(f));
  const d = await a.requestDevice({ requiredFeatures: feats });
  const variants: Record<string, string> = {
    "bool-layout": `
      let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&A, 0u, false, 16u);
      let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&Bm, 0u, false, 16u);
      var acc = subgroup_matrix_result<f32, 16, 16>();
      acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
      subgroupMatrixStore(&C, 0u, acc, false, 16u);`,
    "template-layout": `
      let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&A, 0u, 16u);
      let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Bm, 0u, 16u);
      var acc = subgroup_matrix_result<f32, 16, 16>();
      acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
      subgroupMatrixStore<row_major>(&C, 0u, acc, 16u);`,
  };
  const A = new Float32Array(256).map((_, i) => ((i * 7) % 13) / 13 - 0.5);
  const Bv = new Float32Array(256).map((_, i) => ((i * 5) % 11) / 11 - 0.5);
  const want = new Float32Array(256);
  for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) {
    let s = 0; for (let kk = 0; kk < 16; kk++) s += A[i * 16 + kk] * Bv[kk * 16 + j]; want[i * 16 + j] = s;
  }
  for (const [vname, body] of Object.entries(variants)) {
    const code = `enable f16;\nenable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> Bm: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(32) fn main() {${body}\n}`;
    d.pushErrorScope("validation");
    const m = d.createShaderModule({ code });
    const ci = await m.getCompilationInfo();
    const errs = ci.messages.filter((x: { type: string }) => x.type === "error");
    if (errs.length) { await d.popErrorScope(); console.log(`  MMA ${vname}: compile error: ${errs[0].message.split("\n")[0]}`); continue; }
    const p = d.createComputePipeline({ layout: "auto", compute: { module: m, entryPoint: "main" } });
    const half = (x: Float32Array) => { const h = new Uint16Array(x.length); const f = new Float32Array(1), u = new Uint32Array(f.buffer);
      x.forEach((v, i) => { f[0] = v; const b = u[0]; const e = ((b >>> 23) & 0xff) - 127 + 15; const mant = (b >>> 13) & 0x3ff;
        h[i] = ((b >>> 16) & 0x8000) | (e <= 0 ? 0 : (e << 10) | mant); }); return h; };
    const mk = (data: ArrayBufferView, usage: number) => { const b = d.createBuffer({ size: data.byteLength, usage: usage | GPUBufferUsage.COPY_DST }); d.queue.writeBuffer(b, 0, data); return b; };
    const bA = mk(half(A), GPUBufferUsage.STORAGE), bB = mk(half(Bv), GPUBufferUsage.STORAGE);
    const bC = d.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const rd = d.createBuffer({ size: 1024, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = d.createCommandEncoder(); const pass = enc.beginComputePass(); pass.setPipeline(p);
    pass.setBindGroup(0, d.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [bA, bB, bC].map((b, i) => ({ binding: i, resource: { buffer: b } })) }));
    pass.dispatchWorkgroups(1); pass.end(); enc.copyBufferToBuffer(bC, 0, rd, 0, 1024); d.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ); const got = new Float32Array(rd.getMappedRange().slice(0));
    const err = await d.popErrorScope();
    let maxErr = 0; got.forEach((g, i) => { maxErr = Math.max(maxErr, Math.abs(g - want[i])); });
    console.log(`  MMA ${vname}: ${err ? "error " + err.message : "ok"}, max err ${maxErr.toExponential(2)}`);
  }
  d.destroy();
}

try {
  const m = await import("webgpu");
  Object.assign(globalThis, m.globals);
  await describe("dawn", m.create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]));
} catch (e) { console.log(`dawn: ${(e as Error).message}`); }
// deno-lint-ignore no-explicit-any
await describe("native", (navigator as any).gpu);
