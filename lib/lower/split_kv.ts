/**
 * The split-KV factor a user pins with `kernelOptions.splitKv`, shared by the query-tile forward (plan_flex.ts) and
 * the decode tile (flex_decode_config.ts), which differ only in how they choose a factor when none is pinned.
 */
import { InvalidArgument } from "../errors.ts";

/** `requested` validated (a positive integer: planning can be reached without the API's validation), capped at one
 * kv block per split. */
export function pinnedSplits(requested: number, kvBlocks: number): number {
  if (!Number.isInteger(requested) || requested < 1) {
    throw new InvalidArgument({ message: `kernelOptions.splitKv = ${requested} must be a positive integer` });
  }
  return Math.min(requested, Math.max(1, kvBlocks));
}
