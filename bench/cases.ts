/**
 * The benchmark's attention cases, built from the gallery. bench/torch_flex.py builds the same cases for PyTorch's
 * flex_attention under the same names (keep the two in step): the mask decides the BlockMask (block size 128,
 * broadcast over B and H), the score mod runs inside the kernel.
 *
 *   noop            no mask, no score mod
 *   causal          q ≥ kv
 *   sliding_window  slidingWindow(1024): q − 1024 ≤ kv ≤ q (causal)
 *   prefix_lm       prefixLm(2048): kv < 2048 ∨ q ≥ kv
 *   document        2 equal documents (ids 0 for t < ⌊S/2⌋, else 1) ∧ causal
 *   natten          natten on the imageShape(S) grid (64×64 at S = 4096, 64×128 at S = 8192), kernel 7×7
 *   alibi           alibi(slopes), slopes[h] = 2^(−8(h+1)/H) as a captured f32 tensor [H]; ∧ causal
 *   softcap         softcap(20): 20·tanh(s/20); ∧ causal
 */
import {
  alibi, alibiSlopes, andMasks, causalMask, docIdsFromOffsets, documentMask, imageShape, type MaskMod, natten, prefixLm,
  type ScoreMod, slidingWindow, softcap,
} from "../mod.ts";

export const CASE_NAMES = ["noop", "causal", "sliding_window", "prefix_lm", "document", "natten", "alibi", "softcap"] as const;
export type CaseName = typeof CASE_NAMES[number];

export interface BenchCase {
  readonly name: CaseName;
  readonly mask?: MaskMod;
  readonly scoreMod?: ScoreMod;
  /** The parameters, in words (printed once). */
  readonly params: string;
}

const NATTEN_KERNEL = 7;

/** The case `name` for S tokens and H heads; throws (with a reason to print) when it does not apply to S. */
export function buildCase(name: CaseName, S: number, H: number): BenchCase {
  switch (name) {
    case "noop":
      return { name, params: "no mask" };
    case "causal":
      return { name, mask: causalMask, params: "q ≥ kv" };
    case "sliding_window":
      return { name, mask: slidingWindow(1024), params: "q − 1024 ≤ kv ≤ q" };
    case "prefix_lm":
      return { name, mask: prefixLm(2048), params: "kv < 2048 ∨ q ≥ kv" };
    case "document": {
      const half = Math.floor(S / 2);
      return { name, mask: andMasks(causalMask, documentMask(docIdsFromOffsets([0, half, S]))), params: `docs [0, ${half}) [${half}, ${S}) ∧ causal` };
    }
    case "natten": {
      const [h, w] = imageShape(S);
      if (h * w !== S) throw new Error(`natten: S = ${S} is not an h×w image with h ≤ w ≤ 4h`);
      if (Math.min(h, w) < NATTEN_KERNEL) throw new Error(`natten: the ${h}×${w} image is smaller than the kernel ${NATTEN_KERNEL}`);
      return { name, mask: natten(h, w, NATTEN_KERNEL, NATTEN_KERNEL), params: `${h}×${w} image, kernel ${NATTEN_KERNEL}×${NATTEN_KERNEL}` };
    }
    case "alibi":
      return { name, mask: causalMask, scoreMod: alibi(alibiSlopes(H)), params: "s + 2^(−8(h+1)/H)·(kv − q) ∧ causal" };
    case "softcap":
      return { name, mask: causalMask, scoreMod: softcap(20), params: "20·tanh(s/20) ∧ causal" };
  }
}

/** Parses FLEX_BENCH_CASES (comma-separated; empty or "all" = every case). */
export function parseCases(spec: string): CaseName[] {
  const names = spec.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0 || names.includes("all")) return [...CASE_NAMES];
  const bad = names.filter((n) => !(CASE_NAMES as readonly string[]).includes(n));
  if (bad.length) throw new Error(`FLEX_BENCH_CASES: unknown case(s) ${bad.join(", ")}; known: ${CASE_NAMES.join(", ")}`);
  return names as CaseName[];
}
