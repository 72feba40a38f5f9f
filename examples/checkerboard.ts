/**
 * `deno run -A examples/checkerboard.ts`: the checkerboard score mod of PyTorch's FlexAttention tests —
 * scores where |kv − q| is odd are halved, the others doubled. A score mod masks nothing: every block stays full.
 */
import { checkerboard, createBlockMask, type Expr, flexAttention, noopMask, where } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 2, 64, 16];
const { q, k, v } = inputs(B, H, S, S, D);
const ref = await reference(q, k, v, { score: (s, _b, _h, i, j) => (Math.abs(j - i) % 2 === 1 ? s * 0.5 : s * 2) });
await report("checkerboard (gallery)", flexAttention(q, k, v, { scoreMod: checkerboard }), ref);
// the same mod written inline
const inline = (s: Expr, _b: Expr, _h: Expr, i: Expr, j: Expr) => where(j.sub(i).abs().mod(2).eq(1), s.mul(0.5), s.mul(2));
const mask = await createBlockMask(noopMask, null, null, S, S, { blockSize: 16 });
await report("checkerboard (inline)", flexAttention(q, k, v, { scoreMod: inline, blockMask: mask }), ref, mask);
