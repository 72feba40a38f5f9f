/**
 * The backward of one FlexAttention call as lazy nodes: op "flexGrad", one node per gradient, all sharing
 * one `FlexBwd` object (as flexOut / flexLse share their FlexCall), so an executor computes the backward
 * once and defines every requested gradient from it.
 *
 * Node inputs (the order `flexBwdLayout` describes; an executor realizes them first):
 *   [q, k, v, out, lse, dOut, (dLse if present), kvNumBlocks, kvIndices, (fullKvNumBlocks, fullKvIndices),
 *    (q-major tables: qNumBlocks, qIndices, (fullQNumBlocks, fullQIndices)), ...scoreMod captures, ...maskMod captures]
 * out and lse are inputs because a FlashAttention-style GPU backward reads them (Δ = rowsum(dO∘O), P from
 * lse); the CPU reference recomputes them. The q-major tables serve the dK/dV programs.
 */
import { blockMaskTables } from "../blockmask/block_mask.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { FlexCall } from "../attention/flex_attention.ts";
import { GradError } from "../errors.ts";

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** One gradient of a flex call (or, in lib/lower, the packed gradients of a call). */
    flexGrad: FlexGradArg;
  }
}

/** Which gradient a flexGrad node is: dq, dk, dv, or the gradient of score-mod capture `slot`. */
export type FlexGradWhich = "dq" | "dk" | "dv" | `dcap:${number}`;

/** The shared backward of one call. */
export interface FlexBwd {
  readonly call: FlexCall;
  readonly out: Tensor;
  readonly lse: Tensor;
  /** Cotangent of out (zeros when only lse was used). */
  readonly dOut: Tensor;
  /** Cotangent of lse, or null when only out was used. */
  readonly dLse: Tensor | null;
}

/** The `arg` of a flexGrad node ("packed": lib/lower's one-buffer form of all of a call's gradients). */
export interface FlexGradArg {
  readonly bwd: FlexBwd;
  readonly which: FlexGradWhich | "packed";
}

/** Where each input sits in a flexGrad node's input list. */
export interface FlexBwdLayout {
  readonly q: 0;
  readonly k: 1;
  readonly v: 2;
  readonly out: 3;
  readonly lse: 4;
  readonly dOut: 5;
  /** -1 when there is no lse cotangent. */
  readonly dLse: number;
  readonly kvNum: number;
  readonly kvIdx: number;
  /** -1 when the BlockMask has no full-block tables. */
  readonly fullNum: number;
  readonly fullIdx: number;
  readonly qNum: number;
  readonly qIdx: number;
  readonly fullQNum: number;
  readonly fullQIdx: number;
  /** First score-mod capture (slot s at scoreCaptures + s). */
  readonly scoreCaptures: number;
  /** First mask-mod capture. */
  readonly maskCaptures: number;
}

export function flexBwdLayout(bwd: FlexBwd): FlexBwdLayout {
  const m = bwd.call.blockMask;
  let i = 6;
  const dLse = bwd.dLse ? i++ : -1;
  const kvNum = i++, kvIdx = i++;
  const fullNum = m.fullKvNumBlocks ? i++ : -1;
  const fullIdx = m.fullKvIndices ? i++ : -1;
  const qNum = i++, qIdx = i++;
  const fullQNum = m.fullQNumBlocks ? i++ : -1;
  const fullQIdx = m.fullQIndices ? i++ : -1;
  const scoreCaptures = i;
  const maskCaptures = i + bwd.call.scoreMod.captures.length;
  return { q: 0, k: 1, v: 2, out: 3, lse: 4, dOut: 5, dLse, kvNum, kvIdx, fullNum, fullIdx, qNum, qIdx, fullQNum, fullQIdx, scoreCaptures, maskCaptures };
}

export function flexBwdInputs(bwd: FlexBwd): Tensor[] {
  const { call } = bwd;
  const m = call.blockMask;
  const tables = blockMaskTables(m).filter((t): t is Tensor => t !== null);
  return [
    call.q, call.k, call.v, bwd.out, bwd.lse, bwd.dOut, ...(bwd.dLse ? [bwd.dLse] : []), ...tables,
    ...call.scoreMod.captures as Tensor[], ...m.tracedMask.captures as Tensor[],
  ];
}

function shapeOf(call: FlexCall, which: FlexGradWhich): readonly number[] {
  if (which === "dq") return call.q.shape;
  if (which === "dk") return call.k.shape;
  if (which === "dv") return call.v.shape;
  const slot = Number(which.slice(5));
  const cap = call.scoreMod.captures[slot];
  if (!cap) throw new GradError({ message: `flexGrad: the score mod has no captured tensor #${slot}` });
  return cap.shape;
}

/** One gradient of the call; create all of a call's nodes from the same `bwd` object. */
export function flexGradNode(bwd: FlexBwd, which: FlexGradWhich): Tensor {
  const arg: FlexGradArg = { bwd, which };
  return new Tensor("flexGrad", flexBwdInputs(bwd), [...shapeOf(bwd.call, which)], "f32", arg);
}
