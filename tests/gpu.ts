/**
 * GPU availability for test files (top-level await):
 *
 *   const noGpu = await gpuSkipReason();
 *   it.skipIf(noGpu)("kernel matches the oracle", async () => { ... });
 *
 * False when the selected provider (FLEX_WEBGPU, else auto) gives a working GPU adapter; else the reason,
 * which the test name shows as skipped. The default runtime is built once per process and shared.
 */
import { deviceInfo } from "../lib/runtime/mod.ts";

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
