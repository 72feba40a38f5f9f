/**
 * The executor contract: the GPU executor and the CPU float64 executor both realize Tensor graphs behind it.
 */
import type { Effect } from "effect";
import type { Tensor, TypedData } from "../tensor/tensor.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import type { FlexError } from "../errors.ts";

/**
 * A provider: Dawn (npm `webgpu`), the runtime's own `navigator.gpu`, or the float64 CPU executor.
 *
 * @example
 * ```ts
 * import { deviceInfo, type ProviderName } from "@flex/attention";
 * const p: ProviderName = (await deviceInfo()).provider; // "dawn" | "native" | "cpu"
 * ```
 */
export type ProviderName = "dawn" | "native" | "cpu";

/**
 * What `deviceInfo()` returns: the provider actually used and what its adapter offers.
 *
 * @example
 * ```ts
 * import { deviceInfo } from "@flex/attention";
 * const { provider, adapter, features } = await deviceInfo();
 * ```
 */
export interface DeviceInfo {
  /** The provider actually used. */
  readonly provider: ProviderName;
  /** The adapter's name (vendor, device, driver). */
  readonly adapter: string;
  /** The WebGPU features the device was opened with. */
  readonly features: string[];
  /** The device's limits. */
  readonly limits: Record<string, number>;
}

export interface Executor {
  readonly info: DeviceInfo;
  readonly caps: Capabilities;
  /** Realizes `roots` (and whatever they need) in one submit where possible; returns their values in order. */
  realize(roots: readonly Tensor[]): Effect.Effect<TypedData[], FlexError>;
  /**
   * Benchmark helper: realizes once (compiles, warms), then runs the same launches `iters` times in one
   * submit without readback and returns milliseconds per iteration (GPU), or NaN on the CPU executor.
   */
  profile(roots: readonly Tensor[], iters: number): Effect.Effect<number, FlexError>;
  /** Drops the executor's caches (uploads, pipelines) and destroys their buffers; the runtime calls it at release. */
  dispose?(): void;
  /** Settles its background pipeline compiles before the device goes (the runtime calls it at release, before dispose). */
  drainCompiles?(): Promise<void>;
}
