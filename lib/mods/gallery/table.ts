/**
 * GALLERY: every gallery mod, instantiated for a square problem of S tokens, so the demo, the kernel tests
 * and the benchmarks can iterate one table. `make(S, H)` builds sensible parameters for S (and H heads, which
 * only ALiBi uses); `params` says how, in words.
 *
 * Image masks (sasa, natten) need S = Himg × Wimg: `imageShape(S)` picks the factorization with the largest
 * area ≤ S and aspect ratio ≤ 4 (12 → 3×4, 37 → 6×6, 128 → 8×16); tokens beyond the image are masked out,
 * so when S has no good factorization the last rows are fully masked (out = 0, lse = −∞).
 */
import type { MaskMod, ScoreMod } from "../trace.ts";
import { andMasks } from "../algebra.ts";
import { tensor } from "../../tensor/tensor.ts";
import { causalMask } from "./causal.ts";
import { slidingWindow } from "./sliding_window.ts";
import { prefixLm } from "./prefix_lm.ts";
import { documentMask } from "./document_mask.ts";
import { docIdsFromOffsets, jaggedMask } from "./jagged.ts";
import { sasa } from "./sasa.ts";
import { natten } from "./natten.ts";
import { alibi, alibiSlopes } from "./alibi.ts";
import { softcap } from "./softcap.ts";
import { softcapApprox } from "./softcap_approx.ts";
import { checkerboard } from "./checkerboard.ts";
import { flamingo, flamingoIntervals } from "./flamingo.ts";

/**
 * One gallery entry: a mask or score mod maker for a sequence length (and heads), with its parameters in words.
 *
 * @example
 * ```ts
 * import { GALLERY } from "@flex/attention";
 * const entry = GALLERY.causal;
 * if (entry.kind === "mask") console.log(entry.make(1024).name);
 * ```
 */
export type GalleryEntry =
  | { readonly kind: "mask"; readonly make: (S: number, H?: number) => MaskMod; readonly params: string }
  | { readonly kind: "score"; readonly make: (S: number, H?: number) => ScoreMod; readonly params: string };

/**
 * Image rows × columns for S tokens: the largest area ≤ S with rows ≤ cols ≤ 4·rows.
 *
 * @example
 * ```ts
 * import { imageShape } from "@flex/attention";
 * imageShape(1000); // [rows, cols] of the largest image grid of at most 1000 tokens
 * ```
 */
export function imageShape(S: number): [number, number] {
  for (let area = S; area > 0; area--) {
    for (let h = Math.floor(Math.sqrt(area)); h >= Math.max(1, Math.ceil(Math.sqrt(area / 4))); h--) {
      if (area % h === 0) return [h, area / h];
    }
  }
  return [1, 1];
}

/**
 * Document boundaries for S tokens: three documents of about 20%, 30% and 50%.
 *
 * @example
 * ```ts
 * import { galleryOffsets, jaggedMask } from "@flex/attention";
 * const mask = jaggedMask(galleryOffsets(1024));
 * ```
 */
export function galleryOffsets(S: number): number[] {
  return [0, Math.round(S / 5), Math.round(S / 2), S];
}

/** An odd window that fits an image with shortest side `side`: 3 on small images, larger on big ones. */
function oddWindow(side: number): number {
  return Math.min(side % 2 === 1 ? side : side - 1, Math.max(3, 2 * Math.floor(side / 4) + 1));
}

function flamingoFor(S: number): MaskMod {
  const images = Math.max(1, Math.min(3, Math.floor(S / 2)));
  const imageOf = Int32Array.from({ length: S }, (_, kv) => Math.floor((kv * images) / S));
  const positions = Array.from({ length: images }, (_, i) => Math.floor((S * (2 * i + 1)) / (2 * images)));
  return flamingo(flamingoIntervals(positions, S), tensor(imageOf, undefined, { dtype: "i32" }));
}

/**
 * The seed gallery by name (causal, sliding window, prefix LM, document, …): what `deno task demo` walks through.
 *
 * @example
 * ```ts
 * import { GALLERY } from "@flex/attention";
 * for (const [name, entry] of Object.entries(GALLERY)) console.log(name, entry.kind, entry.params);
 * ```
 */
export const GALLERY: Readonly<Record<string, GalleryEntry>> = {
  causal: { kind: "mask", make: () => causalMask, params: "none" },
  slidingWindow: { kind: "mask", make: (S) => slidingWindow(Math.max(1, Math.floor(S / 8))), params: "w = max(1, ⌊S/8⌋)" },
  prefixLm: { kind: "mask", make: (S) => prefixLm(Math.floor(S / 4)), params: "n = ⌊S/4⌋" },
  document: {
    kind: "mask",
    make: (S) => documentMask(docIdsFromOffsets(galleryOffsets(S))),
    params: "3 documents with offsets [0, round(S/5), round(S/2), S] (non-causal)",
  },
  causalDocument: {
    kind: "mask",
    make: (S) => andMasks(causalMask, documentMask(docIdsFromOffsets(galleryOffsets(S)))),
    params: "and(causal, document) with the documents above",
  },
  jagged: {
    kind: "mask",
    make: (S) => jaggedMask(galleryOffsets(S), causalMask),
    params: "offsets [0, round(S/5), round(S/2), S], inner mask causal (local positions)",
  },
  sasa: {
    kind: "mask",
    make: (S) => { const [h, w] = imageShape(S); return sasa(h, w, oddWindow(Math.min(h, w))); },
    params: "image imageShape(S), window odd ≥ 3 (≈ shortest side / 2); tokens beyond the image masked",
  },
  natten: {
    kind: "mask",
    make: (S) => {
      const [h, w] = imageShape(S);
      const k = oddWindow(Math.min(h, w));
      return natten(h, w, k, k);
    },
    params: "image imageShape(S), kernel k×k with k odd ≥ 3 when it fits; tokens beyond the image masked",
  },
  flamingo: {
    kind: "mask",
    make: flamingoFor,
    params: "S text queries × S image keys, 3 images of ≈S/3 tokens; image i seen from text position S(2i+1)/6 on",
  },
  alibi: { kind: "score", make: (_S, H = 4) => alibi(alibiSlopes(H)), params: "slopes alibiSlopes(H), H defaults to 4" },
  softcap: { kind: "score", make: () => softcap(2), params: "cap = 2" },
  softcapApprox: { kind: "score", make: () => softcapApprox(2), params: "cap = 2, tanh_approx custom op" },
  checkerboard: { kind: "score", make: () => checkerboard, params: "none" },
};
