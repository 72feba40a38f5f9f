/**
 * The Promise façade over the Gpu service: a ManagedRuntime over the default layer, built lazily on the
 * first realize, so users who never touch Effect still get everything. Importing this module installs the
 * realizer behind `tensor.toArray()`. Failures reject with the library's tagged error itself
 * (`instanceof CaptureOutOfRange`, `.message`), not with an Effect wrapper.
 *
 * Device loss: the realize that meets a lost device fails with DeviceLost (so the caller learns that work
 * was lost); the runtime then replaces itself, and the next realize opens a fresh device. `resetRuntime()`
 * while realizes are in flight interrupts them: they reject with RuntimeReset (realize again).
 */
import { Cause, Effect, Exit, ManagedRuntime } from "effect";
import { DeviceLost, RuntimeReset } from "../errors.ts";
import type { Tensor, TypedData } from "../tensor/tensor.ts";
import { setRealizer } from "../tensor/realize.ts";
import type { DeviceInfo, Executor, ProviderName } from "./executor.ts";
import { failureOf, unwrapExit } from "./run.ts";
import { cpuLayer, defaultLayer, Gpu, type GpuLayerError, type GpuShape, layer } from "./gpu.ts";

export { cpuLayer, defaultLayer, Gpu, layer };
export type { ExecutorFactory, GpuLayerError, GpuLayerOptions, GpuShape } from "./gpu.ts";
export type { DeviceInfo, Executor, ProviderName } from "./executor.ts";
export { type BufferStats, bufferStats, liveBufferCount, poisonEnabled, resetBufferPeaks, setPoison } from "./debug.ts";
export { createCpuExecutor } from "./cpu/executor.ts";
export { runPromise } from "./run.ts";

type Runtime = ManagedRuntime.ManagedRuntime<Gpu, GpuLayerError>;

let runtime: Runtime | undefined;
/** Runtimes resetRuntime() disposed (their in-flight realizes reject with RuntimeReset). */
const reset = new WeakSet<Runtime>();
/** Runtimes being disposed (by resetRuntime or after a device loss): each is disposed once. */
const retired = new WeakSet<Runtime>();

function current(): Runtime {
  runtime ??= ManagedRuntime.make(defaultLayer);
  return runtime;
}

/** Takes `r` out of service (if it still is) and disposes it once. */
async function retire(r: Runtime): Promise<void> {
  if (runtime === r) runtime = undefined;
  if (retired.has(r)) return;
  retired.add(r);
  await r.dispose().catch(() => {});
}

/** Runs an Effect needing Gpu on the default runtime; rejects with the tagged error itself. */
export async function runWithGpu<A, E>(effect: Effect.Effect<A, E, Gpu>): Promise<A> {
  const r = current();
  let service: GpuShape | undefined;
  const exit = await r.runPromiseExit(Effect.gen(function* () {
    service = yield* Gpu;
    return yield* effect;
  }));
  if (Exit.isSuccess(exit)) return exit.value;
  const failure = failureOf(exit.cause);
  if (reset.has(r) && (Cause.hasInterruptsOnly(exit.cause) || failure instanceof DeviceLost)) {
    throw new RuntimeReset({
      message: "resetRuntime() disposed the runtime (and its device) while this realize was in flight; " +
        "realize again: the next call opens a new runtime",
    });
  }
  if (failure instanceof DeviceLost && service?.isLost) {
    // the loss may be reported (device.lost) a moment after the work itself failed
    if (!service.isLost()) await new Promise((res) => setTimeout(res, 20));
    if (service.isLost()) await retire(r);
  }
  return unwrapExit(exit);
}

/** The executor of the default runtime (tests, bench). */
export function getExecutor(): Promise<Executor> {
  return runWithGpu(Effect.gen(function* () { return (yield* Gpu).executor; }));
}

/**
 * The provider actually used and what its adapter offers.
 *
 * @example
 * ```ts
 * import { deviceInfo } from "@flex/attention";
 * const info = await deviceInfo();
 * console.log(info.provider, info.adapter);
 * ```
 */
export async function deviceInfo(): Promise<DeviceInfo> {
  return (await getExecutor()).info;
}

/**
 * Which provider the runtime chose, for what reason, and what auto mode passed over on the way.
 *
 * @example
 * ```ts
 * import { providerReport } from "@flex/attention";
 * const { provider, reason, skipped } = await providerReport();
 * ```
 */
export interface ProviderReport {
  /** The provider in use. */
  readonly provider: ProviderName;
  /** Its adapter's name. */
  readonly adapter: string;
  /** e.g. `FLEX_WEBGPU=cpu`, or auto's verdict on the adapter. */
  readonly reason: string;
  /** One line per provider auto mode passed over, with why. */
  readonly skipped: readonly string[];
}

/**
 * The default runtime's provider choice, in words (opens the runtime if needed):
 *   const r = await providerReport(); console.log(`${r.provider}: ${r.reason}`);
 *
 * @example
 * ```ts
 * import { providerReport } from "@flex/attention";
 * const r = await providerReport();
 * console.log(`${r.provider}: ${r.reason}`);
 * ```
 */
export function providerReport(): Promise<ProviderReport> {
  return runWithGpu(Effect.gen(function* () {
    const g = yield* Gpu;
    const { provider, adapter } = g.executor.info;
    return { provider, adapter, reason: g.reason ?? "", skipped: g.skipped };
  }));
}

/**
 * Realizes several tensors in one go (one submit where possible).
 *
 * @example
 * ```ts
 * import { randn, realizeAll, mulScalar } from "@flex/attention";
 * const x = randn([8]);
 * const [a, b] = await realizeAll([mulScalar(x, 2), mulScalar(x, 3)]); // one submit
 * ```
 */
export function realizeAll(tensors: readonly Tensor[]): Promise<TypedData[]> {
  return runWithGpu(Effect.gen(function* () { return yield* (yield* Gpu).executor.realize(tensors); }));
}

/**
 * Disposes the default runtime (its device is destroyed); the next realize builds a new one, reading
 * FLEX_WEBGPU again, so a process can switch providers. Realizes still in flight are interrupted and
 * reject with RuntimeReset.
 *
 * @example
 * ```ts
 * import { resetRuntime } from "@flex/attention";
 * // switch providers inside one process: set FLEX_WEBGPU, then
 * await resetRuntime(); // the next realize opens the new provider
 * ```
 */
export async function resetRuntime(): Promise<void> {
  const r = runtime;
  runtime = undefined;
  if (!r) return;
  reset.add(r);
  await retire(r);
}

setRealizer(async (t) => (await realizeAll([t]))[0]);
