/**
 * `deno run -A bench/big_mask.ts [S]` (default 131072): createBlockMask for causal at S (no S×S buffer: block
 * states are evaluated per block on the device), then a causal forward B1 H1 S D64 through it; prints the mask
 * build time, sparsity and the forward's time and TF/s.
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, flexAttention, randn } from "../mod.ts";
import { getExecutor } from "../effect.ts";

const S = Number(Deno.args[0] ?? 131072);
const t0 = performance.now();
const mask = await createBlockMask(causalMask, null, null, S, S);
const t1 = performance.now();
console.log(`createBlockMask causal S=${S}: ${(t1 - t0).toFixed(1)} ms (first call, includes kernel compile), sparsity ${mask.sparsity().toFixed(2)} %`);
const t2 = performance.now();
await createBlockMask(causalMask, null, null, S, S);
console.log(`createBlockMask causal S=${S} again: ${(performance.now() - t2).toFixed(1)} ms`);
for (const dtype of ["f32", "f16"] as const) {
  const q = randn([1, 1, S, 64], { seed: 1, dtype }), k = randn([1, 1, S, 64], { seed: 2, dtype }), v = randn([1, 1, S, 64], { seed: 3, dtype });
  const out = flexAttention(q, k, v, { blockMask: mask });
  const ex = await getExecutor();
  await Effect.runPromise(ex.profile([out], 1));
  const ms = await Effect.runPromise(ex.profile([out], 3));
  const vals = await out.toArray();
  const finite = Array.from(vals.slice(0, 4096)).every(Number.isFinite);
  console.log(`causal forward B1 H1 S${S} D64 ${dtype}: ${ms.toFixed(2)} ms, ${(4 * S * S * 64 * (1 - mask.sparsity() / 100) / (ms * 1e-3) / 1e12).toFixed(1)} TF/s, first rows finite: ${finite}`);
}
