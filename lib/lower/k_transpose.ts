/**
 * The launch that gives the tensor forward's kTransposed configs their K: Kᵀ per head ([B][Hkv][D][Skv], f16) in a
 * plan scratch buffer, written right before the forward in the same submit (kernels/transpose_heads.ts). K is read
 * once and written once (2 · B·Hkv·Skv·D · 2 bytes): ~16 µs on the H200 for B4 H16 S4096 D64, against the ~1 ms the
 * row_major K loads saved there (bench/RESULTS.md, session 5 H6).
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Binding, KernelLaunch } from "./plan.ts";
import { TRANSPOSE_HEADS_UNIFORMS, TRANSPOSE_TILE, transposeHeadsWgsl } from "../../kernels/transpose_heads.ts";

/** Whether the transpose's grid fits the device (heads on grid z). */
export function kTransposeFits(call: FlexCall, maxGrid: number): boolean {
  const { B, Hkv, Skv } = call.dims;
  return B * Hkv <= maxGrid && Math.ceil(Skv / TRANSPOSE_TILE) <= maxGrid;
}

/** The transpose launch and the binding the forward reads Kᵀ through (read-only: its k is `var<storage, read>`). */
export function kTransposeLaunch(call: FlexCall): { launch: KernelLaunch; k: Binding } {
  const { B, Hkv, Skv, D } = call.dims;
  const bytes = Math.ceil((2 * B * Hkv * Skv * D) / 16) * 16;
  const k: Binding = { kind: "scratch", name: "k_t", bytes, readOnly: true };
  const u: Record<(typeof TRANSPOSE_HEADS_UNIFORMS)[number], number> = { rows: Skv, cols: D, pad0: 0, pad1: 0 };
  return {
    k,
    launch: {
      label: `transpose_heads K D${D}`,
      code: transposeHeadsWgsl(),
      entryPoint: "main",
      bindings: [{ kind: "input", tensor: call.k }, { kind: "scratch", name: "k_t", bytes }, { kind: "uniform", data: Uint32Array.from(TRANSPOSE_HEADS_UNIFORMS, (n) => u[n]) }],
      workgroups: [Math.ceil(Skv / TRANSPOSE_TILE), Math.ceil(D / TRANSPOSE_TILE), B * Hkv],
    },
  };
}
