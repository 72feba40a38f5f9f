/**
 * The GPU executor: realizes Tensor graphs with the kernels lib/lower plans.
 *
 * realize(roots): plan every computed node (planNode; one plan may define several nodes, e.g. out and lse of
 * one fused call), order the plans so inputs come first, allocate this realize's buffers (outputs, scratch,
 * uniforms, readback), record ALL launches in ONE command encoder, submit once, read back the roots and the
 * plans' check words, then destroy this realize's buffers (also on failure) — except the readbacks, which a
 * successful realize leaves in a small pool for the next one (gpuExecutorTuning.poolReadbacks).
 *
 * Degenerate nodes never reach the device: a tensor with no elements (B = 0 or H = 0) realizes to an empty
 * array, and a flex node (out, lse, a gradient) whose attention problem is empty realizes to zeros (the
 * gradient of a captured bias over no scores), without a buffer, an upload or a dispatch; a launch with a
 * zero workgroup count is never encoded. Sizes are checked against the device's limits for the whole
 * realize before its first buffer is created (BufferTooLarge names the limit; nothing is truncated).
 *
 * Kept for the executor's lifetime: constant tensors' uploads (WeakMap per Tensor: block tables and captured
 * tensors are not re-uploaded every call; the buffer is destroyed when the Tensor is collected or the executor
 * disposed), `persistent` data uploads (per array object, same rule), and pipelines keyed by WGSL source
 * (in-flight compiles are shared). Small `persistent` arrays (≤ 64 KiB: packed block tables and captures) are
 * also shared by CONTENT: a call that builds equal tables again (the default noop BlockMask is built per
 * flexAttention call) reuses the upload instead of adding one per call until the garbage collector runs; the
 * shared upload is destroyed once every array that used it is collected.
 */
import { Effect } from "effect";
import type { Tensor, TypedData } from "../tensor/tensor.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "../lower/plan.ts";
import { hostInputs, planNode } from "../lower/plan_node.ts";
import { knownValue, recordValue } from "../tensor/host_values.ts";
import type { DeviceInfo, Executor } from "./executor.ts";
import type { FlexCall } from "../attention/flex_attention.ts";
import type { FlexGradArg } from "../passes/flex_grad.ts";
import { launchTraceSink, poisonEnabled, realizeTraceSink } from "./debug.ts";
import { createTuner } from "./autotune.ts";
import { runPasses } from "../passes/pipeline.ts";
import { readEnv } from "./env.ts";
import { dawnWaitStartsNow } from "./dawn_poll.ts";
import { createTiers, type TierStats, tieringEnabled } from "./tiered_compile.ts";
import { logDebug, logInfo, ms } from "./log.ts";
import { bytesPerElement, f16BitsOf, f16FromBits, fromValues } from "../tensor/dtype.ts";
import { BufferTooLarge, DeviceLost, type FlexError, KernelCompileError, OutOfDeviceMemory } from "../errors.ts";

/** Smallest buffer the executor creates (see sizeOf in createGpuExecutor). */
export const MIN_BUFFER_BYTES = 512;

export interface GpuExecutor extends Executor {
  /** Distinct compiled (or compiling) pipelines: a new sequence length must not add one. */
  pipelineCacheSize(): number;
  /** Buffers of realizes still alive (0 between realizes: nothing leaks). */
  liveBuffers(): number;
  /** Uploads kept across realizes (constants, persistent data). */
  cachedBuffers(): number;
  /** Destroys every cached buffer and forgets the pipelines. */
  dispose(): void;
  /** Resolves when every background compile of tiered plans started so far has settled (lib/runtime/tiered_compile.ts). */
  settleCompiles(): Promise<void>;
  /** Skips the background compiles not started yet and awaits those in flight (before the device is destroyed). */
  drainCompiles(): Promise<void>;
  /** Realizes of tiered plans answered by their quick plan / by the plan itself, and background compiles in flight. */
  tierStats(): TierStats;
}

/**
 * Knobs of the GPU executor (the bench flips them for A/B runs). poolReadbacks: a realize's MAP_READ buffers are
 * kept for the next realize of the same sizes instead of destroyed (at most READBACK_POOL_BYTES, buffers up to
 * READBACK_POOL_MAX_BUFFER): a fresh 1 MiB readback cost ~0.5 ms more per copy+map cycle than a reused one on
 * lavapipe (createBlockMask S = 32768 reads its tables through one).
 */
