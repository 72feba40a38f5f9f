/**
 * The Promise façade over the Gpu service: a ManagedRuntime over the default layer, built lazily on the
 * first realize, so users who never touch Effect still get everything. Importing this module installs the
 * realizer behind `tensor.toArray()`. Failures reject with the library's tagged error itself
 * (`instanceof CaptureOutOfRange`, `.message`), not with an Effect wrapper.
 */
import { Effect, ManagedRuntime } from "effect";
import type { Tensor, TypedData } from "../tensor/tensor.ts";
import { setRealizer } from "../tensor/realize.ts";
import type { DeviceInfo, Executor } from "./executor.ts";
import { unwrapExit } from "./run.ts";
import { cpuLayer, defaultLayer, Gpu, type GpuLayerError, layer } from "./gpu.ts";

export { cpuLayer, defaultLayer, Gpu, layer };
export type { ExecutorFactory, GpuLayerError, GpuLayerOptions, GpuShape } from "./gpu.ts";
export type { DeviceInfo, Executor, ProviderName } from "./executor.ts";
export { liveBufferCount, poisonEnabled, setPoison } from "./debug.ts";
export { createCpuExecutor } from "./cpu/executor.ts";
export { runPromise } from "./run.ts";

let runtime: ManagedRuntime.ManagedRuntime<Gpu, GpuLayerError> | undefined;

function current(): ManagedRuntime.ManagedRuntime<Gpu, GpuLayerError> {
  runtime ??= ManagedRuntime.make(defaultLayer);
  return runtime;
}

/** Runs an Effect needing Gpu on the default runtime; rejects with the tagged error itself. */
export async function runWithGpu<A, E>(effect: Effect.Effect<A, E, Gpu>): Promise<A> {
  return unwrapExit(await current().runPromiseExit(effect));
}

/** The executor of the default runtime (tests, bench). */
export function getExecutor(): Promise<Executor> {
  return runWithGpu(Effect.gen(function* () { return (yield* Gpu).executor; }));
}

/** The provider actually used and what its adapter offers. */
export async function deviceInfo(): Promise<DeviceInfo> {
  return (await getExecutor()).info;
}

/** Realizes several tensors in one go (one submit where possible). */
export function realizeAll(tensors: readonly Tensor[]): Promise<TypedData[]> {
  return runWithGpu(Effect.gen(function* () { return yield* (yield* Gpu).executor.realize(tensors); }));
}

/**
 * Disposes the default runtime (its device is destroyed); the next realize builds a new one, reading
 * FLEX_WEBGPU again, so a process can switch providers.
 */
export async function resetRuntime(): Promise<void> {
  const r = runtime;
  runtime = undefined;
  if (r) await r.dispose();
}

setRealizer(async (t) => (await realizeAll([t]))[0]);
