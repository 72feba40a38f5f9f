/**
 * Values some kernels need on the host at planning time (BlockMask tables and captured tensors are packed
 * into one read-only buffer): a constant's own data, or the value an executor realized for a computed
 * tensor and recorded here. Tensors are immutable, so a recorded value never goes stale; the map is weak,
 * so it lives only as long as the tensor.
 */
import type { Tensor, TypedData } from "./tensor.ts";

const recorded = new WeakMap<Tensor, TypedData>();

/** The tensor's value if it is known without running anything. */
export function knownValue(t: Tensor): TypedData | undefined {
  return t.data ?? recorded.get(t);
}

/** Records the realized value of a computed tensor (executors only). */
export function recordValue(t: Tensor, value: TypedData): void {
  if (t.data === undefined) recorded.set(t, value);
}
