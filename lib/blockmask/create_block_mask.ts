/**
 * `createBlockMask` (PyTorch's create_block_mask) and `createMask` (its dense create_mask).
 *
 * createBlockMask never builds an S×S buffer: the per-block states come from the lazy `maskBlocks` node,
 * which the runtime realizes (a generated kernel on a GPU, `maskBlockStatesCpu` on the CPU executor);
 * the tables are then built from the states on the CPU (`BlockMask.fromStates`).
 */
import { Tensor } from "../tensor/tensor.ts";
import { type MaskMod, traceMaskMod } from "../mods/trace.ts";
import { checkMaskArity } from "../mods/mod_checks.ts";
import { compileExpr } from "../mods/evaluate.ts";
import { InvalidArgument, ShapeError } from "../errors.ts";
import { BlockMask } from "./block_mask.ts";
import { maskBlocksNode, numBlocks } from "./mask_blocks.ts";
import { batchDim, blockSizePair, positiveInt } from "./validate.ts";

export interface CreateBlockMaskOptions {
  /** One size for both axes or [q, kv]; default 128. */
  readonly blockSize?: number | readonly [number, number];
}

function checkMod(maskMod: unknown, who: string): MaskMod {
  if (typeof maskMod !== "function") {
    throw new InvalidArgument({ message: `${who}: maskMod must be a function (b, h, q, kv) => bool expression` });
  }
  checkMaskArity(maskMod, `${who}: maskMod`); // exactly (b, h, q, kv), as PyTorch: a short list shifts the names
  return maskMod as MaskMod;
}

/**
 * Builds the BlockMask of `maskMod` for B batches and H heads (null or undefined: broadcast, 1) over
 * qLen × kvLen. Any lengths are allowed: an edge block that sticks out past a length is at most partial.
 */
export async function createBlockMask(
  maskMod: MaskMod,
  B: number | null | undefined,
  H: number | null | undefined,
  qLen: number,
  kvLen: number,
  options: CreateBlockMaskOptions = {},
): Promise<BlockMask> {
  const who = "createBlockMask";
  const mod = checkMod(maskMod, who);
  const b = batchDim(B, "B", who), h = batchDim(H, "H", who);
  positiveInt(qLen, "qLen", who);
  positiveInt(kvLen, "kvLen", who);
  const blockSize = blockSizePair(options.blockSize, who);
  const traced = traceMaskMod(mod);
  const node = maskBlocksNode({ mask: traced, B: b, H: h, qLen, kvLen, blockSize });
  const states = await node.toArray();
  const expected = b * h * numBlocks(qLen, blockSize[0]) * numBlocks(kvLen, blockSize[1]);
  if (states.length !== expected) {
    throw new ShapeError({ message: `${who}: the realizer returned ${states.length} block states, expected ${expected}` });
  }
  return BlockMask.fromStates(states, { B: b, H: h, qLen, kvLen, blockSize, maskMod: mod, tracedMask: traced });
}

/**
 * The dense mask (PyTorch's create_mask): a const i32 Tensor [B, H, qLen, kvLen] of 0/1, evaluated now on
 * the CPU. Captured tensors must be constants. Meant for checks and small sizes (it is S×S).
 */
export function createMask(
  maskMod: MaskMod,
  B: number | null | undefined,
  H: number | null | undefined,
  qLen: number,
  kvLen: number,
): Tensor {
  const who = "createMask";
  const mod = checkMod(maskMod, who);
  const b = batchDim(B, "B", who), h = batchDim(H, "H", who);
  positiveInt(qLen, "qLen", who);
  positiveInt(kvLen, "kvLen", who);
  const traced = traceMaskMod(mod);
  const captures = traced.captures.map((c, i) => {
    const data = c instanceof Tensor ? c.data : undefined;
    if (!data) {
      throw new InvalidArgument({ message: `${who}: captured tensor #${i} is not a constant; realize it first (createMask is synchronous)` });
    }
    return data;
  });
  const fn = compileExpr(traced.expr);
  const out = new Int32Array(b * h * qLen * kvLen);
  const env = { score: 0, b: 0, h: 0, q: 0, kv: 0 };
  let o = 0;
  for (env.b = 0; env.b < b; env.b++) {
    for (env.h = 0; env.h < h; env.h++) {
      for (env.q = 0; env.q < qLen; env.q++) {
        for (env.kv = 0; env.kv < kvLen; env.kv++) out[o++] = fn(env, captures) ? 1 : 0;
      }
    }
  }
  return new Tensor("const", [], [b, h, qLen, kvLen], "i32", out);
}
