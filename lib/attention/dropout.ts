/**
 * Dropout on the attention probabilities, `flexAttention(q, k, v, { dropout: { p, seed } })`: after the softmax,
 * before ·V, each probability is kept with probability 1 − p and then scaled by 1/(1 − p); lse is the softmax's
 * (dropout does not touch it). The keep/drop decision of entry (b, h, q, kv) is a pure counter-based hash of
 * (seed, b, h, q, kv) in u32 arithmetic, so the forward, the backward and the float64 oracle regenerate the
 * same mask with nothing stored. kernels/dropout_hash.ts is the WGSL twin of the functions below (same
 * constants, same order: Math.imul and >>> 0 are WGSL's wrapping u32 ops).
 */
import { InvalidArgument } from "../errors.ts";

/**
 * What the user passes.
 *
 * @example
 * ```ts
 * import { flexAttention, randn } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { dropout: { p: 0.1, seed: 7 } }); // same seed, same mask (backward too)
 * ```
 */
export interface DropoutOptions {
  /** Probability of dropping an entry: 0 ≤ p < 1 (0: no dropout, exactly the plain kernel). */
  readonly p: number;
  /** Integer 0 … 2^32 − 1: the mask stream (same seed, same mask; change it per step). */
  readonly seed: number;
}

/** The validated form a FlexCall carries (only for p > 0). */
export interface DropoutSpec {
  readonly p: number;
  readonly seed: number;
  /** Drop iff the entry's 32 hash bits are < threshold = floor(p · 2^32). */
  readonly threshold: number;
  /** 1 / (1 − p), the kept entries' factor. */
  readonly keepScale: number;
}

const TWO_32 = 2 ** 32;

/** Typed errors for bad options; undefined for no dropout (absent or p = 0). */
export function checkDropout(d: unknown): DropoutSpec | undefined {
  if (d === undefined) return undefined;
  if (d === null || typeof d !== "object" || Array.isArray(d)) {
    throw new InvalidArgument({ message: "flexAttention: dropout must be an object { p, seed }, e.g. { p: 0.1, seed: step }" });
  }
  const { p, seed } = d as Partial<DropoutOptions>;
  for (const k of Object.keys(d)) {
    if (k !== "p" && k !== "seed") throw new InvalidArgument({ message: `flexAttention: dropout.${k} is not an option; give { p, seed }` });
  }
  if (typeof p !== "number" || !(p >= 0 && p < 1)) {
    throw new InvalidArgument({ message: `flexAttention: dropout.p = ${JSON.stringify(p)} must be a number with 0 ≤ p < 1` });
  }
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed >= TWO_32) {
    throw new InvalidArgument({ message: `flexAttention: dropout.seed = ${JSON.stringify(seed)} must be an integer in 0 … 4294967295` });
  }
  if (p === 0) return undefined;
  return { p, seed, threshold: Math.min(TWO_32 - 1, Math.floor(p * TWO_32)), keepScale: 1 / (1 - p) };
}

/** A 32-bit finalizer with full avalanche (every input bit flips each output bit with probability ≈ ½). */
export function dropMix(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Absorb one counter word into the running key. */
function dropStep(key: number, x: number): number {
  return dropMix((((key ^ x) >>> 0) + 0x9e3779b9) >>> 0);
}

/** The key of one query row (b, h: the query head, q): computed once per row by the kernels. */
export function dropRowKey(seed: number, b: number, h: number, q: number): number {
  return dropStep(dropStep(dropStep(dropMix((seed + 0x632be5ab) >>> 0), b), h), q);
}

/** The 32 hash bits of entry (row, kv). */
export function dropBits(rowKey: number, kv: number): number {
  return dropStep(rowKey, kv);
}

/** The factor of entry (b, h, q, kv): 0 (dropped) or 1/(1 − p). */
export function dropFactor(d: DropoutSpec, rowKey: number, kv: number): number {
  return dropBits(rowKey, kv) >= d.threshold ? d.keepScale : 0;
}
