/**
 * `deno run -A examples/alibi_closure.ts`: ALiBi as a CLOSURE over a slopes tensor (attention-gym's
 * generate_alibi_bias): score + slopes[h] · (kv − q). The slopes are captured data, so other slopes of the same
 * length reuse the kernel. Combined with a causal BlockMask, as ALiBi models use it.
 */
import { alibi, alibiSlopes, causalMask, createBlockMask, type Expr, flexAttention, tensor } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 4, 64, 16];
const { q, k, v } = inputs(B, H, S, S, D);
const slopeValues = Array.from({ length: H }, (_, i) => Math.pow(2, (-8 * (i + 1)) / H));
const slopes = tensor(slopeValues, [H]); // the same values as alibiSlopes(H)
const alibiMod = (s: Expr, _b: Expr, h: Expr, i: Expr, j: Expr) => s.add(slopes.at(h).mul(j.sub(i)));
const mask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => i >= j, score: (s, _b, h, i, j) => s + Math.fround(slopeValues[h]) * (j - i) });
await report("ALiBi (closure over a slopes tensor)", flexAttention(q, k, v, { scoreMod: alibiMod, blockMask: mask }), ref, mask);
// other slopes, same kernel: the gallery's alibi() takes any slopes tensor
await report("ALiBi (gallery alibi(alibiSlopes(H)))", flexAttention(q, k, v, { scoreMod: alibi(alibiSlopes(H)), blockMask: mask }), ref);
