/**
 * A deliberately wrong check (causal attention compared with a non-causal reference): the examples' shared
 * report() must print the error and exit non-zero, or the examples test proves nothing.
 */
import { causalMask, createBlockMask, flexAttention } from "../../mod.ts";
import { inputs, reference, report } from "../../examples/_check.ts";

const { q, k, v } = inputs(1, 1, 32, 32, 16);
const mask = await createBlockMask(causalMask, null, null, 32, 32, { blockSize: 16 });
await report("wrong on purpose", flexAttention(q, k, v, { blockMask: mask }), await reference(q, k, v));
