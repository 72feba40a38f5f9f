/**
 * Big sizes (hardening): a realize whose buffers exceed the device's maxStorageBufferBindingSize is refused
 * with the typed BufferTooLarge naming the limit, before any buffer is created (never truncated). The limits
 * are made artificially small on a file-local executor over the runtime's real device.
 */
import { Effect } from "effect";
import { describe, expect, it, relL2 } from "../harness.ts";
import { bufferStats, BufferTooLarge, flexAttention, randn } from "../../mod.ts";
import { createCpuExecutor, Gpu, runPromise, runWithGpu } from "../../effect.ts";
import { createGpuExecutor, type GpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { gpuSkipReason, onGpuRelease, releaseGpuAfterAll } from "../gpu.ts";

const noGpu = await gpuSkipReason();
const MiB = 2 ** 20;

/** An executor on the runtime's device that believes maxStorageBufferBindingSize is `limit`. */
async function smallExecutor(limit: number): Promise<GpuExecutor> {
  const { device, executor } = await runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
  const caps = { ...executor.caps, limits: { ...executor.caps.limits, maxStorageBufferBindingSize: limit } };
  const ex = createGpuExecutor(device!, caps, executor.info);
  onGpuRelease(() => ex.dispose());
  return ex;
}

async function refusal(ex: GpuExecutor, roots: Parameters<GpuExecutor["realize"]>[0]): Promise<BufferTooLarge> {
  const before = bufferStats().created;
  const e = await runPromise(ex.realize(roots)).then(() => undefined, (e: unknown) => e);
  expect(e).toBeInstanceOf(BufferTooLarge);
  expect(bufferStats().created).toBe(before); // refused before the first allocation
  expect(ex.liveBuffers()).toBe(0);
  return e as BufferTooLarge;
}

describe("buffer limits", () => {
  it.skipIf(noGpu)("a 2 MiB q over a 1 MiB maxStorageBufferBindingSize is refused before any allocation", async () => {
    const ex = await smallExecutor(MiB);
    // q [1, 8, 256, 256] f32 = 2 MiB; k, v and out (Dv = 16) stay small, so only q is over the limit
    const q = randn([1, 8, 256, 256]), k = randn([1, 8, 16, 256]), v = randn([1, 8, 16, 16]);
    const { out, lse } = flexAttention(q, k, v, { returnLse: true });
    const e = await refusal(ex, [out, lse]);
    expect(e.bytes).toBe(2 * MiB);
    expect(e.limit).toBe(MiB);
    expect(e.message).toContain("maxStorageBufferBindingSize");
    expect(e.message).toContain(`${MiB} bytes`);
    expect(e.message).toContain("[1,8,256,256]");
  });

  it.skipIf(noGpu)("an output over the limit (inputs under it) is refused the same way", async () => {
    const ex = await smallExecutor(MiB);
    // out [1, 8, 256, 256] = 2 MiB from q [1, 8, 256, 16] and v [1, 8, 16, 256] (128 KiB each)
    const q = randn([1, 8, 256, 16]), k = randn([1, 8, 16, 16]), v = randn([1, 8, 16, 256]);
    const e = await refusal(ex, [flexAttention(q, k, v)]);
    expect(e.bytes).toBe(2 * MiB);
    expect(e.limit).toBe(MiB);
    expect(e.message).toContain("maxStorageBufferBindingSize");
    expect(e.message).toContain("output");
  });

  it.skipIf(noGpu)("a buffer exactly at the limit runs; one element more is refused", async () => {
    const shape = [1, 1, 16, 16]; // q, k, v, out: 1 KiB each
    const q = randn(shape), k = randn(shape), v = randn(shape);
    const out = flexAttention(q, k, v);
    const [got] = await runPromise((await smallExecutor(1024)).realize([out]));
    const [want] = await runPromise(createCpuExecutor().realize([out]));
    expect(relL2(got, want)).toBeLessThanOrEqual(1e-4);
    const e = await refusal(await smallExecutor(1020), [flexAttention(q, k, v)]);
    expect(e.bytes).toBe(1024);
    expect(e.limit).toBe(1020);
  });
});

releaseGpuAfterAll();
