/**
 * `deno run -A examples/sliding_window.ts`: sliding-window causal attention (Mistral): each query sees itself and
 * the `w` keys before it. Only a band of blocks near the diagonal is computed.
 */
import { createBlockMask, flexAttention, slidingWindow } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D, w] = [1, 2, 128, 16, 20];
const { q, k, v } = inputs(B, H, S, S, D);
const mask = await createBlockMask(slidingWindow(w), null, null, S, S, { blockSize: 16 });
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => j <= i && i - j <= w });
await report(`sliding window (w = ${w})`, flexAttention(q, k, v, { blockMask: mask }), ref, mask);
