/**
 * `deno run -A examples/natten.ts`: neighbourhood attention (NATTEN) on an 8×16 image: every pixel sees a full
 * kH×kW window — near a border the window is shifted inwards instead of cut (compare sasa.ts).
 */
import { createBlockMask, flexAttention, natten } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, D, rows, cols, kH, kW] = [1, 2, 16, 8, 16, 3, 5];
const S = rows * cols;
const { q, k, v } = inputs(B, H, S, S, D);
const mask = await createBlockMask(natten(rows, cols, kH, kW), null, null, S, S, { blockSize: 16 });
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
const rh = Math.floor(kH / 2), rw = Math.floor(kW / 2);
const keep = (i: number, j: number) => {
  const cr = clamp(Math.floor(i / cols), rh, rows - 1 - rh), cc = clamp(i % cols, rw, cols - 1 - rw);
  return Math.abs(cr - Math.floor(j / cols)) <= rh && Math.abs(cc - (j % cols)) <= rw;
};
// every query keeps exactly kH·kW keys
let counts = 0;
for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) counts += keep(i, j) ? 1 : 0;
if (counts !== S * kH * kW) throw new Error(`natten reference: ${counts} kept pairs, expected ${S * kH * kW}`);
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => keep(i, j) });
await report(`NATTEN (${rows}x${cols} image, ${kH}x${kW} kernel)`, flexAttention(q, k, v, { blockMask: mask }), ref, mask);
