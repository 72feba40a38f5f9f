/**
 * The `maskBlocks` node: per (b, h, q-block, kv-block) the state of a mask mod over that block,
 * 0 = no entry true (skipped), 1 = some true (partial), 2 = all true (full). Entries past qLen / kvLen
 * count as false (PyTorch pads with false), so an edge block that sticks out is at most partial.
 * Evaluated without an S×S buffer: on the GPU by a generated kernel (lib/lower), on the CPU below.
 */
import { Tensor } from "../tensor/tensor.ts";
import type { TracedMod } from "../mods/trace.ts";
import { type CaptureData, compileMaskScan, SCAN_SOME_FALSE, SCAN_SOME_TRUE } from "../mods/evaluate.ts";

export const BLOCK_EMPTY = 0, BLOCK_PARTIAL = 1, BLOCK_FULL = 2;

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** Per-block states of a mask mod (inputs: the mask's captured tensors). */
    maskBlocks: MaskBlocksArg;
  }
}

export interface MaskBlocksArg {
  readonly mask: TracedMod;
  /** Batch / heads evaluated (1 when broadcast). */
  readonly B: number;
  readonly H: number;
  readonly qLen: number;
  readonly kvLen: number;
  readonly blockSize: readonly [number, number];
}

export function numBlocks(len: number, block: number): number { return Math.ceil(len / block); }

/** The lazy node: i32 [B, H, nQ, nKV]; its inputs are the mask's captured tensors. */
export function maskBlocksNode(arg: MaskBlocksArg): Tensor {
  const nQ = numBlocks(arg.qLen, arg.blockSize[0]), nKV = numBlocks(arg.kvLen, arg.blockSize[1]);
  return new Tensor("maskBlocks", arg.mask.captures as Tensor[], [arg.B, arg.H, nQ, nKV], "i32", arg);
}

/**
 * CPU evaluation of the same states (the CPU executor's implementation and the tests' reference): the mask is
 * compiled to one JS function per rectangle (lib/mods/evaluate.ts compileMaskScan), every entry evaluated.
 */
export function maskBlockStatesCpu(
  arg: MaskBlocksArg, captures: readonly CaptureData[],
  /** Called after each (b, h, q-block) row of blocks: the caller's progress report (lib/blockmask sits below it). */
  onRow?: (done: number, total: number) => void,
): Int32Array {
  const [bq, bkv] = arg.blockSize;
  const nQ = numBlocks(arg.qLen, bq), nKV = numBlocks(arg.kvLen, bkv);
  const scan = compileMaskScan(arg.mask.expr);
  const out = new Int32Array(arg.B * arg.H * nQ * nKV);
  for (let b = 0; b < arg.B; b++) for (let h = 0; h < arg.H; h++) {
    for (let qb = 0; qb < nQ; qb++) {
      for (let kb = 0; kb < nKV; kb++) {
        // walk only the entries inside the lengths: a block larger than a length costs the length, not the block
        const qEnd = Math.min((qb + 1) * bq, arg.qLen), kvEnd = Math.min((kb + 1) * bkv, arg.kvLen);
        const padded = qEnd !== (qb + 1) * bq || kvEnd !== (kb + 1) * bkv; // padding counts as false
        const flags = scan(b, h, qb * bq, qEnd, kb * bkv, kvEnd, captures);
        const any = (flags & SCAN_SOME_TRUE) !== 0, all = !padded && (flags & SCAN_SOME_FALSE) === 0;
        out[((b * arg.H + h) * nQ + qb) * nKV + kb] = any ? (all ? BLOCK_FULL : BLOCK_PARTIAL) : BLOCK_EMPTY;
      }
      onRow?.((b * arg.H + h) * nQ + qb + 1, arg.B * arg.H * nQ);
    }
  }
  return out;
}
