/**
 * Reproduces (or not) the exit abort of Deno's built-in WebGPU without any library code:
 * open navigator.gpu's device, run one tiny compute kernel, read it back, optionally destroy the device,
 * and exit. `deno run -A scripts/native_exit_repro.ts [--no-destroy] [--exit=natural|deno-exit]`.
 * scripts/native_exit_loop.sh runs it in a loop, alone and with a second process beside it.
 */
const args = new Set(Deno.args);
const adapter = await navigator.gpu.requestAdapter();
if (!adapter) { console.log("no adapter"); Deno.exit(3); }
const device = await adapter.requestDevice();
const code = `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { x[g.x] = f32(g.x) * 2.0; }`;
const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
const buf = device.createBuffer({ size: 256 * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
const read = device.createBuffer({ size: 256 * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const enc = device.createCommandEncoder();
const pass = enc.beginComputePass();
pass.setPipeline(pipeline);
pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
pass.dispatchWorkgroups(4);
pass.end();
enc.copyBufferToBuffer(buf, 0, read, 0, 1024);
device.queue.submit([enc.finish()]);
await read.mapAsync(GPUMapMode.READ);
const v = new Float32Array(read.getMappedRange().slice(0));
read.unmap();
if (v[255] !== 510) { console.log("wrong", v[255]); Deno.exit(2); }
if (!args.has("--no-destroy")) { buf.destroy(); read.destroy(); device.destroy(); }
console.log("ok");
if (args.has("--exit=deno-exit")) Deno.exit(0);
