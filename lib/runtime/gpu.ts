/**
 * The `Gpu` service: the Executor the library realizes graphs with, plus the device behind it (null on the
 * CPU). Its layer picks the provider (option → FLEX_WEBGPU → auto: Dawn, native, CPU), opens the device
 * with Effect.acquireRelease (destroyed when the layer is released, after the executor's caches and once the
 * queue is idle), self-tests it and builds the executor.
 */
import { Context, Effect, Layer } from "effect";
import { AdapterUnavailable, type SelfTestFailed, type UnknownProvider } from "../errors.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import type { DeviceInfo, Executor } from "./executor.ts";
import { dawnSource, type GpuSource, nativeSource, type ProviderChoice, requestAdapter, resolveChoice } from "./providers.ts";
import { adapterName, capabilitiesOf, createDevice, deviceInfoOf } from "./device.ts";
import { selfTest } from "./self_test.ts";
import { trackBuffers } from "./debug.ts";
import { guardExecutor, watchDevice } from "./guard.ts";
import { createCpuExecutor } from "./cpu/executor.ts";
import { createGpuExecutor } from "./gpu_executor.ts";
import { adapterFacts, judgeAutoAdapter } from "./adapter_choice.ts";
import { logInfo } from "./log.ts";

export interface GpuShape {
  readonly executor: Executor;
  /** The device the executor runs on; null for the CPU executor. */
  readonly device: GPUDevice | null;
  /** Why earlier providers were passed over in auto mode (empty when the first one worked). */
  readonly skipped: readonly string[];
  /** Why this provider: forced (FLEX_WEBGPU, the option) or auto's verdict on the adapter, in words. */
  readonly reason?: string;
  /**
   * True once the device was lost (not when the runtime released it): every later realize fails with
   * DeviceLost, so the default runtime (mod.ts) replaces itself. Absent on the CPU executor.
   */
  readonly isLost?: () => boolean;
}

/** The service key's class, typed explicitly so JSR's fast check needs no inference. */
export const GpuService: Context.ServiceClass<Gpu, "@flex/attention/runtime/Gpu", GpuShape> =
  Context.Service<Gpu, GpuShape>()("@flex/attention/runtime/Gpu");

/** The Gpu service: `yield* Gpu` inside an Effect gives the executor and its device. */
export class Gpu extends GpuService {}

export type ExecutorFactory = (device: GPUDevice, caps: Capabilities, info: DeviceInfo) => Executor;

export interface GpuLayerOptions {
  /** dawn | native | cpu | auto; unset: FLEX_WEBGPU, else auto. */
  readonly provider?: ProviderChoice | string;
  /** Replace a provider's source (tests: a Dawn module that fails to load, a fake adapter). */
  readonly sources?: { readonly dawn?: GpuSource; readonly native?: GpuSource };
  /** Builds the GPU executor (default: lib/runtime/gpu_executor.ts's createGpuExecutor). */
  readonly createExecutor?: ExecutorFactory;
}

export type GpuLayerError = AdapterUnavailable | UnknownProvider | SelfTestFailed;

/** Adapter → device (self-tested, tracked, watched) → executor; the device lives as long as the scope. */
const openGpu = Effect.fnUntraced(function* (source: GpuSource, factory: ExecutorFactory, auto = false) {
  const adapter = yield* requestAdapter(source);
  const name = adapterName(adapter);
  // auto mode passes over an adapter that would be slower than the CPU executor (adapter_choice.ts)
  const verdict = auto ? judgeAutoAdapter(adapterFacts(source.name, adapter)) : undefined;
  if (verdict && !verdict.use) return yield* Effect.fail(new AdapterUnavailable({ provider: source.name, message: verdict.why }));
  const { device, watch } = yield* Effect.acquireRelease(
    Effect.gen(function* () {
      const device = yield* createDevice(adapter, source.name);
      trackBuffers(device);
      const watch = watchDevice(device, name);
      // a refused device is destroyed at once; an accepted one at release
      yield* selfTest(device, name).pipe(Effect.tapError(() => Effect.sync(() => { watch.releasing(); device.destroy(); })));
      return { device, watch };
    }),
    // a lost device has no queue to wait for
    ({ device, watch }) =>
      (watch.lostError() ? Effect.void : idle(device)).pipe(Effect.andThen(Effect.sync(() => { watch.releasing(); device.destroy(); }))),
  );
  const caps = capabilitiesOf(adapter, device);
  const info = deviceInfoOf(source.name, adapter, device);
  const executor = factory(device, caps, info);
  // finalizers run in reverse: the executor's background compiles settle and its cached buffers go before the
  // device (Dawn aborted the process when the device was destroyed under an async pipeline compile)
  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => { await executor.drainCompiles?.().catch(() => {}); }).pipe(Effect.andThen(Effect.sync(() => executor.dispose?.()))));
  return { executor: guardExecutor(executor, watch), device, isLost: () => watch.lostError() !== undefined, reason: verdict?.why };
});

/**
 * Waits (a bounded time) for the queue to drain before the device is destroyed: tearing a device down under
 * running work is where WebGPU implementations are least tested (Deno's built-in one has crashed there).
 */
function idle(device: GPUDevice): Effect.Effect<void> {
  return Effect.promise(async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => { timer = setTimeout(r, 2000); });
    await Promise.race([device.queue.onSubmittedWorkDone().catch(() => {}), timeout]);
    clearTimeout(timer);
  });
}

const cpuShape = (skipped: readonly string[], reason?: string): GpuShape => ({ executor: createCpuExecutor(), device: null, skipped, reason });

/** Logs the provider chosen and why (FLEX_LOG=info). */
function chosen(g: GpuShape): GpuShape {
  for (const s of g.skipped) logInfo(`provider passed over: ${s}`);
  logInfo(() => `provider: ${g.executor.info.provider} (${g.executor.info.adapter}): ${g.reason ?? ""}`);
  return g;
}

export function layer(options: GpuLayerOptions = {}): Layer.Layer<Gpu, GpuLayerError> {
  return Layer.effect(
    Gpu,
    Effect.gen(function* () {
      const choice = yield* resolveChoice(options.provider);
      const sources = { dawn: options.sources?.dawn ?? dawnSource(), native: options.sources?.native ?? nativeSource };
      const factory = options.createExecutor ?? createGpuExecutor;
      const forcedBy = options.provider !== undefined ? `the provider option is "${choice}"` : `FLEX_WEBGPU=${choice}`;
      if (choice === "cpu") return chosen(cpuShape([], forcedBy));
      if (choice !== "auto") return chosen({ ...(yield* openGpu(sources[choice], factory)), skipped: [], reason: forcedBy });
      const skipped: string[] = [];
      for (const source of [sources.dawn, sources.native]) {
        const opened = yield* openGpu(source, factory, true).pipe(
          Effect.map((g) => chosen({ ...g, skipped, reason: `auto: ${g.reason}` })),
          Effect.catch((e) => Effect.sync(() => { skipped.push(e.message); return undefined; })),
        );
        if (opened) return opened;
      }
      return chosen(cpuShape(skipped, "auto: no usable WebGPU adapter"));
    }),
  );
}

/** The layer `tensor.toArray()` uses: provider from FLEX_WEBGPU, else auto. */
export const defaultLayer: Layer.Layer<Gpu, GpuLayerError> = layer();

/** Always the CPU float64 executor. */
export const cpuLayer: Layer.Layer<Gpu> = Layer.succeed(Gpu, cpuShape([]));