export const gpuExecutorTuning: { poolReadbacks: boolean } = { poolReadbacks: true };
const READBACK_POOL_BYTES = 32 * 2 ** 20, READBACK_POOL_MAX_BUFFER = 8 * 2 ** 20;

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

/** The FlexCall behind a flex-family node (forward out / lse, a gradient), else undefined. */
function flexCallOf(t: Tensor): FlexCall | undefined {
  if (t.op === "flexOut" || t.op === "flexLse" || t.op === "flexMaxScore") return t.arg as FlexCall;
  if (t.op === "flexGrad") return (t.arg as FlexGradArg).bwd.call;
  if (t.op === "flexGradPart") return flexCallOf(t.inputs[0]);
  return undefined;
}

const trivialValues = new WeakMap<Tensor, TypedData | null>();

/**
 * The value of a node that needs no kernel, else undefined: no elements → an empty array; a flex node whose
 * q, k or v is empty (B = 0 or H = 0) → zeros (there is no score to differentiate a captured tensor by).
 */
export function trivialValue(t: Tensor): TypedData | undefined {
  if (t.op === "const") return undefined;
  let v = trivialValues.get(t);
  if (v === undefined) {
    const call = flexCallOf(t);
    v = t.size === 0 || (call && (call.q.size === 0 || call.k.size === 0 || call.v.size === 0))
      ? fromValues(t.dtype, new Float32Array(t.size))
      : null;
    trivialValues.set(t, v);
  }
  return v ?? undefined;
}

/** Persistent arrays up to this size are shared by content (exact: the key is their bytes). */
const CONTENT_KEY_MAX_BYTES = 64 * 1024;
const contentKeys = new WeakMap<object, string>();

/** An exact key of a small array's bytes (cached per array object), else undefined. */
function contentKeyOf(data: ArrayBufferView): string | undefined {
  if (data.byteLength > CONTENT_KEY_MAX_BYTES || data.byteLength % 2 !== 0) return undefined;
  let key = contentKeys.get(data);
  if (key === undefined) {
    const units = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
    key = "";
    for (let i = 0; i < units.length; i += 4096) key += String.fromCharCode(...units.subarray(i, i + 4096));
    contentKeys.set(data, key);
  }
  return key;
}

/**
 * The bind-group layout a launch needs: one letter per binding (r read-only storage, w storage, u uniform). A
 * uniform's size is part of it (and of the layout's minBindingSize): Deno's built-in WebGPU (wgpu) was seen to
 * check a uniform's size against another pipeline's shader when pipelines of different uniform sizes share
 * one layout object ("bound with size 32 where the shader expects 160").
 */
function layoutSignature(bindings: readonly Binding[]): string {
  return bindings.map((b) => (b.kind === "input" || b.kind === "data" || (b.kind === "scratch" && b.readOnly) ? "r" : b.kind === "uniform" ? `u${b.data.byteLength}.` : "w")).join("");
}

/** One launch ready to encode. */
interface Ready {
  readonly label: string;
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
  /** prepare's error scopes, popped, not yet awaited (judgePrepare). */
  readonly scopes: { readonly oom: Promise<GPUError | null>; readonly bind: Promise<GPUError | null> };
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
  /** The buffer size the executor creates for `bytes`: whole words, and at least MIN_BUFFER_BYTES — a pipeline
   * that loads subgroup matrices straight from a storage array gets a minimum binding size of one 16×16 f16
   * matrix from Dawn (512 bytes), which a tiny K / V (Skv = 1, B·Hkv·Skv·D < 256) would fail at bind time
   * (found by the fuzz on the H200). The kernels never read past the tensor's own elements. */
  const sizeOf = (bytes: number) => Math.max(MIN_BUFFER_BYTES, Math.ceil(bytes / 4) * 4);

