/**
 * `deno run -A examples/prefix_lm.ts`: prefix LM (T5 / PaLI): the first `n` tokens attend bidirectionally, the rest
 * causally — written as orMasks(prefix, causal) from the gallery, and inline.
 */
import { createBlockMask, type Expr, flexAttention, prefixLm } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D, n] = [1, 2, 128, 16, 40];
const { q, k, v } = inputs(B, H, S, S, D);
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => j < n || i >= j });
const mask = await createBlockMask(prefixLm(n), null, null, S, S, { blockSize: 16 });
await report(`prefix LM (gallery, n = ${n})`, flexAttention(q, k, v, { blockMask: mask }), ref, mask);
const inline = (_b: Expr, _h: Expr, i: Expr, j: Expr) => j.lt(n).or(i.ge(j));
const mask2 = await createBlockMask(inline, null, null, S, S, { blockSize: 16 });
await report(`prefix LM (inline, n = ${n})`, flexAttention(q, k, v, { blockMask: mask2 }), ref);
