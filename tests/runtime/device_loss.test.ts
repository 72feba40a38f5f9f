/**
 * Device loss and runtime reset through the default runtime (hardening): a device destroyed under the
 * runtime makes the next realize fail with a typed DeviceLost, and the realize after that gets a fresh device
 * automatically and the right answer; resetRuntime() while a toArray() is in flight rejects it with a typed
 * RuntimeReset (not Effect's "All fibers interrupted without error").
 */
import { Effect } from "effect";
import { describe, expect, it, relL2 } from "../harness.ts";
import { DeviceLost, flexAttention, randn, resetRuntime, RuntimeReset, type Tensor } from "../../mod.ts";
import { createCpuExecutor, Gpu, runPromise, runWithGpu } from "../../effect.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";

const noGpu = await gpuSkipReason();

const SHAPE = [1, 2, 24, 16];
const service = () => runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

/** A fresh call's out and the CPU float64 answer for it. */
function fresh(): { out: Tensor; want: () => Promise<ArrayLike<number>> } {
  const q = randn(SHAPE), k = randn(SHAPE), v = randn(SHAPE);
  const out = flexAttention(q, k, v);
  return { out, want: async () => (await runPromise(createCpuExecutor().realize([out])))[0] };
}

async function expectWorksOnANewDevice(old: GPUDevice): Promise<void> {
  const c = fresh();
  const got = await c.out.toArray();
  expect(relL2(got, await c.want())).toBeLessThanOrEqual(1e-4);
  const now = await service();
  expect(now.device).not.toBe(old);
  expect(now.device).not.toBeNull();
  expect(now.isLost?.()).toBe(false);
}

describe("runtime device loss", () => {
  it.skipIf(noGpu)("a destroyed device: the next realize fails with DeviceLost, the one after gets a fresh device", async () => {
    const warm = fresh();
    expect(relL2(await warm.out.toArray(), await warm.want())).toBeLessThanOrEqual(1e-4);
    const before = await service();
    before.device!.destroy();
    const e = await failure(fresh().out.toArray());
    expect(e).toBeInstanceOf(DeviceLost);
    expect((e as DeviceLost)._tag).toBe("DeviceLost");
    expect((e as Error).message.length).toBeGreaterThan(0);
    await expectWorksOnANewDevice(before.device!);
  });

  it.skipIf(noGpu)("a device lost while a realize is in flight fails it with DeviceLost; the next realize recovers", async () => {
    await fresh().out.toArray(); // warm: the kernel is compiled, so the next realize is quick to reach the GPU
    const before = await service();
    const pending = failure(fresh().out.toArray());
    before.device!.destroy();
    expect(await pending).toBeInstanceOf(DeviceLost);
    await expectWorksOnANewDevice(before.device!);
  });

  it.skipIf(noGpu)("resetRuntime() during an in-flight toArray() rejects it with RuntimeReset; the next realize works", async () => {
    await fresh().out.toArray();
    const before = await service();
    const pending = failure(fresh().out.toArray());
    await resetRuntime();
    const e = await pending;
    expect(e).toBeInstanceOf(RuntimeReset);
    expect((e as RuntimeReset)._tag).toBe("RuntimeReset");
    expect((e as Error).message).toContain("resetRuntime()");
    await expectWorksOnANewDevice(before.device!);
  });

  it.skipIf(noGpu)("resetRuntime() during the first realize (while the layer is built) rejects with RuntimeReset", async () => {
    await resetRuntime();
    const pending = failure(fresh().out.toArray());
    await resetRuntime();
    expect(await pending).toBeInstanceOf(RuntimeReset);
    const c = fresh();
    expect(relL2(await c.out.toArray(), await c.want())).toBeLessThanOrEqual(1e-4);
  });
});

releaseGpuAfterAll();
