/**
 * GPU availability for test files (top-level await):
 *
 *   const noGpu = await gpuSkipReason();
 *   it.skipIf(noGpu)("kernel matches the oracle", async () => { ... });
 *
 * False when the selected provider (FLEX_WEBGPU, else auto) gives a working GPU adapter; else the reason,
 * which the test name shows as skipped. The default runtime is built once per process and shared.
 */
import { deviceInfo, liveBufferCount, resetRuntime } from "../lib/runtime/mod.ts";
import { readEnv } from "../lib/runtime/env.ts";
import { expect, it, runtime } from "./harness.ts";

let cached: Promise<string | false> | undefined;

export function gpuSkipReason(): Promise<string | false> {
  cached ??= deviceInfo().then(
    (info) => info.provider === "cpu" ? "no GPU adapter: the runtime fell back to the CPU executor" : false,
    (e) => `no GPU adapter: ${e instanceof Error ? e.message : String(e)}`,
  );
  return cached;
}

/** Skip reason for a feature the adapter must have (e.g. "chromium-experimental-subgroup-matrix"). */
export async function featureSkipReason(feature: string): Promise<string | false> {
  const noGpu = await gpuSkipReason();
  if (noGpu) return noGpu;
  const info = await deviceInfo();
  return info.features.includes(feature) ? false : `the ${info.provider} adapter "${info.adapter}" lacks ${feature}`;
}

/**
 * Skip reason for a suite that runs in ONE pass of `deno task test` (tests/run.ts: deno/dawn, deno/native,
 * bun/dawn): a suite whose cost is compiling many kernels and whose kernels are the same WGSL on every provider,
 * so the other passes would only compile them again. False in that pass (Deno on `provider`, with a GPU), and
 * everywhere when FLEX_TEST_ALL_PASSES=1; else the reason, which the test name shows.
 */
export async function onePassSkipReason(provider: "dawn" | "native", why: string): Promise<string | false> {
  const noGpu = await gpuSkipReason();
  if (noGpu) return noGpu;
  if (readEnv("FLEX_TEST_ALL_PASSES") === "1") return false;
  const only = `runs only in the deno/${provider} pass (${why}; FLEX_TEST_ALL_PASSES=1 runs it here)`;
  if (runtime !== "deno") return `${only}; this pass is Bun`;
  const here = (await deviceInfo()).provider;
  return here === provider ? false : `${only}; the provider here is ${here}`;
}

const releasers: (() => void | Promise<void>)[] = [];

/** Registers something `releaseGpuAfterAll` must release (a test file's own device). */
export function onGpuRelease(release: () => void | Promise<void>): void {
  releasers.push(release);
}

/**
 * Call LAST in a test file that used the GPU: a final test releases the default runtime (executor caches,
 * then the device once its queue is idle) and every device registered with `onGpuRelease`, and checks that
 * no GPU buffer is left (nothing leaks). It does not touch the rare abort of Deno's built-in WebGPU at
 * process teardown (glibc "double free or corruption" after every test passed and after this release ran):
 * libglvnd's EGL exit race with `deno test`'s file thread (scripts/NATIVE_EXIT.md), which tests/run.ts avoids
 * with DENO_WEBGPU_BACKEND=vulkan (and still runs such a file once more, reporting it).
 */
export function releaseGpuAfterAll(): void {
  it("releasing the GPU at the end leaves no buffer alive", async () => {
    await resetRuntime();
    for (const release of releasers.splice(0)) await release();
    expect(liveBufferCount()).toBe(0);
  });
}
