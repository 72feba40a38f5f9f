/**
 * The GPU executor: realizes Tensor graphs with the kernels lib/lower plans.
 *
 * realize(roots): plan every computed node (planNode; one plan may define several nodes, e.g. out and lse of
 * one fused call), order the plans so inputs come first, allocate this realize's buffers (outputs, scratch,
 * uniforms, readback), record ALL launches in ONE command encoder, submit once, read back the roots and the
 * plans' check words, then destroy this realize's buffers (also on failure).
 *
 * Kept for the executor's lifetime: constant tensors' uploads (WeakMap per Tensor: block tables and captured
 * tensors are not re-uploaded every call; the buffer is destroyed when the Tensor is collected or the executor
 * disposed), `persistent` data uploads (per array object, same rule), and pipelines keyed by WGSL source
 * (in-flight compiles are shared).
 */
import { Effect } from "effect";
import type { Tensor, TypedData } from "../tensor/tensor.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "../lower/plan.ts";
import { hostInputs, planNode } from "../lower/plan_node.ts";
import { knownValue, recordValue } from "../tensor/host_values.ts";
import type { DeviceInfo, Executor } from "./executor.ts";
import { poisonEnabled } from "./debug.ts";
import { createTuner } from "./autotune.ts";
import { readEnv } from "./env.ts";
import { bytesPerElement, f16BitsOf, f16FromBits } from "../tensor/dtype.ts";
import { BufferTooLarge, DeviceLost, type FlexError, KernelCompileError, OutOfDeviceMemory } from "../errors.ts";

export interface GpuExecutor extends Executor {
  /** Distinct compiled (or compiling) pipelines: a new sequence length must not add one. */
  pipelineCacheSize(): number;
  /** Buffers of realizes still alive (0 between realizes: nothing leaks). */
  liveBuffers(): number;
  /** Uploads kept across realizes (constants, persistent data). */
  cachedBuffers(): number;
  /** Destroys every cached buffer and forgets the pipelines. */
  dispose(): void;
}

const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

const traceWaits = !!readEnv("FLEX_TRACE_WAITS");

/** Debug aid (FLEX_TRACE_WAITS=1): names a device promise that has not settled after 5 s. */
function waitFor<T>(label: string, p: Promise<T>): Promise<T> {
  if (!traceWaits) return p;
  const t = setTimeout(() => console.error(`flex gpu executor: still waiting for ${label}`), 5000);
  return p.finally(() => clearTimeout(t));
}

function isFlexError(e: unknown): e is FlexError {
  return typeof e === "object" && e !== null && "_tag" in e && e instanceof Error;
}

function layoutSignature(bindings: readonly Binding[]): string {
  return bindings.map((b) => (b.kind === "input" || b.kind === "data" ? "r" : b.kind === "uniform" ? "u" : "w")).join("");
}

/** One launch ready to encode. */
interface Ready {
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
}

/** The buffers and launches of one realize. */
interface Prepared {
  readonly launches: Ready[];
  readonly outputs: Map<Tensor, GPUBuffer>;
  readonly checks: { buffer: GPUBuffer; fail: (value: number) => Error }[];
  readonly scoped: GPUBuffer[];
}

