/**
 * The f16 forward's score-mod cost, form by form: causal without a mod, then softcap 20 + causal with the library's
 * tanh and with the same function written as other score mods (a rational odd approximation, the exp2 form alone,
 * attention-gym's approximate tanh), side by side in one process, GPU-timed with warm clocks (bench/warm_best.ts).
 * Each form's output is compared with the library softcap's (max |Δ|, f16 output) before it is timed.
 *   FLEX_FORMS_SIZE=B,H,S,D (default 4,16,4096,64)  FLEX_FORMS_DTYPE=f16|f32  FLEX_FORMS=names (default all)
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/fwd_forms.ts  (FLEX_DAWN_TOGGLES=disable_robustness to compare)
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, deviceInfo, flexAttention, randn, type Tensor, tensor } from "../mod.ts";
import { getExecutor } from "../lib/runtime/mod.ts";
import type { Expr } from "../lib/ir/expr.ts";
import type { ScoreMod } from "../lib/mods/trace.ts";
import { softcap, softcapApprox } from "../mod.ts";
import { warmBest, warmProfilesByDefault } from "./warm_best.ts";

warmProfilesByDefault();
if (Deno.env.get("FLEX_TIERED") === undefined) Deno.env.set("FLEX_TIERED", "0");
const [B, H, S, D] = (Deno.env.get("FLEX_FORMS_SIZE") ?? "4,16,4096,64").split(",").map(Number);
const dtype = (Deno.env.get("FLEX_FORMS_DTYPE") ?? "f16") as "f16" | "f32";
const CAP = 20;

// tanh(x) ≈ x·P(x²)/Q(x²) on |x| ≤ 9 (clamped; tanh(9) rounds to 1 in f32): a [4/4] fit of tanh(x)/x in x², max relative
// error 3.1e-7 in f32 arithmetic over ±20 and down to 1e-38 (.scratch/s9/fit_tanh.py)
const RP = [0.9999999925389905, 0.13394105005081494, 0.0035110706402102223, 2.0861903875586325e-05, 1.3701432327098894e-08];
const RQ = [1.0, 0.4672742662032125, 0.025936014708894062, 0.00033108694473637037, 7.919231268075537e-07];
/** c[0] + t·(c[1] + t·(… + t·c[n])) */
const horner = (c: number[], t: Expr): Expr => {
  let acc = t.mul(c[c.length - 1]).add(c[c.length - 2]);
  for (let i = c.length - 3; i >= 0; i--) acc = acc.mul(t).add(c[i]);
  return acc;
};
const rationalTanh = (x: Expr): Expr => {
  const xc = x.clamp(-9, 9), t = xc.mul(xc);
  return xc.mul(horner(RP, t).div(horner(RQ, t)));
};
// the exp2 form alone (no small-|x| branch): sign(x)·(1 − e)/(1 + e), e = exp(−2|x|)
const expTanh = (x: Expr): Expr => {
  const e = x.abs().mul(-2).exp();
  const r = e.neg().add(1).div(e.add(1));
  return x.lt(0).toFloat().mul(-2).add(1).mul(r);
};

const forms: [string, ScoreMod | undefined][] = [
  ["causal (no mod)", undefined],
  ["softcap (library tanh)", softcap(CAP)],
  ["softcap rational [4/4]", (s: Expr) => rationalTanh(s.div(CAP)).mul(CAP)],
  ["softcap exp form", (s: Expr) => expTanh(s.div(CAP)).mul(CAP)],
  ["softcapApprox", softcapApprox(CAP)],
];
const pick = Deno.env.get("FLEX_FORMS");

const info = await deviceInfo();
const ex = await getExecutor();
console.log(`device: ${info.provider} ${info.adapter}; ${dtype} B${B} H${H} S${S} D${D}; toggles ${Deno.env.get("FLEX_DAWN_TOGGLES") ?? "(none)"}`);
const [q, k, v] = [1, 2, 3].map((seed) => {
  const t = randn([B, H, S, D], { seed });
  return dtype === "f32" ? t : tensor(t.data!, t.shape, { dtype });
}) as [Tensor, Tensor, Tensor];
const blockMask = await createBlockMask(causalMask, null, null, S, S);
const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
const flops = 4 * B * H * S * S * D * (1 - blockMask.sparsity() / 100);
let ref: Float32Array | undefined;
for (const [name, scoreMod] of forms) {
  if (pick && !pick.split(",").some((p) => name.includes(p))) continue;
  const out = flexAttention(q, k, v, { blockMask, scoreMod });
  const vals = Float32Array.from((await out.toArray()) as ArrayLike<number>);
  let diff = "";
  if (scoreMod === forms[1][1]) ref = vals;
  else if (ref && scoreMod) {
    let m = 0;
    for (let i = 0; i < vals.length; i++) m = Math.max(m, Math.abs(vals[i] - ref[i]));
    diff = ` max|Δ| vs library softcap ${m.toExponential(2)}`;
  }
  const ms = await warmBest(profile, [out], { warmMs: 200, maxWarm: 1000, maxN: 20, targetMs: 100, reps: 3 });
  console.log(`${name.padEnd(26)} ${ms.toFixed(3)} ms  ${(flops / ms / 1e9).toFixed(1)} TF/s${diff}`);
}
