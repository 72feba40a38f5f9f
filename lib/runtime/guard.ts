/**
 * Device-level failures turned into typed errors for whatever executor runs on the device:
 * a lost device fails in-flight and later work with DeviceLost; an uncaptured WebGPU error raised while
 * a realize ran fails that realize (out-of-memory → OutOfDeviceMemory, anything else → DeviceLost with
 * the driver's message), instead of silently returning garbage.
 */
import { Effect } from "effect";
import { DeviceLost, type FlexError, OutOfDeviceMemory } from "../errors.ts";
import type { Executor } from "./executor.ts";

export interface DeviceWatch {
  /** Resolves with a DeviceLost once the device is lost (not when the runtime destroys it on purpose). */
  readonly lost: Promise<DeviceLost>;
  /** The loss, once it happened (checked before new work starts). */
  readonly lostError: () => DeviceLost | undefined;
  /** Uncaptured errors seen so far, in order. */
  readonly errors: GPUError[];
  /** Marks the coming loss as intentional (release). */
  readonly releasing: () => void;
}

export function watchDevice(device: GPUDevice, adapter: string): DeviceWatch {
  let intentional = false;
  const errors: GPUError[] = [];
  let lostError: DeviceLost | undefined;
  const lost = device.lost.then((info) =>
    lostError = new DeviceLost({
      message: intentional
        ? `the device of "${adapter}" was released (the runtime was disposed)`
        : `the device of "${adapter}" was lost (${info.reason}): ${info.message || "no message"}; the default runtime opens a new device on the next realize (a layer you built yourself: build it again)`,
    })
  );
  // a lost device must not become an unhandled rejection anywhere
  lost.catch(() => {});
  const record = (event: Event) => { errors.push((event as GPUUncapturedErrorEvent).error); };
  if (typeof device.addEventListener === "function") device.addEventListener("uncapturederror", record);
  else (device as unknown as { onuncapturederror?: (e: Event) => void }).onuncapturederror = record;
  return { lost, lostError: () => lostError, errors, releasing: () => { intentional = true; } };
}

function errorFrom(error: GPUError): FlexError {
  const name = error.constructor?.name ?? "GPUError";
  return name === "GPUOutOfMemoryError"
    ? new OutOfDeviceMemory({ message: `the device ran out of memory: ${error.message}` })
    : new DeviceLost({ message: `WebGPU reported an uncaptured ${name} during a realize: ${error.message}` });
}

function guarded<A>(watch: DeviceWatch, work: Effect.Effect<A, FlexError>): Effect.Effect<A, FlexError> {
  return Effect.suspend(() => {
    const already = watch.lostError();
    if (already) return Effect.fail(already);
    const before = watch.errors.length;
    const lost = Effect.promise(() => watch.lost).pipe(Effect.flatMap((e) => Effect.fail(e)));
    return Effect.raceFirst(work, lost).pipe(
      Effect.flatMap((a) => watch.errors.length > before ? Effect.fail(errorFrom(watch.errors[before])) : Effect.succeed(a)),
    );
  });
}

export function guardExecutor(executor: Executor, watch: DeviceWatch): Executor {
  return {
    info: executor.info,
    caps: executor.caps,
    realize: (roots) => guarded(watch, executor.realize(roots)),
    profile: (roots, iters) => guarded(watch, executor.profile(roots, iters)),
  };
}
