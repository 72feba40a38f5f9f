/**
 * `deno run -A examples/flamingo.ts`: Flamingo's vision cross-attention — 12 text queries attend to 9 image keys
 * (3 images of 3 tokens). The text "<img1><img2>These are two dogs. <img3>This is a cat." has its images at
 * positions 0, 1 and 7; consecutive images are seen together by the text that follows them, so image i is seen
 * by the text tokens [start_i, end_i): img1 [0, 7), img2 [1, 7), img3 [7, 12). The 12×9 mask is printed per element.
 */
import { createBlockMask, createMask, flamingo, flexAttention, tensor } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, D, textLen, imageTokens] = [1, 2, 16, 12, 3];
const intervals = [[0, 7], [1, 7], [7, 12]];
const kvLen = intervals.length * imageTokens;
const { q, k, v } = inputs(B, H, textLen, kvLen, D);
const mod = flamingo(tensor(intervals.flat(), [intervals.length, 2], { dtype: "i32" }), imageTokens);
// block size 1: the BlockMask picture is the element mask itself
const mask = await createBlockMask(mod, null, null, textLen, kvLen, { blockSize: 1 });
const keep = (i: number, j: number) => {
  const [start, end] = intervals[Math.floor(j / imageTokens)];
  return i >= start && i < end;
};
const dense = await createMask(mod, 1, 1, textLen, kvLen).toArray();
for (let i = 0; i < textLen; i++) {
  let row = "";
  for (let j = 0; j < kvLen; j++) {
    if ((dense[i * kvLen + j] === 1) !== keep(i, j)) throw new Error(`createMask differs from the rule at text ${i}, image token ${j}`);
    row += dense[i * kvLen + j] ? "■ " : "· ";
  }
  console.log(`text ${String(i).padStart(2)}  ${row}`);
}
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => keep(i, j) });
await report("Flamingo cross attention (12 text × 9 image tokens)", flexAttention(q, k, v, { blockMask: mask }), ref, mask);
