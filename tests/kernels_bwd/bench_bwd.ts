/**
 * Backward timing on the default GPU (not a test): deno run -A tests/kernels_bwd/bench_bwd.ts [S] [D] [H]
 * Prints fwd and fwd+bwd ms per iteration (executor.profile) and bwd TF/s (10·B·H·S²·D·density).
 */
import { causalMask, createBlockMask, flexAttention, vjp } from "../../mod.ts";
import { getExecutor } from "../../effect.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { flexBackwardSource } from "../../lib/lower/plan_flex_grad.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const [S, D, H] = [Number(Deno.args[0] ?? 1024), Number(Deno.args[1] ?? 64), Number(Deno.args[2] ?? 8)];
const ex = await getExecutor();
for (const causal of [false, true]) {
  const blockMask = causal ? await createBlockMask(causalMask, 1, 1, S, S) : undefined;
  const q = randn([1, H, S, D]), k = randn([1, H, S, D]), v = randn([1, H, S, D]);
  const [out, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask }), q, k, v);
  const grads = back(randn([1, H, S, D]));
  const call = out.arg as FlexCall;
  const cfg = (m: "dq" | "dkdv") => JSON.stringify(flexBackwardSource(call, m, ex.caps).config);
  const iters = 20;
  const tf = await runPromise(ex.profile([out], iters));
  const tb = await runPromise(ex.profile(grads, iters));
  const density = causal ? (S + 128) / (2 * S) : 1;
  const bwdMs = tb - tf;
  console.log(`${causal ? "causal" : "noop"} S=${S} D=${D} H=${H}: fwd ${tf.toFixed(2)} ms, fwd+bwd ${tb.toFixed(2)} ms, ` +
    `bwd ${bwdMs.toFixed(2)} ms = ${(10 * H * S * S * D * density / bwdMs / 1e9).toFixed(2)} TF/s  dq ${cfg("dq")} dkdv ${cfg("dkdv")}`);
}
