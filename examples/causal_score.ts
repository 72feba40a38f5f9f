/**
 * `deno run -A examples/causal_score.ts`: causal attention as a SCORE mod — future scores become −∞.
 * The result equals the mask-mod version (causal_mask.ts), but no block is skipped: the kernel computes every
 * score and discards half. With the mask mod's BlockMask the same kernel skips the blocks above the diagonal.
 */
import { causalMask, createBlockMask, type Expr, flexAttention, where } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 2, 128, 16];
const { q, k, v } = inputs(B, H, S, S, D);
const causalScore = (s: Expr, _b: Expr, _h: Expr, i: Expr, j: Expr) => where(i.ge(j), s, -Infinity);
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => i >= j });
await report("causal (score mod, dense)", flexAttention(q, k, v, { scoreMod: causalScore }), ref);
const mask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
await report("causal (score mod + causal BlockMask)", flexAttention(q, k, v, { scoreMod: causalScore, blockMask: mask }), ref, mask);
