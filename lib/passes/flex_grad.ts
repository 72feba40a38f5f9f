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
import type { TracedMod } from "../mods/trace.ts";
import { GradError } from "../errors.ts";

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** One gradient of a flex call, or ("packed") all of them in one buffer (pack_flex_grads.ts). */
    flexGrad: FlexGradArg;
    /** One gradient read out of its call's packed node (the only input). */
    flexGradPart: FlexGradPartArg;
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
  /** The f32 score-mod capture slots whose gradient the graph asks for (a `dcap:s` node exists); absent: every f32
   * capture's. A backward with none may run a family that computes no capture gradients (the tensor family). */
  readonly capGradSlots?: readonly number[];
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

/** Where each f32 score-mod capture's gradient sits among the capture gradients (null: an i32 capture has none). */
export interface CapGradLayout {
  readonly offsets: readonly (number | null)[];
  readonly words: number;
}

/** The words of the capture gradients the graph asks for (bwd.capGradSlots; absent: all of capGradLayout). */
export function requestedCapGradWords(bwd: FlexBwd): number {
  const caps = bwd.call.scoreMod.captures;
  if (!bwd.capGradSlots) return capGradLayout(bwd.call.scoreMod).words;
  return bwd.capGradSlots.reduce((n, s) => n + (caps[s]?.dtype === "f32" ? caps[s].shape.reduce((x, y) => x * y, 1) : 0), 0);
}

export function capGradLayout(mod: TracedMod): CapGradLayout {
  let words = 0;
  const offsets = mod.captures.map((c) => {
    if (c.dtype !== "f32") return null;
    const at = words;
    words += c.shape.reduce((x, y) => x * y, 1);
    return at;
  });
  return { offsets, words };
}

/** The packed node's layout (f32): dq ‖ dk ‖ dv ‖ the gradient of each f32 capture slot, padded to 4 words. */
export interface PackedLayout {
  readonly dq: number;
  readonly dk: number;
  readonly dv: number;
  readonly caps: readonly (number | null)[];
  readonly total: number;
}

export function packedLayout(call: FlexCall): PackedLayout {
  const dq = 0, dk = call.q.size, dv = dk + call.k.size;
  let at = dv + call.v.size;
  const acc = capGradLayout(call.scoreMod);
  const caps = acc.offsets.map((o) => (o === null ? null : at + o));
  at += acc.words;
  return { dq, dk, dv, caps, total: Math.ceil(at / 4) * 4 };
}

const packedOfBwd = new WeakMap<FlexBwd, Tensor<"flexGrad">>();

/** The node holding all gradients of `bwd` (one per bwd; its inputs are those of every gradient node). */
export function packedGradNode(bwd: FlexBwd): Tensor<"flexGrad"> {
  let node = packedOfBwd.get(bwd);
  if (!node) {
    node = new Tensor("flexGrad", flexBwdInputs(bwd), [packedLayout(bwd.call).total], "f32", { bwd, which: "packed" });
    packedOfBwd.set(bwd, node);
  }
  return node;
}

/** The `arg` of a flexGradPart node: which gradient, at which word of the packed node. */
export interface FlexGradPartArg {
  readonly which: FlexGradWhich;
  readonly offset: number;
}

const partsOf = new WeakMap<Tensor, Map<string, Tensor<"flexGradPart">>>();

/**
 * The `which` gradient of `bwd` as a read of its packed node (memoized: one node per gradient and dtype). An f16
 * part rounds while it reads (the f16 inputs' gradients: one launch instead of a copy and a cast).
 */
export function flexGradPart(bwd: FlexBwd, which: FlexGradWhich, dtype: "f32" | "f16" = "f32"): Tensor<"flexGradPart"> {
  const packed = packedGradNode(bwd);
  let parts = partsOf.get(packed);
  if (!parts) { parts = new Map(); partsOf.set(packed, parts); }
  const key = `${which}:${dtype}`;
  const hit = parts.get(key);
  if (hit) return hit;
  const layout = packedLayout(bwd.call);
  const offset = which === "dq" ? layout.dq : which === "dk" ? layout.dk : which === "dv" ? layout.dv : layout.caps[Number(which.slice(5))];
  if (offset === null || offset === undefined) throw new GradError({ message: `flexGrad: no gradient "${which}" (an i32 capture has none)` });
  const node = new Tensor("flexGradPart", [packed], [...shapeOf(bwd.call, which)], dtype, { which, offset });
  parts.set(key, node);
  return node;
}
