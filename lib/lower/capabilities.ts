/**
 * What the device can do, as a plain value: the runtime fills it from the adapter (never from the
 * provider's name) and the lowering picks kernel families and configs from it alone.
 */
export interface SubgroupMatrixConfig {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly componentType: string; // e.g. "f16"
  readonly resultComponentType: string; // e.g. "f32"
}

/**
 * What the lowering knows of a device: features, limits, subgroup-matrix shapes, tuned configs (`explain`'s optional argument).
 * @ignore
 */
export interface Capabilities {
  readonly features: ReadonlySet<string>;
  readonly limits: {
    readonly maxComputeWorkgroupStorageSize: number;
    readonly maxComputeInvocationsPerWorkgroup: number;
    readonly maxComputeWorkgroupSizeX: number;
    readonly maxStorageBuffersPerShaderStage: number;
    readonly maxStorageBufferBindingSize: number;
    readonly maxBufferSize: number;
    readonly maxComputeWorkgroupsPerDimension: number;
  };
  readonly subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  /** Subgroup size range, when the `subgroups` feature is present. */
  readonly subgroupMinSize?: number;
  readonly subgroupMaxSize?: number;
  /**
   * A software adapter (lavapipe, SwiftShader: lib/runtime/adapter_choice.ts isSoftwareAdapter): kernel compiles cost
   * seconds of CPU each, so generators that offer one pick the form that compiles fastest (the portable backward's loops).
   */
  readonly software?: boolean;
  /**
   * Timed winners of `kernelOptions.autotune: "max"` for this device, by tuning key (lib/lower/flex_tune.ts);
   * the executor fills it (from its timing, or from the persisted cache). Plain JSON-able config values.
   */
  readonly tuned?: Map<string, unknown>;
}

/** WebGPU's guaranteed defaults: what a plan may assume of any adapter. */
export const DEFAULT_CAPABILITIES: Capabilities = {
  features: new Set(),
  limits: {
    maxComputeWorkgroupStorageSize: 16384,
    maxComputeInvocationsPerWorkgroup: 256,
    maxComputeWorkgroupSizeX: 256,
    maxStorageBuffersPerShaderStage: 8,
    maxStorageBufferBindingSize: 134217728,
    maxBufferSize: 268435456,
    maxComputeWorkgroupsPerDimension: 65535,
  },
  subgroupMatrixConfigs: [],
};
