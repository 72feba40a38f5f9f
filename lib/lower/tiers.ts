/**
 * Tiered compilation, the lowering's side (issue #12: a new mod's kernel ready ≤ 250 ms). The tensor family's
 * forward takes ~1.2 s to compile on the H200 (Tint + the NVIDIA driver, per new mod); the portable f16 path (casts,
 * the f32 kernel, converts) ~0.16 s. A forward plan of the tensor family chosen AUTOMATICALLY carries the portable
 * plan as its `quick` alternative (NodePlan.quick); the executor (lib/runtime/tiered_compile.ts) answers from it
 * while the tensor kernel compiles asynchronously. A pinned `kernelOptions.family` carries no alternative: the
 * pinned family answers every call (bit-stable from the first call on).
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Capabilities } from "./capabilities.ts";
import type { TensorMode } from "./flex_tensor_config.ts";

/**
 * Test hooks, for adapters without subgroup matrices (lavapipe). emulatedTensorTier: an automatic f16 forward plans
 * the EMULATED tensor family with the portable quick tier (its first dispatch JIT-compiles for ~40 s on lavapipe:
 * bench dry runs only). portablePair: an automatic f32 forward plans another portable config with the default one as
 * its quick tier — a stand-in pair of real kernels that CI affords (tests/runtime/tiered_compile.test.ts).
 */
export const tierTesting: { emulatedTensorTier: boolean; portablePair: boolean } = { emulatedTensorTier: false, portablePair: false };

/** The tensor mode an automatic f16 forward tiers up to under the test hook, else undefined. */
export function testTensorTier(call: FlexCall, caps: Capabilities): TensorMode | undefined {
  if (!tierTesting.emulatedTensorTier || call.kernelOptions.family !== undefined) return undefined;
  if (call.q.dtype !== "f16" || call.dropout || call.aux || !caps.features.has("shader-f16")) return undefined;
  return "emulated";
}

/** Whether a forward plan of `call` carries the quick alternative: only where the family was not pinned. */
export function tiersFor(call: FlexCall): boolean {
  return call.kernelOptions.family === undefined;
}