  const checkSize = (bytes: number, storage: boolean, what = "a buffer") => {
    const l = caps.limits;
    const [name, limit] = storage && l.maxStorageBufferBindingSize < l.maxBufferSize
      ? ["maxStorageBufferBindingSize", l.maxStorageBufferBindingSize]
      : ["maxBufferSize", l.maxBufferSize];
    if (bytes > limit) {
      throw new BufferTooLarge({
        bytes, limit,
        message: `${what} needs ${bytes} bytes, over the device's ${name} of ${limit} bytes ` +
          `(${(limit / 2 ** 20).toFixed(limit % 2 ** 20 === 0 ? 0 : 1)} MiB); nothing was allocated. ` +
          `Use a smaller batch, fewer heads or shorter sequences, or split the call along batch / heads`,
      });
    }
  };

  /**
   * Every buffer a realize of `order` would create (outputs, uploads, scratch, uniforms, readbacks), checked
   * against the limits BEFORE the first allocation: an oversized realize creates nothing.
   */
  const checkSizes = (order: readonly NodePlan[]) => {
    const seen = new Set<Tensor>();
    for (const plan of order) {
      for (const l of plan.launches) {
        for (const b of l.bindings) {
          switch (b.kind) {
            case "output":
              if (!seen.has(b.tensor)) {
                seen.add(b.tensor);
                // storage, and its readback (maxBufferSize) has the same size
                checkSize(sizeOf(b.tensor.size * bytesPerElement(b.tensor.dtype)), true, `the output ${b.tensor}`);
              }
              break;
            case "input": {
              const d = b.tensor.data ?? trivialValue(b.tensor);
              if (d && !seen.has(b.tensor) && !uploads.has(b.tensor)) {
                seen.add(b.tensor);
                checkSize(sizeOf(b.tensor.size * bytesPerElement(b.tensor.dtype)), true, `the input ${b.tensor}`);
              }
              break;
            }
            case "data": checkSize(sizeOf(b.data.byteLength), true, `packed data of "${l.label}"`); break;
            case "scratch": checkSize(sizeOf(b.bytes), true, `scratch "${b.name}" of "${l.label}"`); break;
            case "uniform": checkSize(sizeOf(b.data.byteLength), false, `uniforms of "${l.label}"`); break;
          }
        }
      }
    }
  };

  const createScoped = (scoped: GPUBuffer[], bytes: number, usage: number, storage = true): GPUBuffer => {
    const size = sizeOf(bytes);
    checkSize(size, storage);
    const buffer = device.createBuffer({ size, usage });
    live++;
    scoped.push(buffer);
    return buffer;
  };

  const destroyScoped = (scoped: GPUBuffer[]) => {
    for (const b of scoped.splice(0)) { b.destroy(); live--; }
  };

