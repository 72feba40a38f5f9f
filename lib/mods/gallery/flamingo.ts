/**
 * Flamingo's vision cross-attention mask (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198), as
 * attention-gym's `generate_vision_cross_attention_mask_mod` defines it. Queries are TEXT tokens, keys are
 * IMAGE tokens (kvLen = number of image tokens, usually ≠ qLen).
 */
import type { Expr } from "../../ir/expr.ts";
import { type Tensor, tensor } from "../../tensor/tensor.ts";
import { InvalidArgument } from "../../errors.ts";
import type { MaskMod } from "../trace.ts";
import { named } from "../named.ts";
import { asTensor } from "./captures.ts";

/**
 * `flamingo(intervals, imageTokens)`: keeps (q, kv) iff intervals[i][0] ≤ q < intervals[i][1], where
 * i = image(kv) is the image the key token belongs to.
 *
 * - `intervals`: i32 tensor (or nested array) [numImages, 2]: image i is seen by the text tokens
 *   [start_i, end_i). Flamingo's rule "a text token attends to the most recent preceding image" is
 *   start_i = position of image i in the text, end_i = start_{i+1} (the last: the text length); text before
 *   the first image sees no image (its rows are fully masked). Overlapping intervals are allowed.
 * - `imageTokens`: either a number n (every image has n tokens: image(kv) = ⌊kv / n⌋, attention-gym's
 *   `image_token_length`) or an i32 tensor/array [kvLen] with the image index of every key token.
 *
 * Defined for image(kv) < numImages; both tables are captured (new values, same shapes: same kernel).
 *
 * @example
 * ```ts
 * import { createBlockMask, flamingo, flamingoIntervals } from "@flex/attention";
 * // 3 images of 16 tokens each, at text positions 0, 40 and 80 of 128 text tokens
 * const mask = await createBlockMask(flamingo(flamingoIntervals([0, 40, 80], 128), 16), null, null, 128, 48);
 * ```
 */
export function flamingo(
  intervals: Tensor | readonly (readonly number[])[],
  imageTokens: number | Tensor | ArrayLike<number>,
): MaskMod {
  const iv = asTensor(intervals, "i32", 2, "flamingo(intervals)");
  if (iv.shape[1] !== 2) {
    throw new InvalidArgument({ message: `flamingo(intervals) must have shape [numImages, 2], got [${iv.shape}]` });
  }
  const images = iv.shape[0];
  if (typeof imageTokens === "number") {
    const n = imageTokens;
    if (!Number.isInteger(n) || n < 1) {
      throw new InvalidArgument({ message: `flamingo(imageTokens): tokens per image must be a positive integer, got ${n}` });
    }
    return named(`flamingo(${images} images x ${n})`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => {
      const img = kv.floorDiv(n);
      return q.ge(iv.at(img, 0)).and(q.lt(iv.at(img, 1)));
    });
  }
  const ids = asTensor(imageTokens, "i32", 1, "flamingo(imageTokens)");
  return named(`flamingo(${images} images, ${ids.shape[0]} tokens)`, (_b: Expr, _h: Expr, q: Expr, kv: Expr) => {
    const img = ids.at(kv);
    return q.ge(iv.at(img, 0)).and(q.lt(iv.at(img, 1)));
  });
}

/**
 * Intervals for Flamingo's rule from the text positions where the images appear (sorted), for `textLen` tokens.
 *
 * @example
 * ```ts
 * import { flamingoIntervals } from "@flex/attention";
 * const intervals = flamingoIntervals([0, 40, 80], 128); // i32 [3, 2]: [0, 40), [40, 80), [80, 128)
 * ```
 */
export function flamingoIntervals(imagePositions: readonly number[], textLen: number): Tensor {
  const rows = imagePositions.map((p, i) => [p, i + 1 < imagePositions.length ? imagePositions[i + 1] : textLen]);
  return tensor(rows.flat(), [rows.length, 2], { dtype: "i32" });
}
