/**
 * `deno run -A examples/document.ts`: document masking for packed sequences — tokens see only tokens of their own
 * document, causally. The document ids are a captured tensor: new ids of the same length reuse the kernel.
 */
import { andMasks, causalMask, createBlockMask, documentMask, flexAttention } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 2, 128, 16];
const { q, k, v } = inputs(B, H, S, S, D);
// three documents: tokens 0–29, 30–89, 90–127
const docIds = Int32Array.from({ length: S }, (_, t) => (t < 30 ? 0 : t < 90 ? 1 : 2));
const mask = await createBlockMask(andMasks(causalMask, documentMask(docIds)), null, null, S, S, { blockSize: 16 });
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => j <= i && docIds[i] === docIds[j] });
await report("causal document mask (3 documents)", flexAttention(q, k, v, { blockMask: mask }), ref, mask);
