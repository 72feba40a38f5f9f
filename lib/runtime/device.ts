/**
 * Opening a device: the adapter's real limits (every numeric one) and every useful feature it has, so the
 * lowering can plan for what the hardware offers rather than WebGPU's small defaults.
 */
import { Effect } from "effect";
import { AdapterUnavailable } from "../errors.ts";
import type { Capabilities, SubgroupMatrixConfig } from "../lower/capabilities.ts";
import type { DeviceInfo, ProviderName } from "./executor.ts";
import { adapterFacts, isSoftwareAdapter } from "./adapter_choice.ts";

/** Features the kernels can use when present. */
export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query", "chromium-experimental-subgroup-matrix"] as const;

export function numericLimits(limits: object): Record<string, number> {
  const out: Record<string, number> = {};
  // limits are prototype getters, so for…in (not Object.keys) sees them
  for (const key in limits) {
    const v = (limits as Record<string, unknown>)[key];
    if (typeof v === "number") out[key] = v;
  }
  return out;
}

export function createDevice(adapter: GPUAdapter, provider: ProviderName): Effect.Effect<GPUDevice, AdapterUnavailable> {
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f as GPUFeatureName)) as GPUFeatureName[];
  const requiredLimits = numericLimits(adapter.limits);
  return Effect.tryPromise({
    try: () => adapter.requestDevice({ label: "flex-attention", requiredFeatures, requiredLimits }),
    catch: (e) => new AdapterUnavailable({
      provider,
      message: `WebGPU provider "${provider}": requestDevice() failed: ${e instanceof Error ? e.message : e}`,
    }),
  });
}

type AdapterInfoExtras = GPUAdapterInfo & {
  readonly subgroupMinSize?: number;
  readonly subgroupMaxSize?: number;
  readonly subgroupMatrixConfigs?: readonly Record<string, unknown>[];
};

/** Dawn lists its subgroup-matrix shapes on `adapter.info.subgroupMatrixConfigs` (with the feature). */
function matrixConfigs(info: AdapterInfoExtras, features: ReadonlySet<string>): SubgroupMatrixConfig[] {
  if (!features.has("chromium-experimental-subgroup-matrix")) return [];
  return (info.subgroupMatrixConfigs ?? []).map((c) => ({
    M: Number(c.M), N: Number(c.N), K: Number(c.K),
    componentType: String(c.componentType), resultComponentType: String(c.resultComponentType),
  }));
}

/** The plain Capabilities value the lowering plans from (built from the device, never the provider's name). */
export function capabilitiesOf(adapter: GPUAdapter, device: GPUDevice): Capabilities {
  const features = new Set<string>(device.features as unknown as Iterable<string>);
  const l = device.limits;
  const info = adapter.info as AdapterInfoExtras;
  const subgroups = features.has("subgroups") && info.subgroupMinSize && info.subgroupMaxSize
    ? { subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize }
    : {};
  return {
    features,
    limits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
    subgroupMatrixConfigs: matrixConfigs(info, features),
    ...subgroups,
    // the provider name is only recorded in the facts; the verdict reads the adapter's own description
    ...(isSoftwareAdapter(adapterFacts("dawn", adapter)) ? { software: true } : {}),
  };
}

export function adapterName(adapter: GPUAdapter): string {
  const i = adapter.info;
  return i.description || [i.vendor, i.architecture, i.device].filter(Boolean).join(" ") || "unknown adapter";
}

export function deviceInfoOf(provider: ProviderName, adapter: GPUAdapter, device: GPUDevice): DeviceInfo {
  return {
    provider,
    adapter: adapterName(adapter),
    features: [...(device.features as unknown as Iterable<string>)].sort(),
    limits: numericLimits(device.limits),
  };
}
