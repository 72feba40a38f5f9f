/**
 * `deno run -A examples/jagged.ts`: jagged (nested) sequences — three sequences of lengths 30, 50 and 48 packed into
 * one batch row, each with a causal mask in its OWN local positions (PyTorch's generate_doc_mask_mod).
 */
import { causalMask, createBlockMask, flexAttention, jaggedMask } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const offsets = [0, 30, 80, 128];
const [B, H, D] = [1, 2, 16], S = offsets[offsets.length - 1];
const { q, k, v } = inputs(B, H, S, S, D);
const mask = await createBlockMask(jaggedMask(offsets, causalMask), null, null, S, S, { blockSize: 16 });
const doc = (t: number) => offsets.findIndex((o, d) => t >= o && t < offsets[d + 1]);
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => doc(i) === doc(j) && i - offsets[doc(i)] >= j - offsets[doc(j)] });
await report("jagged sequences (lengths 30, 50, 48; causal inside each)", flexAttention(q, k, v, { blockMask: mask }), ref, mask);
