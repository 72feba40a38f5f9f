/**
 * STAND-IN until lib/runtime/gpu_executor.ts (the kernels' executor) exists: computes on the CPU and
 * round-trips every result through device buffers, so the GPU layer, buffer tracking and readback are
 * exercised end to end. It reports the real device's info and capabilities.
 */
import { Effect } from "effect";
import type { TypedData } from "../tensor/tensor.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import { DeviceLost } from "../errors.ts";
import type { DeviceInfo, Executor } from "./executor.ts";
import { createCpuExecutor } from "./cpu/executor.ts";

async function roundTrip(device: GPUDevice, data: TypedData): Promise<TypedData> {
  const bytes = Math.max(4, data.byteLength);
  const store = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.queue.writeBuffer(store, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(store, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const copy = read.getMappedRange().slice(0, data.byteLength);
    read.unmap();
    return data instanceof Float32Array ? new Float32Array(copy) : new Int32Array(copy);
  } finally {
    store.destroy();
    read.destroy();
  }
}

export function createStandInGpuExecutor(device: GPUDevice, caps: Capabilities, info: DeviceInfo): Executor {
  const cpu = createCpuExecutor();
  return {
    info,
    caps,
    realize: (roots) =>
      cpu.realize(roots).pipe(
        Effect.flatMap((values) =>
          Effect.tryPromise({
            try: () => Promise.all(values.map((v) => roundTrip(device, v))),
            catch: (e) => new DeviceLost({ message: `readback failed: ${e instanceof Error ? e.message : e}` }),
          })
        ),
      ),
    profile: () => Effect.succeed(NaN),
  };
}
