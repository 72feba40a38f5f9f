/**
 * The f32 forward against float64 on fresh randn inputs, both ways the library runs it: the default (where the
 * adapter has subgroup matrices: the tensor family's f16x3, f16 hi + lo pairs and three products) and
 * `f32Precision: "ieee"` (the portable family's scalar f32 FMAs) — beside bench/torch_f32_accuracy.py's numbers
 * for PyTorch's compiled flex on the same shapes and cases (B1 H4 D64, S 512 and 2048, noop / causal / softcap 20
 * + causal).
 *
 *   FLEX_WEBGPU=dawn deno run -A bench/f32_accuracy.ts
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, randn } from "../mod.ts";
import { getExecutor } from "../effect.ts";
import { flexNodes, makeFlexCall } from "../lib/attention/flex_attention.ts";
import { flexReference } from "../lib/runtime/cpu/flex_reference.ts";
import { planFlex } from "../lib/lower/plan_flex.ts";
import type { Expr } from "../lib/ir/expr.ts";

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = a[i] - b[i];
    if (Number.isFinite(b[i])) { num += d * d; den += b[i] * b[i]; } else if (a[i] !== b[i]) num = NaN;
  }
  return Math.sqrt(num / den);
};
const exec = await getExecutor();
// FLEX_ACC_S: the lengths (default 512,2048)
const lengths = (Deno.env.get("FLEX_ACC_S") ?? "512,2048").split(",").map(Number);
for (const S of lengths) {
  for (const name of ["noop", "causal", "softcap"]) {
    const blockMask = name === "noop" ? undefined : await createBlockMask(causalMask, 1, 1, S, S);
    const scoreMod = name === "softcap" ? (s: Expr) => s.div(20).tanh().mul(20) : undefined;
    const [q, k, v] = [0, 1, 2].map(() => randn([1, 4, S, 64]));
    let ref: ReturnType<typeof flexReference> | undefined;
    for (const f32Precision of ["f16x3", "ieee"] as const) {
      const call = makeFlexCall(q, k, v, { blockMask, scoreMod, kernelOptions: { f32Precision } });
      const label = (exec.caps ? planFlex(call, exec.caps).launches.map((l) => l.label).find((l) => l.startsWith("flex_forward")) : undefined) ?? "cpu";
      const { out, lse } = flexNodes(call);
      const [o, l] = await Effect.runPromise(exec.realize([out, lse]));
      ref ??= flexReference(call, { q: q.data!, k: k.data!, v: v.data!, scoreCaptures: call.scoreMod.captures.map((t) => (t as unknown as { data: Float32Array }).data), maskCaptures: [] });
      console.log(`S${S} ${name} f32 ${f32Precision}: out rel. L2 ${relL2(o as Float32Array, ref.out).toExponential(3)}, lse rel. L2 ${relL2(l as Float32Array, ref.lse).toExponential(3)}  (${label})`);
    }
  }
}
Deno.exit(0);
