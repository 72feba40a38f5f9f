/** Argument checks shared by the BlockMask constructors (typed errors with a how-to-fix message). */
import { InvalidArgument } from "../errors.ts";

export function positiveInt(value: unknown, name: string, who: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new InvalidArgument({ message: `${who}: ${name} must be a positive integer, got ${String(value)}` });
  }
  return value;
}

/** B / H: null or undefined broadcast (1), otherwise a positive integer. */
export function batchDim(value: unknown, name: string, who: string): number {
  return value === null || value === undefined ? 1 : positiveInt(value, name, `${who} (null broadcasts)`);
}

/**
 * The largest block side. Two sides multiply to at most 2^30, so a block's entry count fits a u32 (the mask
 * kernel's loop counter) with room to spare, and one workgroup never walks more than that. Blocks larger than
 * a length are allowed (as in PyTorch): they are clipped to it, the sticking-out part counting as false.
 */
export const MAX_BLOCK_SIZE = 1 << 15;

function blockSide(value: unknown, name: string, who: string): number {
  const n = positiveInt(value, name, who);
  if (n > MAX_BLOCK_SIZE) {
    throw new InvalidArgument({
      message: `${who}: ${name} ${n} is above the largest block size ${MAX_BLOCK_SIZE}; use at most ${MAX_BLOCK_SIZE} ` +
        `(the default is 128; a block larger than the length is fine, it is clipped to it)`,
    });
  }
  return n;
}

/** blockSize: one number for both axes or a [q, kv] pair, each a positive integer ≤ MAX_BLOCK_SIZE; default 128 (PyTorch's). */
export function blockSizePair(value: unknown, who: string): [number, number] {
  if (value === undefined) return [128, 128];
  if (Array.isArray(value)) {
    if (value.length !== 2) {
      throw new InvalidArgument({ message: `${who}: blockSize must be a number or a [q, kv] pair, got [${value}]` });
    }
    return [blockSide(value[0], "blockSize[0]", who), blockSide(value[1], "blockSize[1]", who)];
  }
  const n = blockSide(value, "blockSize", who);
  return [n, n];
}
