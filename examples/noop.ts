/**
 * `deno run -A examples/noop.ts`: plain attention — no score mod, no mask (the noop mask keeps everything).
 * flexAttention without a blockMask is exactly this; the explicit noop BlockMask shows every block full.
 */
import { createBlockMask, flexAttention, noopMask } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 2, 64, 16];
const { q, k, v } = inputs(B, H, S, S, D);
const mask = await createBlockMask(noopMask, null, null, S, S, { blockSize: 16 });
await report("noop (no mask)", flexAttention(q, k, v), await reference(q, k, v));
await report("noop (explicit noop BlockMask)", flexAttention(q, k, v, { blockMask: mask }), await reference(q, k, v), mask);
