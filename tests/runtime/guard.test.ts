import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { DeviceLost, OutOfDeviceMemory } from "../../lib/errors.ts";
import { guardExecutor, watchDevice } from "../../lib/runtime/guard.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import type { Executor } from "../../lib/runtime/executor.ts";

/** Just enough of a GPUDevice for the watch: a lost promise we resolve and an event target. */
function fakeDevice() {
  let lose!: (info: { reason: string; message: string }) => void;
  const listeners: ((e: Event) => void)[] = [];
  const device = {
    lost: new Promise((r) => { lose = r; }),
    addEventListener: (_type: string, fn: (e: Event) => void) => listeners.push(fn),
  } as unknown as GPUDevice;
  const raise = (error: object) => listeners.forEach((fn) => fn({ error } as unknown as Event));
  return { device, lose, raise };
}

class GPUOutOfMemoryError { constructor(readonly message: string) {} }
class GPUValidationError { constructor(readonly message: string) {} }

const hanging: Executor = { ...createCpuExecutor(), realize: () => Effect.never };

describe("runtime device guard", () => {
  it("a device lost while a realize is in flight fails it with DeviceLost", async () => {
    const f = fakeDevice();
    const ex = guardExecutor(hanging, watchDevice(f.device, "fake"));
    const pending = runPromise(ex.realize([tensor([1])]));
    setTimeout(() => f.lose({ reason: "unknown", message: "driver reset" }), 5);
    const e = await pending.then(() => undefined, (e) => e);
    expect(e).toBeInstanceOf(DeviceLost);
    expect((e as Error).message).toContain("driver reset");
  });

  it("work after the loss fails at once", async () => {
    const f = fakeDevice();
    const ex = guardExecutor(createCpuExecutor(), watchDevice(f.device, "fake"));
    expect(Array.from((await runPromise(ex.realize([tensor([2, 3])])))[0])).toEqual([2, 3]);
    f.lose({ reason: "unknown", message: "gone" });
    await new Promise((r) => setTimeout(r, 1));
    await expect(runPromise(ex.realize([tensor([1])]))).rejects.toBeInstanceOf(DeviceLost);
  });

  it("uncaptured WebGPU errors during a realize fail it with a typed error", async () => {
    const f = fakeDevice();
    const base = createCpuExecutor();
    let raise: object | undefined;
    const noisy: Executor = { ...base, realize: (r) => Effect.tap(base.realize(r), () => Effect.sync(() => raise && f.raise(raise))) };
    const ex = guardExecutor(noisy, watchDevice(f.device, "fake"));
    raise = new GPUOutOfMemoryError("no memory");
    await expect(runPromise(ex.realize([tensor([1])]))).rejects.toBeInstanceOf(OutOfDeviceMemory);
    raise = new GPUValidationError("bad binding");
    const e = await runPromise(ex.realize([tensor([1])])).then(() => undefined, (e) => e);
    expect(e).toBeInstanceOf(DeviceLost);
    expect((e as Error).message).toContain("bad binding");
    raise = undefined;
    expect((await runPromise(ex.realize([tensor([4])])))[0][0]).toBe(4);
  });
});
