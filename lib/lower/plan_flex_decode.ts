/**
 * The decode-tile plan of a FlexCall (Sq ≤ 16; chosen by lib/lower/flex_decode_config.ts): one launch of
 * kernels/flex_decode.ts, and with split-KV the combine kernel that merges its per-split slices into out / lse.
 * Bindings are the forward's (lib/lower/plan_flex.ts): 0 q, 1 k, 2 v (f16 storage bound as its u32 words),
 * 3 tables, 4 caps, 5 err, 6 out, 7 lse (split-KV: f32 scratch slices [splits, …]), 8 params.
 * Grid: ((Hq / Hkv / hp) · row tiles, Hkv, B · splits). plan_flex.ts passes in what it packs for both families
 * (tables, captures, mod hooks) so this module does not import it back.
 */
import { type FlexCall, flexNodes } from "../attention/flex_attention.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "./plan.ts";
import { FLEX_DECODE_UNIFORMS, type FlexDecodeConfig, flexDecodeWgsl } from "../../kernels/flex_decode.ts";
import type { FlexForwardHooks } from "../../kernels/flex_forward.ts";
import { chooseDecodeSplits, headsPacked } from "./flex_decode_config.ts";
import { FLEX_COMBINE_THREADS, FLEX_COMBINE_UNIFORMS, flexCombineWgsl } from "../../kernels/flex_combine.ts";
import { NoConfigFits } from "../errors.ts";

/** What plan_flex.ts packs for a call (shared with the query-tile forward). */
export interface DecodeInputs {
  readonly tables: { readonly data: Int32Array; readonly offKvNum: number; readonly offKvIdx: number; readonly offFullNum: number; readonly offFullIdx: number };
  readonly captures: Uint32Array;
  readonly hooks: FlexForwardHooks;
  readonly captureOutOfRange: () => Error;
}

const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];

/** The decode kernel's label: what `explain` shows. */
export function flexDecodeLabel(call: FlexCall, c: FlexDecodeConfig): string {
  return `flex_decode ${call.scoreMod.name}/${call.blockMask.tracedMask.name} ${c.dtype} RT${c.RT} L${c.L} KPS${c.KPS} NT${c.NT}${c.subgroups ? " subgroups" : ""}${c.prefetch ? " prefetch" : ""}`;
}

export function planFlexDecode(call: FlexCall, caps: Capabilities, config: FlexDecodeConfig, inp: DecodeInputs): NodePlan {
  const { out, lse } = flexNodes(call);
  const { B, Hq, Hkv, Sq, Skv, Dv } = call.dims;
  const m = call.blockMask;
  const [, KB] = m.blockSize;
  const [mB, mH, nQ, nKV] = m.kvIndices.shape;
  const gq = Hq / Hkv;
  const hp = headsPacked(call);
  const units = Sq * hp;
  const nRtiles = Math.ceil(units / config.RT);
  const gridX = (gq / hp) * nRtiles;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const splits = chooseDecodeSplits(gridX * Hkv * B, nKV, call.kernelOptions.splitKv, config.NT);
  if (gridX > maxGrid || Hkv > maxGrid || B * splits > maxGrid) {
    throw new NoConfigFits({ message: `flexAttention (decode): grid (${gridX}, ${Hkv}, ${B * splits}) exceeds ${maxGrid} workgroups per dimension; lower kernelOptions.splitKv` });
  }
  const identity = config.identityScore;
  const t = inp.tables;
  const u: Record<(typeof FLEX_DECODE_UNIFORMS)[number], number> = {
    Hq, Hkv, Sq, Skv, KB, n_kv_blocks: nKV, tb_stride_b: mB === 1 ? 0 : mH * nQ, tb_stride_h: mH === 1 ? 0 : nQ,
    off_kv_num: t.offKvNum, off_kv_idx: t.offKvIdx, off_full_num: t.offFullNum, off_full_idx: t.offFullIdx,
    has_full: m.fullKvNumBlocks && m.fullKvIndices ? 1 : 0,
    q_scale: f32Bits(call.scale * (identity ? Math.LOG2E : 1)), B, n_splits: splits,
    gq, hp, n_rtiles: nRtiles, units,
  };
  const rows = B * Hq * Sq;
  const [outBinding, lseBinding]: Binding[] = splits === 1
    ? [{ kind: "output", tensor: out }, { kind: "output", tensor: lse }]
    : [{ kind: "scratch", name: "part_out", bytes: 4 * splits * rows * Dv }, { kind: "scratch", name: "part_lse", bytes: 4 * splits * rows }];
  return {
    launches: [{
      label: flexDecodeLabel(call, config),
      code: flexDecodeWgsl(config, inp.hooks, splits === 1 && call.q.dtype === "f16"),
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: call.q },
        { kind: "input", tensor: call.k },
        { kind: "input", tensor: call.v },
        { kind: "data", data: t.data, persistent: true },
        { kind: "data", data: inp.captures, persistent: true },
        { kind: "scratch", name: "err", bytes: 4 },
        outBinding,
        lseBinding,
        { kind: "uniform", data: Uint32Array.from(FLEX_DECODE_UNIFORMS, (k) => u[k]) },
      ],
      workgroups: [gridX, Hkv, B * splits],
    }, ...(splits === 1 ? [] : [combineLaunch(out, lse, rows, Dv, splits, maxGrid)])],
    defines: [out, lse],
    checks: [{ scratch: "err", fail: inp.captureOutOfRange }],
  };
}

/** kernels/flex_combine.ts over the decode tile's slices (the same launch the query-tile forward makes). */
function combineLaunch(out: Tensor, lse: Tensor, rows: number, Dv: number, splits: number, maxGrid: number): KernelLaunch {
  const groups = Math.ceil((rows * Dv / 4) / FLEX_COMBINE_THREADS);
  const x = Math.min(groups, maxGrid);
  const u: Record<(typeof FLEX_COMBINE_UNIFORMS)[number], number> = { rows, n_splits: splits, pad0: 0, pad1: 0 };
  return {
    label: `flex_combine Dv${Dv}`,
    code: flexCombineWgsl(Dv, out.dtype === "f16"),
    entryPoint: "main",
    bindings: [
      { kind: "scratch", name: "part_out", bytes: 4 * splits * rows * Dv },
      { kind: "scratch", name: "part_lse", bytes: 4 * splits * rows },
      { kind: "output", tensor: out },
      { kind: "output", tensor: lse },
      { kind: "uniform", data: Uint32Array.from(FLEX_COMBINE_UNIFORMS, (k) => u[k]) },
    ],
    workgroups: [x, Math.ceil(groups / x), 1],
  };
}
