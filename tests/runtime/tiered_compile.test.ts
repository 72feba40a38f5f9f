/**
 * Tiered compilation (lib/runtime/tiered_compile.ts, lib/lower/tiers.ts) on real kernels: a NEW mod's first call
 * answers from the quick plan while the fast plan's kernel compiles in the background, and once that compile has
 * settled (awaited through the executor's settleCompiles hook) later calls run the fast plan. Where the adapter has
 * subgroup matrices (the H200) the pair is the real one: an automatic f16 forward, the tensor kernel and the portable
 * f16 plan; elsewhere (lavapipe: the emulated tensor kernel's first dispatch JIT-compiles for ~40 s there) a stand-in
 * pair of real portable kernels on f32 inputs (tierTesting.portablePair: another config, the default one as its quick
 * tier). Every answer is checked against the float64 oracle on fresh inputs, outputs poisoned first. Also: further
 * calls add no pipeline, a pinned family and FLEX_TIERED=0 never tier, a background compile's failure surfaces as
 * KernelCompileError on the next call (then the pipeline compiles synchronously), and the lowering attaches the
 * quick plan to an automatic tensor-family forward only.
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
import { planFlex } from "../../lib/lower/plan_flex.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import type { KernelOptions } from "../../lib/attention/kernel_options.ts";

const skip = skipReason || (gpu.info.provider !== "dawn" ? "tiering is on by default under Dawn only" : false);
const native = !skipReason && hasNativeMatrices(gpu.caps);
// the real pair where it runs, else the stand-in pair (f32)
const dtype = native ? "f16" : "f32";
const pinnedFamily: KernelOptions = { family: native ? "tensor" : "portable" };
const TOL_OUT = native ? 5e-4 : 2e-5, TOL_LSE = native ? 1e-4 : 2e-5;
const [B, H, S, D] = [1, 2, 192, 64];
let seed = 100;
const fresh = () => randn([B, H, S, D], { seed: seed++, dtype });

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
    tierTesting.portablePair = !native; // native: the automatic f16 choice is the tensor family already
    try { await body(); } finally { tierTesting.portablePair = false; }
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
    await call(pinned, 1.25, pinnedFamily);
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

  it("the lowering attaches the quick plan to an automatic tensor-family forward only", () => {
    const caps = {
      ...DEFAULT_CAPABILITIES, features: new Set(["shader-f16", "subgroups"]), subgroupMinSize: 32, subgroupMaxSize: 32,
      limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupStorageSize: 65536, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 },
      subgroupMatrixConfigs: [{ M: 16, N: 16, K: 16, componentType: "f16", resultComponentType: "f32" }],
    };
    const h = () => randn([1, 2, 256, 64], { seed: seed++, dtype: "f16" });
    const auto = planFlex(makeFlexCall(h(), h(), h(), { scoreMod: (x: Expr) => x.mul(2) }), caps);
    expect(auto.launches.some((l) => l.label.startsWith("flex_forward_tensor"))).toBe(true);
    const quick = auto.quick?.();
    // the portable f16 plan: the f32 twin's out and lse converted (its forward kernel is the twin's input plan)
    expect(quick?.launches.map((l) => l.label.split(" ")[0])).toEqual(["pointwise.copy.f32→f16", "pointwise.copy.f32"]);
    expect(quick?.defines).toEqual(auto.defines);
    expect(planFlex(makeFlexCall(h(), h(), h(), { scoreMod: (x: Expr) => x.mul(2), kernelOptions: { family: "tensor" } }), caps).quick).toBeUndefined();
  });
});

releaseGpuAfterAll();
