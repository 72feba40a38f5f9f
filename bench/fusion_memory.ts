/**
 * `deno run -A bench/fusion_memory.ts [B H S D]` (default 1 8 8192 64): the device memory a hand-written
 * causal attention program needs with the attention-fusion pass (one flex call) and without it
 * (FLEX_PASSES=none semantics: the graph as built, S×S scores materialized). Peak bytes from the runtime's
 * buffer statistics on the selected provider.
 */
import {
  arange, bufferStats, deviceInfo, ge, matmul, mul, randn, reshape, resetBufferPeaks, resetRuntime, softmax, transpose, where,
} from "../mod.ts";

const [B, H, S, D] = (Deno.args.length === 4 ? Deno.args : ["1", "8", "8192", "64"]).map(Number);
const hand = () => {
  const q = randn([B, H, S, D], { seed: 1 }), k = randn([B, H, S, D], { seed: 2 }), v = randn([B, H, S, D], { seed: 3 });
  const qi = reshape(arange(S), [S, 1]), ki = reshape(arange(S), [1, S]);
  return matmul(softmax(where(ge(qi, ki), mul(matmul(q, transpose(k, -2, -1)), 1 / Math.sqrt(D)), -Infinity), -1), v);
};
const fmt = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
console.log(`provider: ${(await deviceInfo()).provider} (${(await deviceInfo()).adapter}); B${B} H${H} S${S} D${D} causal, f32`);
for (const mode of ["fused", "unfused"] as const) {
  if (mode === "unfused") Deno.env.set("FLEX_PASSES", "none"); else Deno.env.delete("FLEX_PASSES");
  resetBufferPeaks();
  const t0 = performance.now();
  try {
    const out = await hand().toArray();
    console.log(`${mode}: peak ${fmt(bufferStats().peakBytes)} of device buffers (out ${fmt(out.length * 4)}, q/k/v ${fmt(3 * B * H * S * D * 4)}), ${(performance.now() - t0).toFixed(0)} ms`);
  } catch (e) {
    console.log(`${mode}: ${(e as { _tag?: string })._tag ?? "Error"}: ${(e as Error).message.slice(0, 200)} (peak before the refusal ${fmt(bufferStats().peakBytes)})`);
  }
}
await resetRuntime();
