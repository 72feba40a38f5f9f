/**
 * The computation the browser page shows, shared with its CI test (tests/package/browser_smoke.ts), which
 * recomputes it in Deno on the float64 CPU executor from the same seed: a causal sliding-window BlockMask and
 * an ALiBi flex forward on seeded random q, k, v.
 */
import { alibi, alibiSlopes, andMasks, type BlockMask, causalMask, createBlockMask, flexAttention, randn, slidingWindow, type Tensor } from "../../mod.ts";

/** Sizes small enough for a software adapter or the CPU executor in a CI browser. */
export const SIZES = { B: 1, H: 2, S: 256, D: 32, window: 64, blockSize: 32 } as const;

/** The example's mask and lazy output for one seed (q, k, v from seeds seed, seed + 1, seed + 2). */
export async function buildExample(seed: number): Promise<{ mask: BlockMask; out: Tensor }> {
  const { B, H, S, D, window, blockSize } = SIZES;
  const [q, k, v] = [0, 1, 2].map((i) => randn([B, H, S, D], { seed: seed + i }));
  const mask = await createBlockMask(andMasks(causalMask, slidingWindow(window)), null, null, S, S, { blockSize });
  const out = flexAttention(q, k, v, { blockMask: mask, scoreMod: alibi(alibiSlopes(H)) });
  return { mask, out };
}

/** max |a − b| (Infinity where either is NaN: poisoned, unwritten outputs fail). */
export function maxAbsError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    m = Number.isNaN(e) ? Infinity : Math.max(m, e);
  }
  return m;
}

/** f32 kernels vs float64, outputs of size O(1). */
export const TOLERANCE = 2e-4;
