/**
 * The plan of a `maskBlocks` node: kernels/mask_blocks.ts, one workgroup per (group of blocksPerGroup kv blocks, q block, b·H + h).
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
import { maskBoundsWgsl } from "./wgsl_bounds.ts";
import { type MaskBlocksArg, numBlocks } from "../blockmask/mask_blocks.ts";
import { captureOutOfRange, packCaptures } from "./plan_flex.ts";
import { NoConfigFits } from "../errors.ts";

/**
 * Rows per loop step of the states kernel (bench/create_block_mask.ts sweeps it: FLEX_CBM_ROWS). H200, states ms at
 * S = 4096 / 32768, rows 1 / 4 / 8: causal 0.098 / 0.046 / 0.033 at 4096; sliding 1024 6.06 / 0.58 / 0.46 and
 * document 1.46 / 0.77 / 0.70 at 32768 (bench/RESULTS.md, session 5). blocksPerGroup: consecutive kv blocks a workgroup
 * walks (FLEX_CBM_GROUPS sweeps it): with the interval bounds most blocks cost one uniform test, so one workgroup per
 * block would be mostly launch overhead (65 536 workgroups for causal S = 32768).
 */
export const maskBlocksTuning: { rowsPerStep: number; blocksPerGroup: number } = { rowsPerStep: 8, blocksPerGroup: 8 };

export function maskBlocksSource(arg: MaskBlocksArg, caps: Capabilities): string {
  const emit = new WgslModEmitter();
  const maskMod = emit.maskMod(arg.mask, packCaptureLayout([arg.mask]).offsets[0]);
  const threads = Math.min(256, caps.limits.maxComputeInvocationsPerWorkgroup, caps.limits.maxComputeWorkgroupSizeX);
  return maskBlocksWgsl({ threads, rowsPerStep: maskBlocksTuning.rowsPerStep, blocksPerGroup: maskBlocksTuning.blocksPerGroup }, { preamble: emit.preamble(), maskMod, maskBounds: maskBoundsWgsl(arg.mask.expr) });
}

export function planMaskBlocks(node: Tensor<"maskBlocks">, caps: Capabilities): NodePlan {
  const arg = node.arg;
  const [bq, bkv] = arg.blockSize;
  const nQ = numBlocks(arg.qLen, bq), nKV = numBlocks(arg.kvLen, bkv);
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const groups = Math.ceil(nKV / maskBlocksTuning.blocksPerGroup);
  if (groups > maxGrid || nQ > maxGrid || arg.B * arg.H > maxGrid) {
    throw new NoConfigFits({ message: `maskBlocks: grid (${groups}, ${nQ}, ${arg.B * arg.H}) exceeds ${maxGrid} workgroups per dimension` });
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
      workgroups: [groups, nQ, arg.B * arg.H],
    }],
    defines: [node],
    // only a captured tensor can be indexed out of range: a mask without captures skips the flag's readback
    checks: arg.mask.captures.length > 0 ? [{ scratch: "err", fail: captureOutOfRange }] : [],
  };
}
