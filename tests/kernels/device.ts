/**
 * The kernel tests' device: the runtime's own provider and device modules (Dawn when FLEX_WEBGPU is "dawn"
 * or unset, the runtime's navigator.gpu when "native"), the adapter's real limits, and the real GPU executor.
 * One device per process. Without an adapter, `skipReason` says why and the GPU tests report skipped.
 */
import { Effect } from "effect";
import type { Capabilities } from "../../lib/lower/capabilities.ts";
import type { DeviceInfo } from "../../lib/runtime/executor.ts";
import { createGpuExecutor, type GpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { dawnSource, nativeSource, requestAdapter } from "../../lib/runtime/providers.ts";
import { capabilitiesOf, createDevice, deviceInfoOf } from "../../lib/runtime/device.ts";
import { trackBuffers } from "../../lib/runtime/debug.ts";
import { onGpuRelease } from "../gpu.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (name: string): string | undefined => g.Deno ? g.Deno.env.get(name) : g.process?.env?.[name];

export interface TestGpu {
  readonly device: GPUDevice;
  readonly caps: Capabilities;
  readonly info: DeviceInfo;
  readonly executor: GpuExecutor;
}

async function open(): Promise<TestGpu | string> {
  const source = env("FLEX_WEBGPU") === "native" ? nativeSource : dawnSource();
  if (g.Deno && !env("XDG_RUNTIME_DIR")) g.Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  try {
    const adapter = await Effect.runPromise(requestAdapter(source));
    const device = await Effect.runPromise(createDevice(adapter, source.name));
    trackBuffers(device);
    const caps = capabilitiesOf(adapter, device);
    const info = deviceInfoOf(source.name, adapter, device);
    return { device, caps, info, executor: createGpuExecutor(device, caps, info) };
  } catch (e) {
    return `no ${source.name} WebGPU adapter (${e instanceof Error ? e.message : e})`;
  }
}

const probe = await open();
if (typeof probe !== "string") {
  onGpuRelease(async () => {
    // as the runtime's release does (lib/runtime/gpu.ts): no device destroyed under a background compile
    await probe.executor.drainCompiles();
    probe.executor.dispose();
    await probe.device.queue.onSubmittedWorkDone();
    probe.device.destroy();
  });
}
/** Reason to skip GPU tests (false when a device is available). */
export const skipReason: string | false = typeof probe === "string" ? probe : false;
/** The device; only valid when `skipReason` is false. */
export const gpu: TestGpu = (typeof probe === "string" ? undefined : probe) as TestGpu;
