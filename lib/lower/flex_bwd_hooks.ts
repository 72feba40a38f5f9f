/**
 * The WGSL hooks of the backward kernels: score_mod / mask_mod (as in the forward), the derivative
 * `score_mod_grad(score, b, h, q, kv) -> f32` from `scoreModGradients`, and per captured-tensor read r
 * `cap_grad_r(score, b, h, q, kv) -> f32` (∂mod/∂read) and `cap_index_r(score, b, h, q, kv) -> u32` (the
 * accumulator word of the read's element, counted from the first capture gradient (`capGradLayout`), 0xffffffff
 * when out of range; the range error itself is flagged by score_mod's own load of the same element). The dQ
 * kernel maps that word to its workgroup's partial slice or to the atomic accumulators (plan_flex_grad.ts).
 *
 * Captured data follow the block tables in the kernels' one read-only `caps` buffer (8 storage bindings
 * is WebGPU's default limit), so every capture offset is shifted by the tables' length.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import { type Expr, type LoadArg, readsArg } from "../ir/expr.ts";
import { scoreModGradients } from "../mods/derivative.ts";
import { IDENTITY_SCORE } from "../mods/trace.ts";
import { type CaptureOffsets, packCaptureLayout, WgslModEmitter } from "./wgsl_expr.ts";
import type { FlexBwdHooks } from "../../kernels/flex_backward.ts";

// where each f32 score-mod capture's gradient accumulates (one layout with the packed gradient node's)
export { type CapGradLayout, capGradLayout } from "../passes/flex_grad.ts";
import { capGradLayout } from "../passes/flex_grad.ts";

const SIG = "(score: f32, b: i32, h: i32, q: i32, kv: i32)";

/**
 * An index that reads neither `streamed` (kv for dQ, q for dK/dV) nor score is constant along a thread's walk of one
 * head (its b, h and owner rows are fixed).
 */
function fixedAlongWalk(indices: readonly Expr[], streamed: "kv" | "q"): boolean {
  return indices.every((ix) => !readsArg(ix, streamed, "score"));
}

function bodyOf(emit: WgslModEmitter, e: Expr, offsets: CaptureOffsets, prefix: string): { lines: string[]; result: string } {
  return emit.body(e, offsets, prefix);
}

function fnText(signature: string, lines: readonly string[], result: string): string {
  return `${signature} {\n${lines.map((l) => `  ${l}\n`).join("")}  return ${result};\n}`;
}

export function flexBwdHooks(call: FlexCall, tableWords: number): FlexBwdHooks & { capReads: number } {
  const mask = call.blockMask.tracedMask;
  const layout = packCaptureLayout([call.scoreMod, mask]);
  const scoreOffsets = layout.offsets[0].map((o) => o + tableWords);
  const maskOffsets = layout.offsets[1].map((o) => o + tableWords);
  const identityScore = call.scoreMod.hash === IDENTITY_SCORE.hash;
  const emit = new WgslModEmitter();
  const scoreMod = identityScore
    ? `fn score_mod${SIG} -> f32 { return score; }`
    : emit.scoreMod(call.scoreMod, scoreOffsets);
  const maskMod = emit.maskMod(mask, maskOffsets);
  const grads = scoreModGradients(call.scoreMod.expr);
  const dScore = bodyOf(emit, grads.dScore, scoreOffsets, "g");
  const scoreModGrad = fnText(`fn score_mod_grad${SIG} -> f32`, dScore.lines, dScore.result);

  const acc = capGradLayout(call.scoreMod);
  const capFns: string[] = [];
  let r = 0;
  let fixed = true, fixedDkdv = true;
  for (const [slot, reads] of grads.captures) {
    const base = acc.offsets[slot];
    if (base === null || base === undefined) continue;
    for (const read of reads) {
      const d = bodyOf(emit, read.d, scoreOffsets, `c${r}_`);
      capFns.push(fnText(`fn cap_grad_${r}${SIG} -> f32`, d.lines, d.result));
      fixed &&= fixedAlongWalk(read.indices, "kv");
      fixedDkdv &&= fixedAlongWalk(read.indices, "q");
      const shape = (read.load.arg as LoadArg).shape;
      const strides = shape.map((_, k) => shape.slice(k + 1).reduce((x, y) => x * y, 1));
      const lines: string[] = [];
      read.indices.forEach((ix, k) => {
        const b = bodyOf(emit, ix, scoreOffsets, `x${r}_${k}_`);
        lines.push(...b.lines, `let i${k} = u32(${b.result});`);
      });
      const ok = shape.map((n, k) => `(i${k} < ${n}u)`).join(" && ") || "true";
      const flat = shape.map((_, k) => `i${k} * ${strides[k]}u`).join(" + ") || "0u";
      lines.push(`if (!(${ok})) { return 0xffffffffu; }`);
      capFns.push(fnText(`fn cap_index_${r}${SIG} -> u32`, lines, `${base}u + ${flat}`));
      r++;
    }
  }
  return {
    preamble: emit.preamble(),
    scoreMod,
    maskMod,
    scoreModGrad,
    identityScore,
    capReads: r,
    capCode: capFns.join("\n\n"),
    capIndexFixed: r > 0 && fixed,
    capIndexFixedDkdv: r > 0 && fixedDkdv,
  };
}
