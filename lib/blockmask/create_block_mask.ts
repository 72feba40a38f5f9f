/**
 * `createBlockMask` (PyTorch's create_block_mask) and `createMask` (its dense create_mask).
 *
 * createBlockMask never builds an S×S buffer: the per-block states come from the lazy `maskBlocks` node and
 * the ordered tables from the `blockTables` node over them, both realized where the runtime runs (two
 * kernels on a GPU: states, then one workgroup per table row; `maskBlockStatesCpu` / `blockTablesCpu` on the
 * CPU executor). The host gets all tables in one readback and wraps views of it (`BlockMask.fromPacked`).
 */
import { Tensor } from "../tensor/tensor.ts";
import { type MaskMod, traceMaskMod } from "../mods/trace.ts";
import { checkMaskArity } from "../mods/mod_checks.ts";
import { compileExpr } from "../mods/evaluate.ts";
import { InvalidArgument, ShapeError } from "../errors.ts";
import { BlockMask } from "./block_mask.ts";
import { maskBlocksNode } from "./mask_blocks.ts";
import { type BlockTablesArg, blockTablesNode, PARTS } from "./block_tables.ts";
import { batchDim, blockSizePair, positiveInt } from "./validate.ts";

/**
 * Options of `createBlockMask` (block size, full-block separation).
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 1024, 1024, { blockSize: [64, 128] });
 * ```
 */
export interface CreateBlockMaskOptions {
  /** One size for both axes or [q, kv]; default 128. */
  readonly blockSize?: number | readonly [number, number];
  /**
   * PyTorch's `separate_full_blocks` (default true): false lists every non-empty block as partial (the mask
   * mod runs on all of them) and builds no full-block tables; the attention it gives is the same.
   */
  readonly separateFullBlocks?: boolean;
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
 *
 * @example
 * ```ts
 * import { andMasks, causalMask, createBlockMask, slidingWindow } from "@flex/attention";
 * const mask = await createBlockMask(andMasks(causalMask, slidingWindow(256)), null, null, 4096, 4096); // B, H, qLen, kvLen
 * console.log(mask.sparsity()); // ≈ 90 % of the blocks skipped
 * ```
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
  if (options === null || typeof options !== "object") {
    throw new InvalidArgument({ message: `${who}: options must be an object such as { blockSize: 128 }, got ${options === null ? "null" : typeof options}` });
  }
  const blockSize = blockSizePair(options.blockSize, who);
  const separateFull = options.separateFullBlocks ?? true;
  if (typeof separateFull !== "boolean") {
    throw new InvalidArgument({ message: `${who}: separateFullBlocks must be true or false, got ${String(separateFull)}` });
  }
  const traced = traceMaskMod(mod);
  const states = maskBlocksNode({ mask: traced, B: b, H: h, qLen, kvLen, blockSize });
  const arg: BlockTablesArg = {
    B: b, H: h, qLen, kvLen, blockSize, source: "states", separateFull,
    parts: separateFull ? PARTS : PARTS.filter((p) => !p.startsWith("full")),
  };
  const tables = blockTablesNode(arg, states);
  const packed = await tables.toArray();
  if (packed.length !== tables.size) {
    throw new ShapeError({ message: `${who}: the realizer returned ${packed.length} table words, expected ${tables.size}` });
  }
  return BlockMask.fromPacked(packed as Int32Array, arg, mod, traced);
}

/**
 * The dense mask (PyTorch's create_mask): a const i32 Tensor [B, H, qLen, kvLen] of 0/1, evaluated now on
 * the CPU. Captured tensors must be constants. Meant for checks and small sizes (it is S×S).
 *
 * @example
 * ```ts
 * import { causalMask, createMask } from "@flex/attention";
 * const dense = createMask(causalMask, 1, 1, 128, 128); // i32 [1, 1, 128, 128], 1 = attend
 * const values = await dense.toArray();
 * ```
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
