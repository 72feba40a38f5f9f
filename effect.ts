/**
 * The Effect-level API of `@flex/attention`: the `Gpu` service, its layers and the executors behind
 * `tensor.toArray()`, for programs written with [Effect](https://effect.website) (scoped devices, typed
 * failures, custom providers). Everything else is in the main entry (`@flex/attention`).
 *
 * @example Realizing on the CPU executor inside an Effect
 * ```ts
 * import { Effect } from "effect";
 * import { Gpu, cpuLayer, runPromise } from "@flex/attention/effect";
 * import { randn } from "@flex/attention";
 *
 * const program = Effect.gen(function* () {
 *   const { executor } = yield* Gpu;
 *   return yield* executor.realize([randn([2, 3])]);
 * });
 * const [values] = await runPromise(program.pipe(Effect.provide(cpuLayer)));
 * ```
 * @module
 */
export { cpuLayer, defaultLayer, getExecutor, Gpu, layer, runPromise, runWithGpu } from "./lib/runtime/mod.ts";
export { GpuService } from "./lib/runtime/gpu.ts";
export type { ExecutorFactory, GpuLayerError, GpuLayerOptions, GpuShape } from "./lib/runtime/mod.ts";
export type { Executor } from "./lib/runtime/executor.ts";
export { createCpuExecutor } from "./lib/runtime/cpu/executor.ts";
