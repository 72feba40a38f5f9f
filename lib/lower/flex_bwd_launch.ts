/**
 * The launch setup both backward families share (lib/lower/plan_flex_grad.ts portable, plan_flex_grad_tensor.ts
 * tensor): the preprocess launch, the fused kernels' grid, uniforms and bindings, and the capture-gradient
 * launches (reduce or finalize) that read the `err` scratch into the packed buffer. The two families differ only
 * in their kernels' WGSL, their configs' BLOCK_A, the tensors bound (f16 sources or f32) and the `err` size.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { KernelLaunch } from "./plan.ts";
import type { PackedLayout } from "../passes/flex_grad.ts";
import type { FlexBwdMode } from "../../kernels/flex_backward.ts";
import { FLEX_BWD_UNIFORMS } from "../../kernels/flex_backward.ts";
import { auxGrid, PREPROCESS_UNIFORMS, preprocessWgsl } from "../../kernels/flex_bwd_aux.ts";
import { f32Bits } from "./plan_flex.ts";
import { NoConfigFits } from "../errors.ts";

/** Query rows of the call (one (lse·log2 e, Δ) pair each in the `ld` scratch). */
export function bwdRows(call: FlexCall): number {
  return call.dims.B * call.dims.Hq * call.dims.Sq;
}

/** The preprocess launch: ld = (lse·log2 e, Δ − dLse) from `out` and `dOut` of the given storage dtype. */
export function preprocessLaunch(
  call: FlexCall,
  t: { out: Tensor; dOut: Tensor; lse: Tensor; dLse: Tensor | null },
  storage: "f32" | "f16",
  maxGrid: number,
): KernelLaunch {
  const rows = bwdRows(call);
  const pre = auxGrid(rows, maxGrid);
  return {
    label: `flex_bwd_preprocess${storage === "f16" ? " (f16)" : ""}`,
    code: preprocessWgsl(call.dims.Dv, t.dLse !== null, storage),
    entryPoint: "main",
    bindings: [
      { kind: "input", tensor: t.out },
      { kind: "input", tensor: t.dOut },
      { kind: "input", tensor: t.lse },
      ...(t.dLse ? [{ kind: "input" as const, tensor: t.dLse }] : []),
      { kind: "scratch", name: "ld", bytes: rows * 8 },
      { kind: "uniform", data: Uint32Array.from(PREPROCESS_UNIFORMS, (k) => ({ rows, grid_x: pre.gridX, pad0: 0, pad1: 0 })[k]) },
    ],
    workgroups: pre.grid,
  };
}

/** Workgroups of a fused kernel: (owner blocks · a_tiles, heads, batch), checked against the grid limit. */
export function fusedGrid(call: FlexCall, mode: FlexBwdMode, BA: number, maxGrid: number): { grid: [number, number, number]; aTiles: number } {
  const dq = mode === "dq";
  const [, , nQ, nKV] = call.blockMask.kvIndices.shape;
  const [QB, KB] = call.blockMask.blockSize;
  const aTiles = Math.ceil((dq ? QB : KB) / BA);
  const gridX = (dq ? nQ : nKV) * aTiles;
  const gridY = dq ? call.dims.Hq : call.dims.Hkv;
  const B = call.dims.B;
  if (gridX > maxGrid || gridY > maxGrid || B > maxGrid) {
    throw new NoConfigFits({ message: `flexAttention backward: grid (${gridX}, ${gridY}, ${B}) exceeds ${maxGrid} workgroups per dimension` });
  }
  return { grid: [gridX, gridY, B], aTiles };
}

/**
 * The fused kernels' uniforms (FLEX_BWD_UNIFORMS; the tensor kernels' list is the same). `off` are the word
 * offsets of the packed tables (kvNum, kvIdx, fullKvNum, fullKvIdx, qNum, qIdx, fullQNum, fullQIdx).
 */
export function fusedUniforms(call: FlexCall, mode: FlexBwdMode, aTiles: number, layout: PackedLayout, off: readonly number[]): number[] {
  const dq = mode === "dq";
  const m = call.blockMask;
  const { B, Hq, Hkv, Sq, Skv } = call.dims;
  const [QB, KB] = m.blockSize;
  const [mB, mH, nQ, nKV] = m.kvIndices.shape;
  const hasFull = m.fullKvNumBlocks && m.fullQNumBlocks ? 1 : 0;
  const u: Record<(typeof FLEX_BWD_UNIFORMS)[number], number> = {
    B, Hq, Hkv, Sq, Skv, QB, KB, a_tiles: aTiles,
    row_width: dq ? nKV : nQ,
    tb_stride_b: mB === 1 ? 0 : mH * (dq ? nQ : nKV),
    tb_stride_h: mH === 1 ? 0 : (dq ? nQ : nKV),
    off_num: dq ? off[0] : off[4], off_idx: dq ? off[1] : off[5], off_full_num: dq ? off[2] : off[6], off_full_idx: dq ? off[3] : off[7],
    has_full: hasFull, scale: f32Bits(call.scale), off_dk: layout.dk / 4, off_dv: layout.dv / 4, pad0: 0,
  };
  return FLEX_BWD_UNIFORMS.map((k) => u[k]);
}

/** The fused kernels' bindings: q, k, v, dO, ld, caps (tables ‖ captures), err, packed gradients, uniform. */
export function fusedBindings(
  call: FlexCall,
  t: { q: Tensor; k: Tensor; v: Tensor; dOut: Tensor; node: Tensor },
  tabCaps: Uint32Array,
  errBytes: number,
  uniforms: readonly number[],
): KernelLaunch["bindings"] {
  return [
    { kind: "input", tensor: t.q },
    { kind: "input", tensor: t.k },
    { kind: "input", tensor: t.v },
    { kind: "input", tensor: t.dOut },
    { kind: "scratch", name: "ld", bytes: bwdRows(call) * 8 },
    { kind: "data", data: tabCaps, persistent: true },
    { kind: "scratch", name: "err", bytes: errBytes },
    { kind: "output", tensor: t.node },
    { kind: "uniform", data: Uint32Array.from(uniforms) },
  ];
}

/** A launch that reads the `err` scratch into the packed gradients (the capture reduce or the atomic finalize). */
export function captureLaunch(
  label: string,
  code: string,
  errBytes: number,
  node: Tensor,
  uniforms: Uint32Array,
  grid: [number, number, number],
): KernelLaunch {
  return {
    label,
    code,
    entryPoint: "main",
    bindings: [
      { kind: "scratch", name: "err", bytes: errBytes },
      { kind: "output", tensor: node },
      { kind: "uniform", data: uniforms },
    ],
    workgroups: grid,
  };
}
