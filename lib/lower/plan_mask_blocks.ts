/**
 * The plan of a `maskBlocks` node: kernels/mask_blocks.ts, one workgroup per (kv block, q block, b·H + h).
 *
 * Bindings: 0 caps (data, the mask's captures packed as u32 words), 1 err (scratch flag), 2 states (output
 * i32 [B, H, nQ, nKV]), 3 params (uniform, MASK_BLOCKS_UNIFORMS). Lengths and block sizes are uniforms, so
 * one pipeline serves every length and block size of a mask mod.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { NodePlan } from "./plan.ts";
import { MASK_BLOCKS_UNIFORMS, maskBlocksWgsl } from "../../kernels/mask_blocks.ts";
import { packCaptureLayout, WgslModEmitter } from "./wgsl_expr.ts";
import { type MaskBlocksArg, numBlocks } from "../blockmask/mask_blocks.ts";
import { captureOutOfRange, packCaptures } from "./plan_flex.ts";
import { NoConfigFits } from "../errors.ts";

/** Rows per loop step of the states kernel (bench/create_block_mask.ts sweeps it: FLEX_MASK_ROWS_PER_STEP). */
export const maskBlocksTuning: { rowsPerStep: number } = { rowsPerStep: 4 };

export function maskBlocksSource(arg: MaskBlocksArg, caps: Capabilities): string {
  const emit = new WgslModEmitter();
  const maskMod = emit.maskMod(arg.mask, packCaptureLayout([arg.mask]).offsets[0]);
  const threads = Math.min(256, caps.limits.maxComputeInvocationsPerWorkgroup, caps.limits.maxComputeWorkgroupSizeX);
  return maskBlocksWgsl({ threads, rowsPerStep: maskBlocksTuning.rowsPerStep }, { preamble: emit.preamble(), maskMod });
}

export function planMaskBlocks(node: Tensor<"maskBlocks">, caps: Capabilities): NodePlan {
  const arg = node.arg;
  const [bq, bkv] = arg.blockSize;
  const nQ = numBlocks(arg.qLen, bq), nKV = numBlocks(arg.kvLen, bkv);
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  if (nKV > maxGrid || nQ > maxGrid || arg.B * arg.H > maxGrid) {
    throw new NoConfigFits({ message: `maskBlocks: grid (${nKV}, ${nQ}, ${arg.B * arg.H}) exceeds ${maxGrid} workgroups per dimension` });
  }
  const u: Record<(typeof MASK_BLOCKS_UNIFORMS)[number], number> = {
    H: arg.H, q_len: arg.qLen, kv_len: arg.kvLen, bq, bkv, nq: nQ, nkv: nKV, pad0: 0,
  };
  return {
    launches: [{
      label: `mask_blocks ${arg.mask.name}`,
      code: maskBlocksSource(arg, caps),
      entryPoint: "main",
      bindings: [
        { kind: "data", data: packCaptures([arg.mask]), persistent: true },
        { kind: "scratch", name: "err", bytes: 4 },
        { kind: "output", tensor: node },
        { kind: "uniform", data: Uint32Array.from(MASK_BLOCKS_UNIFORMS, (k) => u[k]) },
      ],
      workgroups: [nKV, nQ, arg.B * arg.H],
    }],
    defines: [node],
    // only a captured tensor can be indexed out of range: a mask without captures skips the flag's readback
    checks: arg.mask.captures.length > 0 ? [{ scratch: "err", fail: captureOutOfRange }] : [],
  };
}
