/**
 * Tiered compilation (lib/runtime/tiered_compile.ts, lib/lower/tiers.ts) on real kernels: an automatic f16 forward
 * of a NEW mod answers its first call from the quick portable plan while the tensor kernel compiles in the
 * background (on lavapipe the emulated tensor family stands in for the native one: tierTesting), and once that
 * compile has settled (awaited through the executor's settleCompiles hook) later calls run the tensor kernel. Every
 * answer is checked against the float64 oracle on fresh f16 inputs, outputs poisoned first. Also: no pipeline is
 * added by further calls, a pinned family and FLEX_TIERED=0 never tier, and a background compile's failure
 * surfaces as KernelCompileError on the next call (then the pipeline compiles synchronously).
 */
import { Effect } from "effect";
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "../kernels/device.ts";
import { causalMask, createBlockMask, type Expr, randn, type Tensor } from "../../mod.ts";
import { flexNodes, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { createGpuExecutor, type GpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { hasNativeMatrices } from "../../lib/lower/flex_tensor_config.ts";
import { tierTesting } from "../../lib/lower/tiers.ts";
import type { KernelOptions } from "../../lib/attention/kernel_options.ts";

// emulated tensor kernels compile for minutes under the built-in WebGPU (naga): Dawn only, as the family's own tests
const skip = skipReason || (gpu.info.provider !== "dawn" ? "tiering is on by default under Dawn only (and emulated kernels compile slowly natively)"
  : !gpu.caps.features.has("shader-f16") ? "no shader-f16" : false);
const TOL_OUT = 5e-4, TOL_LSE = 1e-4;
const [B, H, S, D] = [1, 2, 192, 64];
let seed = 100;
const fresh = () => randn([B, H, S, D], { seed: seed++, dtype: "f16" });

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const setEnv = (k: string, v: string | undefined) => {
  if (g.Deno) { if (v === undefined) g.Deno.env.delete(k); else g.Deno.env.set(k, v); } else if (v === undefined) delete g.process.env[k]; else g.process.env[k] = v;
};

function executor(tiered?: "0"): GpuExecutor {
  setEnv("FLEX_TIERED", tiered);
  try { return createGpuExecutor(gpu.device, gpu.caps, gpu.info); } finally { setEnv("FLEX_TIERED", undefined); }
}

/** One call of the mod `x·c` (causal) on fresh inputs through `ex`, checked against the float64 oracle. */
async function call(ex: GpuExecutor, c: number, kernelOptions?: KernelOptions): Promise<{ errOut: number; out: Float32Array }> {
  const q = fresh(), k = fresh(), v = fresh();
  const blockMask = await createBlockMask(causalMask, null, null, S, S);
  const fc = makeFlexCall(q, k, v, { scoreMod: (x: Expr) => x.mul(c), blockMask, kernelOptions });
  const { out, lse } = flexNodes(fc);
  setPoison(true);
  const [o, l] = await Effect.runPromise(ex.realize([out, lse]));
  const data = (t: unknown) => (t as Tensor).data!;
  const ref = flexReference(fc, { q: data(q), k: data(k), v: data(v), scoreCaptures: [], maskCaptures: [] });
  const errOut = relL2(o, ref.out), errLse = relL2(l, ref.lse);
  expect({ c, errOut, errLse, ok: errOut <= TOL_OUT && errLse <= TOL_LSE }).toEqual({ c, errOut, errLse, ok: true });
  return { errOut, out: Float32Array.from(o) };
}

describe("tiered compile", () => {
  const withHook = async (body: () => Promise<void>) => {
    const was = tierTesting.emulatedTensorTier;
    tierTesting.emulatedTensorTier = !hasNativeMatrices(gpu.caps); // native: the automatic choice is the tensor family already
    try { await body(); } finally { tierTesting.emulatedTensorTier = was; }
  };

  it.skipIf(skip)("a new mod's first call answers from the quick plan, later calls from the tensor kernel", () => withHook(async () => {
    const ex = executor();
    await call(ex, 1.125);
    expect(ex.tierStats()).toMatchObject({ quick: 1, fast: 0 });
    await ex.settleCompiles();
    expect(ex.tierStats().pending).toBe(0);
    const pipelines = ex.pipelineCacheSize();
    await call(ex, 1.125);
    await call(ex, 1.125);
    expect(ex.tierStats()).toMatchObject({ quick: 1, fast: 2, pending: 0 });
    expect(ex.pipelineCacheSize()).toBe(pipelines); // the tier-up compiled nothing more, repeated calls neither
    expect(ex.liveBuffers()).toBe(0);
    ex.dispose();
  }), 120_000);

  it.skipIf(skip)("a pinned family and FLEX_TIERED=0 never tier", () => withHook(async () => {
    const pinned = executor();
    await call(pinned, 1.25, { family: "tensor" });
    expect(pinned.tierStats()).toMatchObject({ quick: 0, fast: 0, pending: 0 });
    pinned.dispose();
    const off = executor("0");
    await call(off, 1.25); // the tensor kernel compiled just above is not cached in this executor: compiled synchronously
    expect(off.tierStats()).toMatchObject({ quick: 0, fast: 0, pending: 0 });
    off.dispose();
  }), 120_000);

  it.skipIf(skip)("a failed background compile surfaces as KernelCompileError on the next call", () => withHook(async () => {
    const ex = executor();
    // the device's async compile gets an entry point the module lacks: Dawn rejects it (a real validation failure)
    const d = gpu.device as GPUDevice & { createComputePipelineAsync: GPUDevice["createComputePipelineAsync"] };
    const real = d.createComputePipelineAsync;
    d.createComputePipelineAsync = (desc: GPUComputePipelineDescriptor) =>
      real.call(d, { ...desc, compute: { ...desc.compute, entryPoint: "no_such_entry_point" } });
    try {
      await call(ex, 1.375); // answered by the quick plan (its kernels compile synchronously)
      await ex.settleCompiles();
    } finally {
      delete (d as unknown as Record<string, unknown>).createComputePipelineAsync; // the prototype's method again
      if (d.createComputePipelineAsync !== real) d.createComputePipelineAsync = real;
    }
    const failed = await call(ex, 1.375).then(() => undefined, (e: unknown) => e as { _tag?: string; message?: string });
    expect(failed?._tag).toBe("KernelCompileError");
    expect(failed?.message).toContain("background");
    // from then on the pipeline compiles synchronously: the tensor kernel answers
    const before = ex.tierStats().fast;
    await call(ex, 1.375);
    expect(ex.tierStats().fast).toBe(before + 1);
    expect(ex.liveBuffers()).toBe(0);
    ex.dispose();
  }), 120_000);
});

releaseGpuAfterAll();
