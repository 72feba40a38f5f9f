/**
 * `deno run -A examples/causal_mask.ts`: causal attention as a MASK mod — each query sees itself and the past.
 * As a mask, the BlockMask skips the blocks above the diagonal entirely (compare causal_score.ts).
 */
import { causalMask, createBlockMask, flexAttention } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 2, 128, 16];
const { q, k, v } = inputs(B, H, S, S, D);
// the gallery's causalMask is (b, h, q, kv) => q.ge(kv); written inline it would be the same
const mask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
const out = flexAttention(q, k, v, { blockMask: mask });
await report("causal (mask mod)", out, await reference(q, k, v, { mask: (_b, _h, i, j) => i >= j }), mask);
