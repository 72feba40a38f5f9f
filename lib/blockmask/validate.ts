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

/** blockSize: one number for both axes or a [q, kv] pair; default 128 (PyTorch's). */
export function blockSizePair(value: unknown, who: string): [number, number] {
  if (value === undefined) return [128, 128];
  if (Array.isArray(value)) {
    if (value.length !== 2) {
      throw new InvalidArgument({ message: `${who}: blockSize must be a number or a [q, kv] pair, got [${value}]` });
    }
    return [positiveInt(value[0], "blockSize[0]", who), positiveInt(value[1], "blockSize[1]", who)];
  }
  const n = positiveInt(value, "blockSize", who);
  return [n, n];
}
