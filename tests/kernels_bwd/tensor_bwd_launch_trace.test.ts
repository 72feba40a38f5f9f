/**
 * The per-launch profile trace (lib/runtime/debug.ts setLaunchTrace) that bench/tensor_bwd_breakdown.ts reads: on
 * an f16 backward (the table's graph, tiny) it reports every launch of the order with its label, grid and GPU times
 * of the stamped iterations, and stays silent once turned off.
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { causalMask, createBlockMask, flexAttention, vjp } from "../../mod.ts";
import { deviceInfo, getExecutor } from "../../lib/runtime/mod.ts";
import { type LaunchTrace, setLaunchTrace } from "../../lib/runtime/debug.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { explain } from "../../lib/lower/explain.ts";

const noGpu = await gpuSkipReason();
const info = noGpu ? null : await deviceInfo();
const skip = noGpu || (!info!.features.includes("timestamp-query") ? "the adapter lacks timestamp-query" : false);

describe("profile launch trace", () => {
  it.skipIf(skip)("times each launch of an f16 backward, the last iterations stamped, and stops when unset", async () => {
    const ex = await getExecutor();
    const f16 = { dtype: "f16" as const };
    const [q, k, v, dOut] = [1, 2, 3, 4].map((seed) => randn([1, 2, 64, 16], { seed, ...f16 }));
    const blockMask = await createBlockMask(causalMask, null, null, 64, 64, { blockSize: 32 });
    const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask }), q, k, v);
    const grads = back(dOut);
    const traces: LaunchTrace[] = [];
    setLaunchTrace((t) => traces.push(t));
    try {
      await Effect.runPromise(ex.profile(grads, 3));
    } finally {
      setLaunchTrace(undefined);
    }
    expect(traces.length).toBe(1);
    const t = traces[0];
    expect(t.iters).toBe(3);
    expect(t.stamped).toBe(3);
    const planned = new Set(explain(grads, ex.caps).kernels);
    const labels = t.launches.map((l) => l.label);
    // every traced launch is a planned kernel, and the backward's own launches are among them
    for (const l of labels) expect(planned.has(l)).toBe(true);
    expect(labels.some((l) => l.startsWith("flex_bwd_preprocess"))).toBe(true);
    expect(labels.filter((l) => /^flex_bwd_(dq|dkdv)/.test(l)).length).toBeGreaterThanOrEqual(2);
    for (const l of t.launches) {
      expect(l.ms.length).toBe(3);
      for (const ms of l.ms) expect(Number.isFinite(ms) && ms >= 0).toBe(true);
      expect(l.workgroups.every((n) => n > 0)).toBe(true);
    }
    expect(t.totalMs > 0).toBe(true);
    // off: a profile calls nothing
    await Effect.runPromise(ex.profile(grads, 1));
    expect(traces.length).toBe(1);
  });
});

releaseGpuAfterAll();
