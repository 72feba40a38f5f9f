/**
 * `deno run -A examples/sasa.ts`: stand-alone self-attention (SASA) on an 8×16 image of tokens (row-major): each
 * pixel attends to a window×window square centred on it, cut off at the image borders.
 */
import { createBlockMask, flexAttention, sasa } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, D, rows, cols, window] = [1, 2, 16, 8, 16, 5];
const S = rows * cols, r = Math.floor(window / 2);
const { q, k, v } = inputs(B, H, S, S, D);
const mask = await createBlockMask(sasa(rows, cols, window), null, null, S, S, { blockSize: 16 });
const near = (i: number, j: number) =>
  Math.abs(Math.floor(i / cols) - Math.floor(j / cols)) <= r && Math.abs((i % cols) - (j % cols)) <= r;
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => near(i, j) });
await report(`SASA (${rows}x${cols} image, window ${window})`, flexAttention(q, k, v, { blockMask: mask }), ref, mask);
