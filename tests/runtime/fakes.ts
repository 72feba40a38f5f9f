/**
 * Injected providers for the runtime tests: sources that fail in known ways, and a real adapter whose
 * self-test kernel is swapped for a wrong one (so the real self-test code must refuse it).
 */
import { Effect } from "effect";
import { dawnSource, type GpuSource, nativeSource, requestAdapter } from "../../lib/runtime/providers.ts";
import { Gpu, type GpuLayerOptions, layer } from "../../lib/runtime/gpu.ts";
import { runPromise } from "../../lib/runtime/run.ts";

/** Builds a layer, runs `use` with the service, releases the device; rejects with the layer's error itself. */
export function withGpu<A>(options: GpuLayerOptions, use: (g: Gpu["Service"]) => A | Promise<A>): Promise<A> {
  return runPromise(
    Effect.gen(function* () {
      const g = yield* Gpu;
      return yield* Effect.promise(async () => await use(g));
    }).pipe(Effect.provide(layer(options))),
  );
}

/** The error a layer fails with (the test fails if it builds). */
export function layerFailure(options: GpuLayerOptions): Promise<unknown> {
  return runPromise(Effect.gen(function* () { yield* Gpu; }).pipe(Effect.provide(layer(options)), Effect.flip));
}

export const brokenDawn: GpuSource = dawnSource("webgpu-package-that-does-not-exist");

export const nullAdapterSource = (name: "dawn" | "native"): GpuSource => ({
  name,
  load: () => Promise.resolve({ requestAdapter: () => Promise.resolve(null) } as unknown as GPU),
});

/** The first real source that yields an adapter here, or undefined. */
export async function workingSource(): Promise<GpuSource | undefined> {
  for (const source of [dawnSource(), nativeSource]) {
    const ok = await Effect.runPromise(requestAdapter(source).pipe(Effect.as(true), Effect.orElseSucceed(() => false)));
    if (ok) return source;
  }
  return undefined;
}

/**
 * `real`'s adapter, but every shader module it compiles is replaced by `wgsl` (a kernel with a wrong answer).
 * Plain objects, not Proxies: native WebGPU objects check `this`.
 */
export function miscompilingSource(real: GpuSource, wgsl: string): GpuSource {
  return {
    name: real.name,
    load: async () => {
      const gpu = await real.load();
      return {
        requestAdapter: async (options?: GPURequestAdapterOptions) => {
          const adapter = await gpu.requestAdapter(options);
          if (!adapter) return null;
          return {
            features: adapter.features,
            limits: adapter.limits,
            info: adapter.info,
            requestDevice: async (descriptor?: GPUDeviceDescriptor) => {
              const device = await adapter.requestDevice(descriptor);
              const compile = device.createShaderModule.bind(device);
              device.createShaderModule = (d: GPUShaderModuleDescriptor) => compile({ ...d, code: wgsl });
              return device;
            },
          } as unknown as GPUAdapter;
        },
      } as unknown as GPU;
    },
  };
}

export const WRONG_ANSWER_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i < arrayLength(&y) && i != 500u) { y[i] = 3u * i + 1u; } else if (i == 500u) { y[i] = 7u; }
}`;

export const WRITES_NOTHING_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x > 0xfffffff0u) { y[0] = 0u; } // never: the output stays poisoned
}`;
