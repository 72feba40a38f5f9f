/**
 * Reproduces (or not) the exit abort of Deno's built-in WebGPU without any library code: open a WebGPU
 * device, run K tiny compute kernels (each its own shader, so its own LLVM compile on lavapipe), read the
 * result back, optionally release everything, and exit. Each switch isolates one suspect of the abort:
 *
 *   deno run -A scripts/native_exit_repro.ts [switches]
 *     --kernels=K         distinct shaders compiled and run (default 1)
 *     --rounds=R          submit (every kernel + the readback) R times (default 1)
 *     --readback=map|done|none   mapAsync readback (default) / only await onSubmittedWorkDone / exit with work in flight
 *     --no-destroy        leave the buffers and the device alive at exit (default: destroy them)
 *     --drain             after the destroys, await queue.onSubmittedWorkDone (drain before exit)
 *     --wait=MS           sleep MS before exiting
 *     --exit=natural|deno-exit   end of the module (default) or Deno.exit(0)
 *     --source=native|dawn       navigator.gpu (default) or Dawn from npm `webgpu`
 *     --load-dawn         also load Dawn's addon (unused) beside navigator.gpu
 *     --drop-dawn         do not hold Dawn's GPU instance (it may be collected while its events are pumped)
 *     --test              run the same work inside a Deno.test (for `deno test`)
 *     --worker[=close]    run the work in a Worker; main terminates it (or it closes itself) and exits at once
 *     --gap=MS            with --worker: main waits MS after the worker's "done" before terminating it and exiting
 *     --gc                with --v8-flags=--expose-gc: drop and collect the pipelines before the end
 *
 * scripts/native_exit_count.sh runs it in a loop and counts exit codes; scripts/NATIVE_EXIT.md has the findings.
 */
const WORKER = "native-exit-worker";
const inWorker = (globalThis as { name?: string }).name === WORKER;
const opts = new Map<string, string>();
function parse(args: readonly string[]): void {
  for (const a of args) {
    const [k, v] = a.replace(/^--/, "").split("=");
    opts.set(k, v ?? "true");
  }
}
if (!inWorker) parse(Deno.args);

async function gpu(): Promise<GPU> {
  if (opts.get("source") === "dawn" || opts.has("load-dawn")) {
    const m = await import("webgpu");
    Object.assign(globalThis, m.globals);
    const dawn = m.create(["enable-dawn-features=allow_unsafe_apis"]) as GPU;
    // held for the whole run, as the library holds it: a collected instance is a use-after-free in Dawn's event pump
    if (!opts.has("drop-dawn")) (globalThis as Record<string, unknown>).dawnInstance = dawn;
    if (opts.get("source") === "dawn") return dawn;
  }
  return navigator.gpu;
}

async function work(): Promise<void> {
  const kernels = Number(opts.get("kernels") ?? 1);
  const readback = opts.get("readback") ?? "map";
  const rounds = Number(opts.get("rounds") ?? 1);
  const adapter = await (await gpu()).requestAdapter();
  if (!adapter) { console.log("no adapter"); Deno.exit(3); }
  const device = await adapter.requestDevice();
  const buf = device.createBuffer({ size: 256 * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 256 * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const pipelines: GPUComputePipeline[] = [];
  for (let k = 0; k < kernels; k++) {
    // a distinct constant per kernel: a distinct shader, so nothing is shared between the compiles
    const code = `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { x[g.x] = f32(g.x) * 2.0 + ${k}.0 - ${k}.0; }`;
    pipelines.push(device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } }));
  }
  for (let r = 0; r < rounds; r++) {
    const enc = device.createCommandEncoder();
    for (const pipeline of pipelines) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
      pass.dispatchWorkgroups(4);
      pass.end();
    }
    enc.copyBufferToBuffer(buf, 0, read, 0, 1024);
    device.queue.submit([enc.finish()]);
    if (readback === "map") {
      await read.mapAsync(GPUMapMode.READ);
      const v = new Float32Array(read.getMappedRange().slice(0));
      read.unmap();
      if (v[255] !== 510) { console.log("wrong", v[255]); Deno.exit(2); }
    } else if (readback === "done") {
      await device.queue.onSubmittedWorkDone();
    }
  }
  if (!opts.has("no-destroy")) { buf.destroy(); read.destroy(); device.destroy(); }
  if (opts.has("drain")) await device.queue.onSubmittedWorkDone().catch(() => {});
  // with --v8-flags=--expose-gc: collect the dropped GPU objects now, on this thread, long before the exit
  const gc = (globalThis as { gc?: () => void }).gc;
  if (opts.has("gc") && gc) { pipelines.length = 0; gc(); await new Promise((r) => setTimeout(r, 10)); gc(); }
  const wait = Number(opts.get("wait") ?? 0);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  console.log("ok");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (inWorker) {
  // the GPU work on a worker thread, as `deno test` runs a test file: its thread ends while the main one exits
  const scope = self as unknown as { onmessage: (e: MessageEvent<string[]>) => void; postMessage(m: string): void; close(): void };
  scope.onmessage = async (e) => {
    parse(e.data);
    await work();
    scope.postMessage("done");
    if (opts.get("worker") === "close") scope.close();
  };
} else if (opts.has("worker")) {
  const w = new Worker(import.meta.url, { type: "module", name: WORKER });
  const done = new Promise((r) => { w.onmessage = r; });
  w.postMessage(Deno.args);
  await done;
  const gap = Number(opts.get("gap") ?? 0);
  if (gap > 0) await sleep(gap);
  if (opts.get("worker") !== "close") w.terminate();
  if (opts.get("exit") === "deno-exit") Deno.exit(0);
} else if (opts.has("test")) {
  Deno.test("kernels", work);
} else {
  await work();
  if (opts.get("exit") === "deno-exit") Deno.exit(0);
}