export function createGpuExecutor(device: GPUDevice, deviceCaps: Capabilities, info: DeviceInfo): GpuExecutor {
  // the executor's own copy: autotune winners land in `tuned`, which planning reads
  const caps = { ...deviceCaps, tuned: new Map<string, unknown>() };
  const pipelines = new Map<string, Promise<GPUComputePipeline>>();
  const layouts = new Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  const plans = new WeakMap<Tensor, NodePlan>();
  let uploads = new WeakMap<object, GPUBuffer>();
  const cached = new Set<GPUBuffer>();
  const collector = new FinalizationRegistry<GPUBuffer>((buffer) => {
    if (cached.delete(buffer)) buffer.destroy();
  });
  let live = 0;
  let lost: string | undefined;
  device.lost?.then((i) => { lost = i.message || i.reason || "device lost"; }).catch(() => {});

  // ------------------------------------------------------------------ buffers
  const checkSize = (bytes: number, storage: boolean) => {
    const limit = Math.min(caps.limits.maxBufferSize, storage ? caps.limits.maxStorageBufferBindingSize : Infinity);
    if (bytes > limit) {
      throw new BufferTooLarge({
        bytes, limit,
        message: `a ${bytes}-byte buffer exceeds the device's limit of ${limit} bytes ` +
          `(maxBufferSize / maxStorageBufferBindingSize); use smaller batch, heads or lengths`,
      });
    }
  };

  const createScoped = (scoped: GPUBuffer[], bytes: number, usage: number, storage = true): GPUBuffer => {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    checkSize(size, storage);
    const buffer = device.createBuffer({ size, usage });
    live++;
    scoped.push(buffer);
    return buffer;
  };

  const destroyScoped = (scoped: GPUBuffer[]) => {
    for (const b of scoped.splice(0)) { b.destroy(); live--; }
  };

  // An empty upload is skipped: Deno's built-in WebGPU panics on a 0-byte writeBuffer.
  const write = (buffer: GPUBuffer, data: ArrayBufferView) => {
    if (data.byteLength > 0) device.queue.writeBuffer(buffer, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  };

  /** A constant's bytes as the kernels read them (f16: binary16 bits, padded to whole words). */
  const deviceBytes = (t: Tensor, d: TypedData): ArrayBufferView => {
    if (t.dtype !== "f16") return d;
    const bits = f16BitsOf(d);
    if (bits.length % 2 === 0) return bits;
    const padded = new Uint16Array(bits.length + 1);
    padded.set(bits);
    return padded;
  };

  /** An upload kept while `key` lives (WeakMap + FinalizationRegistry) or until dispose(). */
  const cachedUpload = (key: object, data: ArrayBufferView): GPUBuffer => {
    const hit = uploads.get(key);
    if (hit) return hit;
    const size = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
    checkSize(size, true);
    const buffer = device.createBuffer({ size, usage: STORAGE_USAGE() });
    write(buffer, data);
    uploads.set(key, buffer);
    cached.add(buffer);
    collector.register(key, buffer);
    return buffer;
  };

  // ------------------------------------------------------------------ pipelines
  const layoutFor = (sig: string) => {
    let l = layouts.get(sig);
    if (!l) {
      const group = device.createBindGroupLayout({
        entries: [...sig].map((k, i) => ({
          binding: i,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: k === "r" ? "read-only-storage" : k === "u" ? "uniform" : "storage" } as GPUBufferBindingLayout,
        })),
      });
      l = { group, pipeline: device.createPipelineLayout({ bindGroupLayouts: [group] }) };
      layouts.set(sig, l);
    }
    return l;
  };

  const compile = async (launch: KernelLaunch, sig: string): Promise<GPUComputePipeline> => {
    const module = device.createShaderModule({ code: launch.code, label: launch.label });
    const info = await waitFor("getCompilationInfo", module.getCompilationInfo());
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length > 0) {
      const lines = errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join("\n");
      throw new KernelCompileError({ message: `WGSL of "${launch.label}" failed to compile:\n${lines}`, source: launch.code });
    }
    // Synchronous creation inside an error scope: Dawn's createComputePipelineAsync was seen never to
    // settle on a loaded lavapipe, and the module has already compiled cleanly here.
    device.pushErrorScope("validation");
    const pipeline = device.createComputePipeline({
      label: launch.label,
      layout: layoutFor(sig).pipeline,
      compute: { module, entryPoint: launch.entryPoint },
    });
    const failed = await waitFor("popErrorScope(pipeline)", device.popErrorScope());
    if (failed) {
      throw new KernelCompileError({ message: `pipeline "${launch.label}" failed: ${failed.message}`, source: launch.code });
    }
    return pipeline;
  };

  const pipelineFor = (launch: KernelLaunch, sig: string): Promise<GPUComputePipeline> => {
    const key = `${sig}|${launch.entryPoint}|${launch.code}`;
    let p = pipelines.get(key);
    if (!p) {
      p = compile(launch, sig);
      pipelines.set(key, p);
      p.catch(() => pipelines.delete(key)); // a failed compile is not cached
    }
    return p;
  };

  // ------------------------------------------------------------------ planning
  const planFor = (t: Tensor): NodePlan => {
    let p = plans.get(t);
    if (!p) {
      p = planNode(t, caps);
      for (const d of p.defines) plans.set(d, p);
    }
    return p;
  };

  /** Plans needed for `roots`, inputs first. */
  const schedule = (roots: readonly Tensor[]): NodePlan[] => {
    const order: NodePlan[] = [];
    const done = new Set<NodePlan>();
    const visit = (t: Tensor) => {
      if (t.op === "const") return;
      const p = planFor(t);
      if (done.has(p)) return;
      done.add(p);
      for (const l of p.launches) for (const b of l.bindings) if (b.kind === "input") visit(b.tensor);
      order.push(p);
    };
    roots.forEach(visit);
    return order;
  };

  // ------------------------------------------------------------------ prepare: buffers, pipelines, bind groups
  const prepare = (roots: readonly Tensor[], scoped: GPUBuffer[]): Promise<Prepared> => prepareOrder(schedule(roots), scoped);

  const prepareOrder = async (order: readonly NodePlan[], scoped: GPUBuffer[]): Promise<Prepared> => {
    if (lost) throw new DeviceLost({ message: `the GPU device was lost: ${lost}` });
    const outputs = new Map<Tensor, GPUBuffer>();
    const checks: Prepared["checks"] = [];
    const poison: GPUBuffer[] = [];
    const pending: { launch: KernelLaunch; sig: string; entries: GPUBindGroupEntry[] }[] = [];

    device.pushErrorScope("out-of-memory");
    let allocError: unknown;
    try {
      for (const plan of order) {
        for (const l of plan.launches) {
          for (const b of l.bindings) {
            if (b.kind === "output" && !outputs.has(b.tensor)) {
              const buf = createScoped(scoped, b.tensor.size * bytesPerElement(b.tensor.dtype), STORAGE_USAGE());
              outputs.set(b.tensor, buf);
              poison.push(buf);
            }
          }
        }
        const scratch = new Map<string, GPUBuffer>();
        for (const l of plan.launches) {
          const entries: GPUBindGroupEntry[] = l.bindings.map((b, i) => {
            let buffer: GPUBuffer;
            switch (b.kind) {
              case "input": {
                const d = b.tensor.data;
                if (d) buffer = uploads.get(b.tensor) ?? cachedUpload(b.tensor, deviceBytes(b.tensor, d));
                else {
                  const o = outputs.get(b.tensor);
                  if (!o) throw new Error(`internal: ${b.tensor} is used before a plan defines it`);
                  buffer = o;
                }
                break;
              }
              case "output": buffer = outputs.get(b.tensor)!; break;
              case "data":
                if (b.persistent) buffer = cachedUpload(b.data, b.data);
                else { buffer = createScoped(scoped, b.data.byteLength, STORAGE_USAGE()); write(buffer, b.data); }
                break;
              case "scratch": {
                let s = scratch.get(b.name);
                if (!s) { s = createScoped(scoped, b.bytes, STORAGE_USAGE()); scratch.set(b.name, s); }
                buffer = s;
                break;
              }
              case "uniform":
                buffer = createScoped(scoped, b.data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, false);
                write(buffer, b.data);
                break;
            }
            return { binding: i, resource: { buffer } };
          });
          pending.push({ launch: l, sig: layoutSignature(l.bindings), entries });
        }
        for (const c of plan.checks) {
          const s = scratch.get(c.scratch);
          if (s) checks.push({ buffer: s, fail: c.fail });
        }
      }
    } catch (e) {
      allocError = e;
    }
    const oom = await waitFor("popErrorScope(oom)", device.popErrorScope());
    if (allocError) throw allocError;
    if (oom) throw new OutOfDeviceMemory({ message: `GPU allocation failed: ${oom.message}` });

    if (poisonEnabled()) {
      // 0x7fc07fc0 is a NaN as one f32 and as two f16 halves: an unwritten element of either dtype is NaN
      for (const buf of poison) write(buf, new Uint32Array(buf.size / 4).fill(0x7fc07fc0));
    }
    const launches: Ready[] = [];
    const compiled = await Promise.all(pending.map((p) => pipelineFor(p.launch, p.sig)));
    pending.forEach((p, i) => {
      const bindGroup = device.createBindGroup({ layout: layoutFor(p.sig).group, entries: p.entries });
      launches.push({ pipeline: compiled[i], bindGroup, workgroups: p.launch.workgroups });
    });
    return { launches, outputs, checks, scoped };
  };

  const encodeLaunches = (encoder: GPUCommandEncoder, launches: readonly Ready[]) => {
    if (launches.length === 0) return;
    const pass = encoder.beginComputePass();
    for (const l of launches) {
      pass.setPipeline(l.pipeline);
      pass.setBindGroup(0, l.bindGroup);
      pass.dispatchWorkgroups(...l.workgroups);
    }
    pass.end();
  };

  const mapRead = async (buffer: GPUBuffer): Promise<ArrayBuffer> => {
    try {
      await waitFor("mapAsync", buffer.mapAsync(GPUMapMode.READ));
    } catch (e) {
      throw new DeviceLost({ message: `reading results back failed: ${e instanceof Error ? e.message : e}${lost ? ` (${lost})` : ""}` });
    }
    const copy = buffer.getMappedRange().slice(0);
    buffer.unmap();
    return copy;
  };

  // ------------------------------------------------------------------ realize
  /**
   * Computed tensors whose values a plan packs on the host (a captured bias produced by other ops, a lazily
   * built BlockMask) are realized first, in a realize of their own, and recorded.
   */
  const resolveHostInputs = async (roots: readonly Tensor[]): Promise<void> => {
    const missing = new Set<Tensor>();
    const seen = new Set<Tensor>();
    const visit = (t: Tensor) => {
      if (t.op === "const" || seen.has(t)) return;
      seen.add(t);
      for (const h of hostInputs(t)) if (knownValue(h) === undefined) missing.add(h);
      t.inputs.forEach(visit);
    };
    roots.forEach(visit);
    if (missing.size === 0) return;
    const list = [...missing];
    const values = await realizeAsync(list);
    list.forEach((t, i) => recordValue(t, values[i]));
  };

  const realizeAsync = async (roots: readonly Tensor[]): Promise<TypedData[]> => {
    await resolveHostInputs(roots);
    await tune(roots);
    const scoped: GPUBuffer[] = [];
    try {
      const prep = await prepare(roots, scoped);
      device.pushErrorScope("validation");
      const encoder = device.createCommandEncoder({ label: "flex realize" });
      encodeLaunches(encoder, prep.launches);
      const reads = new Map<Tensor, GPUBuffer>();
      for (const r of roots) {
        const src = prep.outputs.get(r);
        if (!src || reads.has(r)) continue;
        const dst = createScoped(scoped, src.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, false);
        encoder.copyBufferToBuffer(src, 0, dst, 0, src.size);
        reads.set(r, dst);
      }
      const checkReads = prep.checks.map((c) => {
        const dst = createScoped(scoped, 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, false);
        encoder.copyBufferToBuffer(c.buffer, 0, dst, 0, 4);
        return { dst, fail: c.fail };
      });
      device.queue.submit([encoder.finish()]);
      const invalid = await waitFor("popErrorScope(encode)", device.popErrorScope());
      if (invalid) throw new Error(`internal: WebGPU validation failed while encoding a realize: ${invalid.message}`);
      for (const c of checkReads) {
        const v = new Uint32Array(await mapRead(c.dst))[0];
        if (v !== 0) throw c.fail(v);
      }
      const values = new Map<Tensor, TypedData>();
      for (const [t, buf] of reads) {
        const bytes = (await mapRead(buf)).slice(0, t.size * bytesPerElement(t.dtype));
        values.set(t, t.dtype === "i32" ? new Int32Array(bytes) : t.dtype === "f16" ? f16FromBits(new Uint16Array(bytes)) : new Float32Array(bytes));
      }
      return roots.map((r) => {
        const d = r.data;
        if (d) return d.slice() as TypedData;
        return values.get(r)!.slice() as TypedData;
      });
    } finally {
      destroyScoped(scoped);
    }
  };

  /** The plans a plan's inputs need, in order (a tuning candidate's prerequisites). */
  const scheduleInputs = (plan: NodePlan): NodePlan[] => {
    const inputs = plan.launches.flatMap((l) => l.bindings.flatMap((b) => (b.kind === "input" ? [b.tensor] : [])));
    return schedule(inputs.filter((t) => !plan.defines.includes(t)));
  };
  const tune = createTuner(caps, { scheduleInputs, time: (order, iters) => timeOrder(order, iters), device: `${info.adapter} | ${info.provider}` });

  const profileAsync = async (roots: readonly Tensor[], iters: number): Promise<number> => {
    await realizeAsync(roots); // compiles and warms
    return await timeOrder(schedule(roots), iters);
  };

  /** GPU ms per run of `order` (iters runs in one submit), the plans' buffers allocated once. */
  const timeOrder = async (order: readonly NodePlan[], iters: number): Promise<number> => {
    const scoped: GPUBuffer[] = [];
    try {
      const prep = await prepareOrder(order, scoped);
      if (prep.launches.length === 0) return 0;
      await device.queue.onSubmittedWorkDone();
      const encoder = device.createCommandEncoder({ label: "flex profile" });
      // GPU time from timestamp queries when the device has them (empty passes around the work mark its
      // start and end); the wall clock around submit → onSubmittedWorkDone otherwise, which also counts
      // the submit and the completion callback's latency.
      const stamps = device.features.has("timestamp-query") ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
      if (stamps) encoder.beginComputePass({ timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 0 } }).end();
      for (let i = 0; i < iters; i++) encodeLaunches(encoder, prep.launches);
      let readTimes: GPUBuffer | undefined;
      if (stamps) {
        encoder.beginComputePass({ timestampWrites: { querySet: stamps, endOfPassWriteIndex: 1 } }).end();
        const resolved = createScoped(scoped, 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, false);
        readTimes = createScoped(scoped, 16, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, false);
        encoder.resolveQuerySet(stamps, 0, 2, resolved, 0);
        encoder.copyBufferToBuffer(resolved, 0, readTimes, 0, 16);
      }
      const t0 = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const wall = (performance.now() - t0) / Math.max(1, iters);
      if (!stamps || !readTimes) return wall;
      const [begin, end] = new BigInt64Array(await mapRead(readTimes));
      stamps.destroy();
      const gpuMs = Number(end - begin) / 1e6 / Math.max(1, iters);
      // a device may report zeros (timestamps quantized or disabled): fall back to the wall clock then
      return gpuMs > 0 ? gpuMs : wall;
    } finally {
      destroyScoped(scoped);
    }
  };

  const toEffect = <A>(run: () => Promise<A>): Effect.Effect<A, FlexError> =>
    Effect.flatMap(
      Effect.promise(() => run().then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))),
      (r) => (r.ok ? Effect.succeed(r.value) : isFlexError(r.error) ? Effect.fail(r.error) : Effect.die(r.error)),
    );

  return {
    info,
    caps,
    realize: (roots) => toEffect(() => realizeAsync(roots)),
    profile: (roots, iters) => toEffect(() => profileAsync(roots, iters)),
    pipelineCacheSize: () => pipelines.size,
    liveBuffers: () => live,
    cachedBuffers: () => cached.size,
    dispose: () => {
      for (const b of cached) b.destroy();
      cached.clear();
      uploads = new WeakMap();
      pipelines.clear();
    },
  };
}