  // readbacks kept between realizes (gpuExecutorTuning.poolReadbacks), by buffer size; a taken one belongs to its
  // realize (in its scoped list: destroyed on failure) until pooled again after its map
  let readbackPool = new Map<number, GPUBuffer[]>();
  let pooledBytes = 0;
  const readback = (scoped: GPUBuffer[], bytes: number): GPUBuffer => {
    const hit = gpuExecutorTuning.poolReadbacks ? readbackPool.get(sizeOf(bytes))?.pop() : undefined;
    if (!hit) return createScoped(scoped, bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, false);
    pooledBytes -= hit.size;
    live++;
    scoped.push(hit);
    return hit;
  };
  /** Moves mapped-and-unmapped readbacks from a realize's list to the pool, while it has room. */
  const poolReadbacks = (scoped: GPUBuffer[], buffers: readonly GPUBuffer[]) => {
    if (!gpuExecutorTuning.poolReadbacks) return;
    for (const b of buffers) {
      if (b.size > READBACK_POOL_MAX_BUFFER || pooledBytes + b.size > READBACK_POOL_BYTES) continue;
      const at = scoped.indexOf(b);
      if (at < 0) continue;
      scoped.splice(at, 1);
      live--;
      pooledBytes += b.size;
      let list = readbackPool.get(b.size);
      if (!list) readbackPool.set(b.size, list = []);
      list.push(b);
    }
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
  // content-shared uploads of small persistent arrays: key → buffer and the number of live arrays using it
  let shared = new Map<string, { buffer: GPUBuffer; refs: number }>();
  let generation = 0;
  const sharedCollector = new FinalizationRegistry<{ key: string; gen: number }>(({ key, gen }) => {
    const e = gen === generation ? shared.get(key) : undefined;
    if (e && --e.refs === 0) {
      shared.delete(key);
      if (cached.delete(e.buffer)) e.buffer.destroy();
    }
  });

  /** A persistent data array's upload: shared with equal arrays when small, else its own (cachedUpload). */
  const persistentUpload = (data: Binding & { kind: "data" }): GPUBuffer => {
    const array = data.data;
    const hit = uploads.get(array);
    if (hit) return hit;
    const key = contentKeyOf(array);
    if (key === undefined) return cachedUpload(array, array);
    let e = shared.get(key);
    if (!e) {
      const buffer = device.createBuffer({ size: sizeOf(array.byteLength), usage: STORAGE_USAGE() });
      write(buffer, array);
      cached.add(buffer);
      e = { buffer, refs: 0 };
      shared.set(key, e);
    }
    e.refs++;
    uploads.set(array, e.buffer);
    sharedCollector.register(array, { key, gen: generation });
    return e.buffer;
  };

  const cachedUpload = (key: object, data: ArrayBufferView): GPUBuffer => {
    const hit = uploads.get(key);
    if (hit) return hit;
    const size = sizeOf(data.byteLength);
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
        entries: (sig.match(/r|w|u\d+\./g) ?? []).map((k, i) => ({
          binding: i,
          visibility: GPUShaderStage.COMPUTE,
          buffer: k === "r" ? { type: "read-only-storage" } : k === "w" ? { type: "storage" }
            : { type: "uniform", minBindingSize: Math.max(4, Math.ceil(Number(k.slice(1, -1)) / 4) * 4) },
        } as GPUBindGroupLayoutEntry)),
      });
      l = { group, pipeline: device.createPipelineLayout({ bindGroupLayouts: [group] }) };
      layouts.set(sig, l);
    }
    return l;
  };

  /** The module of a launch, its WGSL errors raised as KernelCompileError. */
  const moduleOf = async (launch: KernelLaunch): Promise<GPUShaderModule> => {
    const module = device.createShaderModule({ code: launch.code, label: launch.label });
    const info = await waitFor("getCompilationInfo", module.getCompilationInfo());
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length > 0) {
      const lines = errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join("\n");
      throw new KernelCompileError({ message: `WGSL of "${launch.label}" failed to compile:\n${lines}`, source: launch.code });
    }
    return module;
  };

  /** A tiered plan's pipeline, compiled off the JS thread (Dawn's createComputePipelineAsync runs on a worker). */
  const compileAsync = async (launch: KernelLaunch, sig: string): Promise<GPUComputePipeline> => {
    const module = await moduleOf(launch);
    try {
      return await waitFor("createComputePipelineAsync", device.createComputePipelineAsync({
        label: launch.label,
        layout: layoutFor(sig).pipeline,
        compute: { module, entryPoint: launch.entryPoint },
      }));
    } catch (e) {
      throw new KernelCompileError({ message: `pipeline "${launch.label}" failed (compiled in the background): ${e instanceof Error ? e.message : e}`, source: launch.code });
    }
  };

  const compile = async (launch: KernelLaunch, sig: string): Promise<GPUComputePipeline> => {
    const module = await moduleOf(launch);
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

  /** Pipelines that compiled (settled without error), by key: a tiered plan runs itself once all of its are here. */
  const ready = new Set<string>();
  /** Background compiles that failed, by key: the next realize needing the pipeline fails with the error. */
  const failedInBackground = new Map<string, unknown>();
  const keyOf = (launch: KernelLaunch, sig = layoutSignature(launch.bindings)) => `${sig}|${launch.entryPoint}|${launch.code}`;

  /** Caches a compile under its key: ready when it settles, forgotten when it fails (failed compiles are not cached). */
  const track = (launch: KernelLaunch, key: string, p: Promise<GPUComputePipeline>, how: string) => {
    const t0 = performance.now();
    pipelines.set(key, p);
    p.then(() => {
      if (pipelines.get(key) !== p) return; // disposed or replaced meanwhile
      ready.add(key);
      logInfo(() => `kernel built${how}: ${launch.label} (${launch.code.length} chars of WGSL) in ${ms(performance.now() - t0)}`);
    }, () => { if (pipelines.get(key) === p) pipelines.delete(key); });
    return p;
  };

  const pipelineFor = (launch: KernelLaunch, sig: string): Promise<GPUComputePipeline> => {
    const key = keyOf(launch, sig);
    const failed = failedInBackground.get(key);
    if (failed !== undefined) {
      failedInBackground.delete(key);
      return Promise.reject(failed);
    }
    const p = pipelines.get(key);
    if (p) logDebug(() => `pipeline cache hit: ${launch.label}`);
    return p ?? track(launch, key, compile(launch, sig), "");
  };

  const tiers = createTiers(tieringEnabled(info.provider), {
    keyOf: (launch) => keyOf(launch),
    isReady: (key) => ready.has(key),
    has: (key) => pipelines.has(key),
    compileInBackground: (launch, key) => {
      const p = track(launch, key, compileAsync(launch, layoutSignature(launch.bindings)), " in the background");
      p.catch((e) => {
        failedInBackground.set(key, e);
        tiers.failed(key);
      });
      return p;
    },
    compileNow: (launch, key) => {
      logInfo(() => `background compile of ${launch.label} did not settle: compiling it synchronously`);
      track(launch, key, compile(launch, layoutSignature(launch.bindings)), "");
    },
  });

  // ------------------------------------------------------------------ planning
  const planFor = (t: Tensor): NodePlan => {
    let p = plans.get(t);
    if (!p) {
      p = planNode(t, caps);
      for (const d of p.defines) plans.set(d, p);
    }
    return p;
  };

  /** Plans needed for `roots`, inputs first; `tiered`: a tiered plan still compiling is replaced by its quick plan. */
  const schedule = (roots: readonly Tensor[], tiered = false): NodePlan[] => {
    const order: NodePlan[] = [];
    const done = new Set<NodePlan>();
    const visit = (t: Tensor) => {
      if (t.op === "const" || trivialValue(t)) return;
      const base = planFor(t);
      if (done.has(base)) return;
      done.add(base);
      const p = tiered ? tiers.choose(base) : base;
      done.add(p);
      for (const l of p.launches) for (const b of l.bindings) if (b.kind === "input") visit(b.tensor);
      order.push(p);
    };
    roots.forEach(visit);
    return order;
  };

  // ------------------------------------------------------------------ prepare: pipelines, buffers, bind groups
  const prepare = (roots: readonly Tensor[], scoped: GPUBuffer[]): Promise<Prepared> => prepareOrder(schedule(roots, true), scoped);

  /**
   * Pipelines first (compiled or cached: a cached one costs no device wait), then the buffers, uploads and bind
   * groups in one synchronous stretch inside an out-of-memory scope and, around it, a validation scope (a bind
   * group over a failed allocation). Both scopes are popped before returning and judged by the caller together
   * with its readbacks: one device wait per realize, and no scope stays open across an await (concurrent
   * realizes would pop each other's).
   */
  const prepareOrder = async (order: readonly NodePlan[], scoped: GPUBuffer[]): Promise<Prepared> => {
    if (lost) throw new DeviceLost({ message: `the GPU device was lost: ${lost}` });
    checkSizes(order);
    // a launch over nothing (a zero workgroup count) is never dispatched, nor compiled
    const runs = (l: KernelLaunch) => l.workgroups.every((n) => n > 0);
    const compiled = await Promise.all(order.flatMap((plan) => plan.launches.filter(runs).map((l) => pipelineFor(l, layoutSignature(l.bindings)))));

    const outputs = new Map<Tensor, GPUBuffer>();
    const checks: Prepared["checks"] = [];
    const launches: Ready[] = [];
    device.pushErrorScope("validation");
    device.pushErrorScope("out-of-memory");
    let allocError: unknown;
    try {
      const poison: GPUBuffer[] = [];
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
                const d = b.tensor.data ?? trivialValue(b.tensor);
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
                if (b.persistent) buffer = persistentUpload(b);
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
          if (!runs(l)) continue;
          const sig = layoutSignature(l.bindings);
          const bindGroup = device.createBindGroup({ layout: layoutFor(sig).group, entries });
          launches.push({ label: l.label, pipeline: compiled[launches.length], bindGroup, workgroups: l.workgroups });
        }
        for (const c of plan.checks) {
          const s = scratch.get(c.scratch);
          if (s) checks.push({ buffer: s, fail: c.fail });
        }
      }
      if (poisonEnabled()) {
        // 0x7fc07fc0 is a NaN as one f32 and as two f16 halves: an unwritten element of either dtype is NaN
        for (const buf of poison) write(buf, new Uint32Array(buf.size / 4).fill(0x7fc07fc0));
      }
    } catch (e) {
      allocError = e;
    }
    const oom = waitFor("popErrorScope(oom)", device.popErrorScope());
    const bind = waitFor("popErrorScope(bind)", device.popErrorScope());
    if (allocError) {
      await Promise.allSettled([oom, bind]);
      throw allocError;
    }
    return { launches, outputs, checks, scoped, scopes: { oom, bind } };
  };

  /** The prepare scopes' verdict (after the realize's own waits were started): a failed allocation first. */
  const judgePrepare = (oom: GPUError | null, bind: GPUError | null) => {
    if (oom) throw new OutOfDeviceMemory({ message: `GPU allocation failed: ${oom.message}` });
    if (bind) throw new DeviceLost({ message: `WebGPU reported a ${bind.constructor?.name ?? "GPUError"} while binding a realize's buffers: ${bind.message}` });
  };

  const encodeLaunches = (encoder: GPUCommandEncoder, launches: readonly Ready[], stamps?: GPUQuerySet, at = 0) => {
    if (launches.length === 0) return;
    const pass = encoder.beginComputePass(stamps ? { timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 } } : undefined);
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
    const t0 = realizeTraceSink() ? performance.now() : 0;
    const copy = buffer.getMappedRange().slice(0);
    buffer.unmap();
    if (t0) readMs += performance.now() - t0;
    return copy;
  };
  /** Tracing: host ms spent copying mapped readbacks out (getMappedRange + slice + unmap), reset per realize. */
  let readMs = 0;
  let stampSet: { set: GPUQuerySet; resolved: GPUBuffer } | undefined;
  const traceStamps = () => {
    if (!stampSet) {
      const resolved = device.createBuffer({ size: MIN_BUFFER_BYTES, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      cached.add(resolved);
      stampSet = { set: device.createQuerySet({ type: "timestamp", count: 2 }), resolved };
    }
    return stampSet;
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
      if (t.op === "const" || seen.has(t) || trivialValue(t)) return;
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

  const realizeAsync = async (given: readonly Tensor[]): Promise<TypedData[]> => {
    const sink = realizeTraceSink();
    const t0 = sink ? performance.now() : 0;
    readMs = 0;
    const roots = runPasses(given);
    await resolveHostInputs(roots);
    await tune(roots);
    const scoped: GPUBuffer[] = [];
    let tSubmit = 0, tSubmitted = 0, tWaited = 0, gpuMs: number | undefined;
    try {
      const prep = await prepare(roots, scoped);
      device.pushErrorScope("validation");
      const encoder = device.createCommandEncoder({ label: "flex realize" });
      // tracing (setRealizeTrace): the pass's GPU time from timestamps, read back with the results; the query set and
      // its resolve buffer are made once (a query set per realize cost ~0.1 ms of host time on the H200)
      const stamps = sink && prep.launches.length > 0 && device.features.has("timestamp-query") ? traceStamps() : undefined;
      encodeLaunches(encoder, prep.launches, stamps?.set);
      const reads = new Map<Tensor, GPUBuffer>();
      for (const r of roots) {
        const src = prep.outputs.get(r);
        if (!src || reads.has(r)) continue;
        const dst = readback(scoped, src.size);
        encoder.copyBufferToBuffer(src, 0, dst, 0, src.size);
        reads.set(r, dst);
      }
      const checkReads = prep.checks.map((c) => {
        const dst = readback(scoped, 4);
        encoder.copyBufferToBuffer(c.buffer, 0, dst, 0, 4);
        return { dst, fail: c.fail };
      });
      let stampRead: GPUBuffer | undefined;
      if (stamps) {
        stampRead = readback(scoped, 16);
        encoder.resolveQuerySet(stamps.set, 0, 2, stamps.resolved, 0);
        encoder.copyBufferToBuffer(stamps.resolved, 0, stampRead, 0, 16);
      }
      if (sink) tSubmit = performance.now();
      device.queue.submit([encoder.finish()]);
      dawnWaitStartsNow(); // the wait for the GPU work starts here, not when prepare's scopes posted the pump
      if (sink) tSubmitted = performance.now();
      // ONE wait: prepare's two scopes, the encode's scope and every readback's map, judged in that order
      const invalidP = waitFor("popErrorScope(encode)", device.popErrorScope());
      const maps = [...checkReads.map((c) => c.dst), ...reads.values()].map((b) => mapRead(b));
      maps.forEach((m) => m.catch(() => undefined)); // judged below, after the scopes
      const stampMap = stampRead && mapRead(stampRead);
      stampMap?.catch(() => undefined);
      const [oom, bind, invalid] = await Promise.all([prep.scopes.oom, prep.scopes.bind, invalidP]);
      judgePrepare(oom, bind);
      if (invalid) throw new Error(`internal: WebGPU validation failed while encoding a realize: ${invalid.message}`);
      const mapped = await Promise.all(maps);
      const stampBytes = stampMap && await stampMap;
      poolReadbacks(scoped, [...checkReads.map((c) => c.dst), ...reads.values(), ...(stampRead ? [stampRead] : [])]); // each mapped, copied, unmapped
      if (stampBytes) {
        const [begin, end] = new BigInt64Array(stampBytes);
        gpuMs = Number(end - begin) / 1e6;
      }
      if (sink) tWaited = performance.now();
      checkReads.forEach((c, i) => {
        const v = new Uint32Array(mapped[i])[0];
        if (v !== 0) throw c.fail(v);
      });
      // one copy of each readback (mapRead's): views of it, handed out once, copied only for a repeated root
      const values = new Map<Tensor, TypedData>();
      let next = checkReads.length;
      for (const t of reads.keys()) {
        const bytes = mapped[next++];
        values.set(t, t.dtype === "i32" || t.dtype === "bool" ? new Int32Array(bytes, 0, t.size) : t.dtype === "f16" ? f16FromBits(new Uint16Array(bytes, 0, t.size)) : new Float32Array(bytes, 0, t.size));
      }
      const handed = new Set<Tensor>();
      return roots.map((r) => {
        const d = r.data ?? trivialValue(r);
        if (d) return d.slice() as TypedData;
        const v = values.get(r)!;
        if (handed.has(r)) return v.slice() as TypedData;
        handed.add(r);
        return v;
      });
    } finally {
      destroyScoped(scoped);
      tiers.startQueued(); // after the readback: a compile in flight could hold this realize's dispatches back
      if (sink && tWaited > 0) {
        const t = performance.now();
        sink({ hostMs: tSubmit - t0, submitMs: tSubmitted - tSubmit, waitMs: tWaited - tSubmitted, readMs, finishMs: t - tWaited, wallMs: t - t0, gpuMs });
      }
    }
  };

  /** The plans a plan's inputs need, in order (a tuning candidate's prerequisites). */
  const scheduleInputs = (plan: NodePlan): NodePlan[] => {
    const inputs = plan.launches.flatMap((l) => l.bindings.flatMap((b) => (b.kind === "input" ? [b.tensor] : [])));
    return schedule(inputs.filter((t) => !plan.defines.includes(t)));
  };
  const tune = createTuner(caps, { scheduleInputs, time: (order, iters) => timeOrder(order, iters), device: `${info.adapter} | ${info.provider}` });

  // roots a profile has realized already (compiled, host inputs resolved, tuned): later profiles time them at once.
  // A realize before every timing left the GPU idle for its readbacks (~0.1 s for a backward's three gradients at
  // B4 H16 S4096 D64), long enough for the H200 to drop its clocks: the timed submit then ran 1.5–2.6× slow for
  // its first 0.1–0.15 s (bench/tensor_bwd_breakdown.ts, session 7)
  // (keyed by the given roots; their roots after the passes are kept, so the same plans time again: the passes
  // build new cast nodes on every run)
  const profiled = new WeakMap<Tensor, Tensor>();
  const profileAsync = async (given: readonly Tensor[], iters: number): Promise<number> => {
    const known = given.map((t) => profiled.get(t));
    if (known.every((r) => r !== undefined)) return await timeOrder(schedule(known), iters);
    const roots = runPasses(given);
    await realizeAsync(roots); // compiles and warms
    given.forEach((t, i) => profiled.set(t, roots[i]));
    return await timeOrder(schedule(roots), iters);
  };
  /** GPU ms per iteration of an order's last timing, by its last plan (FLEX_PROFILE_WARM_MS sizes its warm-up with it). */
  const lastIterMs = new WeakMap<NodePlan, number>();

  /** GPU ms per run of `order` (iters runs in one submit), the plans' buffers allocated once. */
  const timeOrder = async (order: readonly NodePlan[], iters: number): Promise<number> => {
    const scoped: GPUBuffer[] = [];
    try {
      const prep = await prepareOrder(order, scoped);
      const [oom, bind] = await Promise.all([prep.scopes.oom, prep.scopes.bind]);
      judgePrepare(oom, bind);
      if (prep.launches.length === 0) return 0;
      await device.queue.onSubmittedWorkDone();
      const encoder = device.createCommandEncoder({ label: "flex profile" });
      // GPU time from timestamp queries when the device has them (empty passes around the work mark its
      // start and end); the wall clock around submit → onSubmittedWorkDone otherwise, which also counts
      // the submit and the completion callback's latency.
      const stamps = device.features.has("timestamp-query") ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
      // FLEX_PROFILE_WARM_MS (default 0): that much GPU time of the same launches first, in the same submit before the
      // first timestamp (from the order's last timing), so an idle GPU's clocks are up when the timed launches start
      const warmMs = Number(readEnv("FLEX_PROFILE_WARM_MS") ?? 0), last = lastIterMs.get(order[order.length - 1]);
      const warm = stamps && warmMs > 0 && last ? Math.min(1000, Math.ceil(warmMs / Math.max(last, 1e-3))) : 0;
      for (let i = 0; i < warm; i++) encodeLaunches(encoder, prep.launches);
      if (stamps) encoder.beginComputePass({ timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 0 } }).end();
      // tracing (setLaunchTrace): the last iterations' launches each in a pass of its own between two timestamps
      const L = prep.launches.length, traced = stamps && launchTraceSink() ? Math.min(iters, Math.floor(4096 / (2 * L))) : 0;
      const each = traced > 0 ? device.createQuerySet({ type: "timestamp", count: 2 * L * traced }) : undefined;
      for (let i = 0; i < iters; i++) {
        const s = i - (iters - traced);
        if (!each || s < 0) { encodeLaunches(encoder, prep.launches); continue; }
        prep.launches.forEach((l, j) => encodeLaunches(encoder, [l], each, 2 * (s * L + j)));
      }
      let eachRead: GPUBuffer | undefined;
      if (each) {
        const bytes = 16 * L * traced;
        const resolved = createScoped(scoped, bytes, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, false);
        eachRead = createScoped(scoped, bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, false);
        encoder.resolveQuerySet(each, 0, 2 * L * traced, resolved, 0);
        encoder.copyBufferToBuffer(resolved, 0, eachRead, 0, bytes);
      }
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
      if (gpuMs > 0) lastIterMs.set(order[order.length - 1], gpuMs);
      if (each && eachRead) {
        const t = new BigInt64Array(await mapRead(eachRead));
        each.destroy();
        launchTraceSink()?.({
          totalMs: gpuMs, iters, stamped: traced,
          launches: prep.launches.map((l, j) => ({
            label: l.label, workgroups: l.workgroups,
            ms: Array.from({ length: traced }, (_, s) => Number(t[2 * (s * L + j) + 1] - t[2 * (s * L + j)]) / 1e6),
          })),
        });
      }
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
    settleCompiles: () => tiers.settled(),
    drainCompiles: () => tiers.drain(),
    tierStats: () => tiers.stats(),
    liveBuffers: () => live,
    cachedBuffers: () => cached.size,
    dispose: () => {
      stampSet?.set.destroy();
      stampSet = undefined;
      for (const list of readbackPool.values()) for (const b of list) b.destroy();
      readbackPool = new Map();
      pooledBytes = 0;
      for (const b of cached) b.destroy();
      cached.clear();
      uploads = new WeakMap();
      shared = new Map();
      generation++;
      pipelines.clear();
      ready.clear();
      failedInBackground.clear();
      tiers.reset();
    },
  };
}
