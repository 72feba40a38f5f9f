/**
 * `deno run -A examples/alibi_head.ts`: ALiBi with the slope computed from the head index INSIDE the mod —
 * slope(h) = 2^(−8(h+1)/H) — so nothing is captured: the formula is compiled into the kernel.
 */
import { causalMask, createBlockMask, type Expr, flexAttention } from "../mod.ts";
import { inputs, reference, report } from "./_check.ts";

const [B, H, S, D] = [1, 4, 64, 16];
const { q, k, v } = inputs(B, H, S, S, D);
const alibiOfH = (s: Expr, _b: Expr, h: Expr, i: Expr, j: Expr) => s.add(h.add(1).mul(-8 / H).exp2().mul(j.sub(i)));
const mask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 16 });
const ref = await reference(q, k, v, { mask: (_b, _h, i, j) => i >= j, score: (s, _b, h, i, j) => s + Math.pow(2, (-8 * (h + 1)) / H) * (j - i) });
await report("ALiBi (slope as a function of h)", flexAttention(q, k, v, { scoreMod: alibiOfH, blockMask: mask }), ref, mask);
