/**
 * Debug switches and counters shared by the executors and the tests.
 *
 * Poison: when on, the GPU executor fills every output buffer with NaN before its kernels run, so an
 * element a kernel forgot to write fails the comparison with the oracle instead of passing as a stale 0.
 * Live buffers: every GPUBuffer created on a device the runtime opened is counted (number and bytes) until
 * destroyed, with high-water marks, so tests can prove that a realize leaves nothing behind and that device
 * memory stays flat over many realizes.
 */
let poison = false;

/**
 * Debugging: fill every new output buffer with NaN first, so elements a kernel fails to write read back as NaN.
 *
 * @example
 * ```ts
 * import { setPoison } from "@flex/attention";
 * setPoison(true);
 * ```
 */
export function setPoison(on: boolean): void { poison = on; }
/**
 * Whether `setPoison(true)` is in effect.
 *
 * @example
 * ```ts
 * import { poisonEnabled, setPoison } from "@flex/attention";
 * setPoison(true);
 * console.log(poisonEnabled()); // true
 * ```
 */
export function poisonEnabled(): boolean { return poison; }

/**
 * GPU buffer statistics over every tracked device (all devices together).
 *
 * @example
 * ```ts
 * import { bufferStats } from "@flex/attention";
 * const { live, liveBytes, peakBytes } = bufferStats();
 * ```
 */
export interface BufferStats {
  /** Buffers created and not yet destroyed. */
  readonly live: number;
  /** Their total size in bytes. */
  readonly liveBytes: number;
  /** The most buffers alive at once since the last `resetBufferPeaks()` (or since start). */
  readonly peakBuffers: number;
  /** The most bytes alive at once since the last `resetBufferPeaks()` (or since start). */
  readonly peakBytes: number;
  /** Buffers created so far (never decreases). */
  readonly created: number;
}

let live = 0, liveBytes = 0, peakBuffers = 0, peakBytes = 0, created = 0;

/**
 * GPU buffers created through the runtime's devices and not yet destroyed (all devices together).
 *
 * @example
 * ```ts
 * import { liveBufferCount, randn, mulScalar } from "@flex/attention";
 * await mulScalar(randn([1024]), 2).toArray();
 * console.log(liveBufferCount()); // device buffers still held (cached constants, pools)
 * ```
 */
export function liveBufferCount(): number { return live; }

/**
 * Live buffers, live bytes, high-water marks and the creation count (see BufferStats).
 *
 * @example
 * ```ts
 * import { bufferStats } from "@flex/attention";
 * console.log(bufferStats());
 * ```
 */
export function bufferStats(): BufferStats {
  return { live, liveBytes, peakBuffers, peakBytes, created };
}

/**
 * Restarts the high-water marks from what is alive now.
 *
 * @example
 * ```ts
 * import { bufferStats, resetBufferPeaks } from "@flex/attention";
 * resetBufferPeaks();
 * // … work …
 * console.log(bufferStats().peakBytes);
 * ```
 */
export function resetBufferPeaks(): void {
  peakBuffers = live;
  peakBytes = liveBytes;
}

/**
 * Counts `device`'s buffers from now on: wraps createBuffer / destroy in place (once per device).
 * Destroying the device frees whatever buffers it still had, so they stop counting then; a buffer created
 * on a destroyed device (an error buffer: no memory) is not counted.
 */
export function trackBuffers(device: GPUDevice): void {
  const d = device as GPUDevice & { __flexTracked?: boolean };
  if (d.__flexTracked) return;
  d.__flexTracked = true;
  let mine = 0, mineBytes = 0;
  let deviceGone = false;
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor): GPUBuffer => {
    const buffer = create(descriptor);
    if (deviceGone) return buffer;
    const bytes = descriptor.size;
    live++; mine++; liveBytes += bytes; mineBytes += bytes; created++;
    if (live > peakBuffers) peakBuffers = live;
    if (liveBytes > peakBytes) peakBytes = liveBytes;
    const destroy = buffer.destroy.bind(buffer);
    let destroyed = false;
    buffer.destroy = () => {
      if (!destroyed && !deviceGone) { live--; mine--; liveBytes -= bytes; mineBytes -= bytes; }
      destroyed = true;
      destroy();
    };
    return buffer;
  };
  const destroyDevice = device.destroy.bind(device);
  device.destroy = () => {
    if (!deviceGone) { deviceGone = true; live -= mine; liveBytes -= mineBytes; mine = 0; mineBytes = 0; }
    destroyDevice();
  };
}

/** Where one GPU realize spent its wall time (setRealizeTrace), in ms. */
export interface RealizeTrace {
  /** Host work before the submit: passes, planning, pipelines (cached or compiled), buffers, bind groups, encoding. */
  readonly hostMs: number;
  /** The queue submit call. */
  readonly submitMs: number;
  /** Submit → every error scope and readback settled (the GPU work, the pump's rounds, readMs). */
  readonly waitMs: number;
  /** Of waitMs, the host copying the mapped readbacks out (getMappedRange, slice, unmap). */
  readonly readMs: number;
  /** Checks, result views, destroying the realize's buffers. */
  readonly finishMs: number;
  readonly wallMs: number;
  /** The realize's compute pass on the GPU (timestamp queries; undefined without them). */
  readonly gpuMs?: number;
}

let traceSink: ((t: RealizeTrace) => void) | undefined;

/**
 * Diagnostics: calls `sink` after every successful GPU realize with where its time went (the bench's
 * FLEX_CBM_PHASES); the realize then also writes two timestamps. `undefined` turns it off.
 */
export function setRealizeTrace(sink: ((t: RealizeTrace) => void) | undefined): void { traceSink = sink; }
/** The sink set by setRealizeTrace, if any. */
export function realizeTraceSink(): ((t: RealizeTrace) => void) | undefined { return traceSink; }

/** One launch of a profiled order (setLaunchTrace): its label, grid and GPU ms per timed iteration. */
export interface LaunchTime {
  readonly label: string;
  readonly workgroups: readonly [number, number, number];
  /** GPU ms of this launch in each stamped iteration of the profile's submit (the last ones), in order. */
  readonly ms: readonly number[];
}

/** What one profile (Executor.profile) spent per launch (setLaunchTrace). */
export interface LaunchTrace {
  /** GPU ms per iteration of the whole order, as the profile reports it (the per-launch passes included). */
  readonly totalMs: number;
  /** Iterations of the submit, and how many of the last ones carry per-launch stamps (≤ 4096 queries). */
  readonly iters: number;
  readonly stamped: number;
  readonly launches: readonly LaunchTime[];
}

let launchSink: ((t: LaunchTrace) => void) | undefined;

/**
 * Diagnostics: while set, every GPU profile (Executor.profile) encodes each launch in a compute pass of its own
 * with two timestamps and calls `sink` with the per-launch GPU times (bench/tensor_bwd_breakdown.ts). The extra
 * passes add a little time of their own; `undefined` turns it off.
 */
export function setLaunchTrace(sink: ((t: LaunchTrace) => void) | undefined): void { launchSink = sink; }
/** The sink set by setLaunchTrace, if any. */
export function launchTraceSink(): ((t: LaunchTrace) => void) | undefined { return launchSink; }
