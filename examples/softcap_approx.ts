/**
 * `deno run -A examples/softcap_approx.ts`: logit soft-capping (Gemma 2) with the approximate tanh CUSTOM OP:
 * cap · tanhApprox(score / cap). tanhApprox is a custom op (WGSL body, float64 twin, exact derivative); here it is
 * restated in plain JS for the check: x(27 + x²)/(27 + 9x²) for |x| < 3, sign(x) beyond.
 */
import { createBlockMask, type Expr, flexAttention, noopMask, softcapApprox, tanhApprox } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D, cap] = [1, 2, 64, 16, 1.5];
const { q, k, v } = inputs(B, H, S, S, D);
const pade = (x: number) => (Math.abs(x) >= 3 ? Math.sign(x) : (x * (27 + x * x)) / (27 + 9 * x * x));
const softcapMod = (s: Expr) => tanhApprox(s.div(cap)).mul(cap);
const ref = await reference(q, k, v, { score: (s) => cap * pade(s / cap) });
const mask = await createBlockMask(noopMask, null, null, S, S, { blockSize: 16 });
await report(`softcap (inline tanhApprox, cap ${cap})`, flexAttention(q, k, v, { scoreMod: softcapMod, blockMask: mask }), ref, mask);
await report(`softcap (gallery softcapApprox(${cap}))`, flexAttention(q, k, v, { scoreMod: softcapApprox(cap) }), ref);
// how far the approximation is from the exact tanh softcap (information only)
const exact = await reference(q, k, v, { score: (s) => cap * Math.tanh(s / cap) });
const got = await flexAttention(q, k, v, { scoreMod: softcapMod }).toArray();
console.log(`approx vs exact tanh softcap: max |Δout| = ${exact.reduce((m, x, i) => Math.max(m, Math.abs(x - got[i])), 0).toExponential(2)}`);
