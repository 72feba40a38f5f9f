/**
 * `deno bench -A bench/`: micro figures for the forward kernel at a size any adapter handles
 * (lavapipe included). The seed-style table with baselines is bench/table.ts.
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, flexAttention, randn } from "../mod.ts";
import { getExecutor } from "../effect.ts";

const [B, H, S, D] = [1, 4, 256, 64];
const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
const mask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 64 });
const ex = await getExecutor();
const noop = flexAttention(q, k, v);
const causal = flexAttention(q, k, v, { blockMask: mask });
await noop.toArray();
await causal.toArray();

Deno.bench(`flex fwd noop B${B} H${H} S${S} D${D}`, async () => { await Effect.runPromise(ex.realize([noop])); });
Deno.bench(`flex fwd causal B${B} H${H} S${S} D${D}`, async () => { await Effect.runPromise(ex.realize([causal])); });
