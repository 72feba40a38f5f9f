/**
 * The GPU executor's readback pool (gpuExecutorTuning.poolReadbacks): a realize reuses the MAP_READ buffers of an
 * earlier realize of the same sizes instead of creating new ones, and a reused buffer never hands out the earlier
 * realize's values (two computations of one size, alternated, each checked against its own host values), with the
 * outputs poisoned first. Turning the pool off creates the readbacks again; dispose() frees the pooled buffers.
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { bufferStats, mulScalar, setPoison, tensor } from "../../mod.ts";
import { Gpu, runPromise, runWithGpu } from "../../effect.ts";
import { createGpuExecutor, gpuExecutorTuning } from "../../lib/runtime/gpu_executor.ts";
import { gpuSkipReason, onGpuRelease, releaseGpuAfterAll } from "../gpu.ts";

const noGpu = await gpuSkipReason();

describe("readback pool", () => {
  it.skipIf(noGpu)("reuses readbacks of the same size, never their old values; off creates them; dispose frees them", async () => {
    const { device, executor } = await runWithGpu(Effect.gen(function* () { return yield* Gpu; }));
    const ex = createGpuExecutor(device!, executor.caps, executor.info);
    onGpuRelease(() => ex.dispose());
    const n = 3000; // 12 000 bytes: one readback of its own size class
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3 + 0.5);
    const base = tensor(x, [n]);
    const realize = async (c: number) => {
      const [got] = await runPromise(ex.realize([mulScalar(base, c)]));
      expect(Array.from(got)).toEqual(Array.from(x, (v) => Math.fround(v * c)));
    };
    setPoison(true);
    try {
      await realize(2); // warm: the pipeline, the upload of x, the first readback
      const created = () => bufferStats().created;
      const c0 = created();
      await realize(-3);
      const perRealize = created() - c0; // output + uniforms; the readback came from the pool
      for (const c of [5, -7, 2, 11]) await realize(c); // alternating values through the same pooled buffer
      expect(created() - c0).toBe(5 * perRealize);
      gpuExecutorTuning.poolReadbacks = false;
      const c1 = created();
      await realize(4);
      await realize(-4);
      expect(created() - c1).toBe(2 * (perRealize + 1)); // one fresh readback each
      expect(ex.liveBuffers()).toBe(0);
    } finally {
      gpuExecutorTuning.poolReadbacks = true;
      setPoison(false);
    }
    const live = bufferStats().live;
    ex.dispose();
    expect(bufferStats().live).toBeLessThan(live); // the pooled readback (and the upload) destroyed
  });
});

releaseGpuAfterAll();
