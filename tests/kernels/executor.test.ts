/**
 * The GPU executor's contracts: pipelines reused across sequence lengths, typed errors (captures out of
 * range, compile errors, buffers too large, no config), no leaked buffers, one plan for out and lse.
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { blockMaskOf, makeCall } from "./helpers.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { flexNodes } from "../../lib/attention/flex_attention.ts";
import { createGpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { chooseFlexConfig } from "../../lib/lower/flex_config.ts";
import { planNode } from "../../lib/lower/plan_node.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { customOp } from "../../lib/mods/custom_op.ts";

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

function failureTag<A, E>(eff: Effect.Effect<A, E>): Promise<string> {
  return Effect.runPromise(Effect.flip(eff)).then((e) => (e as { _tag: string })._tag);
}

describe("gpu executor", () => {
  const run = it.skipIf(skipReason);

  run("a new sequence length reuses the pipeline", async () => {
    // split-KV is pinned per pair: the number of splits is a uniform, but splitting adds the combine kernel
    for (const splitKv of [1, 2]) {
      const kernelOptions = { splitKv };
      const c1 = makeCall({ Hq: 1, Sq: 128, options: { blockMask: blockMaskOf(causal, 1, 1, 128, 128, 64), kernelOptions } });
      await Effect.runPromise(gpu.executor.realize([flexNodes(c1).out]));
      const n = gpu.executor.pipelineCacheSize();
      const c2 = makeCall({ Hq: 1, Sq: 200, Skv: 260, options: { blockMask: blockMaskOf(causal, 1, 1, 200, 260, 64), kernelOptions } });
      await Effect.runPromise(gpu.executor.realize([flexNodes(c2).out]));
      expect(gpu.executor.pipelineCacheSize()).toBe(n);
    }
  });

  run("a captured tensor indexed out of range → CaptureOutOfRange, and no buffer leaks", async () => {
    const docs = tensor(Int32Array.from({ length: 64 }, (_, i) => i >> 4), [64], { dtype: "i32" });
    const scoreMod = (s: Expr, _b: Expr, _h: Expr, q: Expr, _kv: Expr) => s.add(docs.at(q.add(5)).toFloat());
    const call = makeCall({ Hq: 1, Sq: 64, options: { scoreMod } });
    expect(await failureTag(gpu.executor.realize([flexNodes(call).out]))).toBe("CaptureOutOfRange");
    expect(gpu.executor.liveBuffers()).toBe(0);
  });

  run("out and lse come from one plan; nothing leaks after a realize", async () => {
    const call = makeCall({ Hq: 1, Sq: 64 });
    const { out, lse } = flexNodes(call);
    expect(planNode(out, gpu.caps).defines).toEqual([out, lse]);
    const [o, l] = await Effect.runPromise(gpu.executor.realize([out, lse]));
    expect(o.length).toBe(64 * 64);
    expect(l.length).toBe(64);
    expect(gpu.executor.liveBuffers()).toBe(0);
  });

  run("broken custom-op WGSL → KernelCompileError with line:col", async () => {
    const bad = customOp({ name: "broken", wgsl: "return x0 +* 2.0;", cpu: (x: number) => x });
    const call = makeCall({ Hq: 1, Sq: 32, options: { scoreMod: (s: Expr) => bad(s) } });
    const err = await Effect.runPromise(Effect.flip(gpu.executor.realize([flexNodes(call).out])));
    expect((err as { _tag: string })._tag).toBe("KernelCompileError");
    expect((err as Error).message).toMatch(/\d+:\d+/);
    expect(gpu.executor.liveBuffers()).toBe(0);
  });

  run("a buffer over the device limit → BufferTooLarge", async () => {
    const small = { ...gpu.caps, limits: { ...gpu.caps.limits, maxBufferSize: 4096, maxStorageBufferBindingSize: 4096 } };
    const ex = createGpuExecutor(gpu.device, small, gpu.info);
    const call = makeCall({ Hq: 1, Sq: 64 });
    expect(await failureTag(ex.realize([flexNodes(call).out]))).toBe("BufferTooLarge");
    expect(ex.liveBuffers()).toBe(0);
    ex.dispose();
  });

  run("profile returns a positive time per iteration", async () => {
    const call = makeCall({ Hq: 1, Sq: 64 });
    const ms = await Effect.runPromise(gpu.executor.profile([flexNodes(call).out], 2));
    expect(ms).toBeGreaterThan(0);
  });

  it("no config fits tiny workgroup storage → NoConfigFits; bad blockM → InvalidArgument", () => {
    const tiny = { ...DEFAULT_CAPABILITIES, limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupStorageSize: 256 } };
    const p = { D: 128, Dv: 128, QB: 128, KB: 128, identityScore: true };
    expect(() => chooseFlexConfig(p, tiny)).toThrow(/no forward-kernel config fits/);
    expect(() => chooseFlexConfig(p, DEFAULT_CAPABILITIES, { blockM: 48 })).toThrow(/blockM/);
    const cfg = chooseFlexConfig(p, DEFAULT_CAPABILITIES);
    expect(cfg.BM * cfg.BN).toBeGreaterThan(0);
  });

  it("unknown ops get a clear error", () => {
    const t = tensor([1, 2], [2]);
    expect(() => planNode(new (t.constructor as typeof import("../../lib/tensor/tensor.ts").Tensor)("frobnicate" as never, [t], [2], "f32", undefined as never), DEFAULT_CAPABILITIES))
      .toThrow(/no kernel for op "frobnicate"/);
  });
});

releaseGpuAfterAll();
