/**
 * BlockMask: the block-sparse description of a mask, in PyTorch's layout (BCSR-like), all tables i32 Tensors.
 *
 *   kvNumBlocks     [B, H, nQ]        partial (mask-needing) kv blocks per q block
 *   kvIndices       [B, H, nQ, nKV]   their kv-block indices, first kvNumBlocks entries valid, ascending
 *   fullKvNumBlocks [B, H, nQ]        blocks where the mask is true everywhere (mask_mod skipped there)
 *   fullKvIndices   [B, H, nQ, nKV]
 *   qNumBlocks / qIndices / fullQNumBlocks / fullQIndices: the same, transposed (q-major, for backward)
 *
 * B and H are 1 when the mask broadcasts over batch / heads. nQ = ceil(qLen / blockSize[0]),
 * nKV = ceil(kvLen / blockSize[1]). Edge blocks are padded with `false` (as PyTorch), so a block that
 * sticks out past a length is never "full".
 *
 * OWNER: blockmask helper — fills in creation, toString, sparsity, toDense, slicing, adjust.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { MaskMod, TracedMod } from "../mods/trace.ts";

export interface BlockMaskFields {
  readonly seqLengths: readonly [number, number];
  readonly blockSize: readonly [number, number];
  readonly kvNumBlocks: Tensor;
  readonly kvIndices: Tensor;
  readonly fullKvNumBlocks: Tensor | null;
  readonly fullKvIndices: Tensor | null;
  readonly qNumBlocks: Tensor;
  readonly qIndices: Tensor;
  readonly fullQNumBlocks: Tensor | null;
  readonly fullQIndices: Tensor | null;
  /** The user's mask function (used by the kernels on partial blocks). */
  readonly maskMod: MaskMod;
  /** Its trace (the kernel-cache key and the IR the kernels splice in). */
  readonly tracedMask: TracedMod;
}
