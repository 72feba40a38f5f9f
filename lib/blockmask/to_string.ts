/**
 * The text picture of a BlockMask, after PyTorch's `BlockMask.to_string`: per (b, h) a header line
 * `(b, h)` and one text row per q block, two characters per kv block: `██` full, `░░` partial, `  ` skipped.
 * Grids larger than `gridSize` are downsampled: a cell covers ceil(n / max) blocks per axis and reads
 * full if all its blocks are full, blank if all are skipped, partial otherwise.
 */
import { BLOCK_EMPTY, BLOCK_FULL } from "./mask_blocks.ts";
import { InvalidArgument } from "../errors.ts";

/**
 * Options of `BlockMask.toString()` (downsampling, how many (b, h) grids).
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, 2, 4, 8192, 8192);
 * console.log(mask.toString({ gridSize: 16, limit: 2 }));
 * ```
 */
export interface ToStringOptions {
  /** Max cells per axis: a number, [rows, cols], or -1 for no downsampling. Default [20, 20]. */
  readonly gridSize?: number | readonly [number, number];
  /** How many (b, h) grids to print before eliding the rest. Default 4. */
  readonly limit?: number;
}

function cellChar(states: ArrayLike<number>, base: number, nKV: number, r0: number, r1: number, c0: number, c1: number): string {
  let allFull = true, allEmpty = true;
  for (let r = r0; r < r1; r++) {
    for (let c = c0; c < c1; c++) {
      const s = states[base + r * nKV + c];
      if (s !== BLOCK_FULL) allFull = false;
      if (s !== BLOCK_EMPTY) allEmpty = false;
    }
  }
  return allFull ? "██" : allEmpty ? "  " : "░░";
}

function gridLimits(gridSize: ToStringOptions["gridSize"], nQ: number, nKV: number): [number, number] {
  if (gridSize === undefined) return [20, 20];
  if (gridSize === -1) return [nQ, nKV];
  const [r, c] = typeof gridSize === "number" ? [gridSize, gridSize] : gridSize;
  if (!Number.isInteger(r) || !Number.isInteger(c) || r < 1 || c < 1) {
    throw new InvalidArgument({ message: `toString: gridSize must be a positive integer, a pair of them, or -1; got ${gridSize}` });
  }
  return [r, c];
}

/** Renders states [B, H, nQ, nKV]. */
export function renderStates(
  states: ArrayLike<number>,
  B: number,
  H: number,
  nQ: number,
  nKV: number,
  options: ToStringOptions = {},
): string {
  const [maxRows, maxCols] = gridLimits(options.gridSize, nQ, nKV);
  const limit = options.limit ?? 4;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new InvalidArgument({ message: `toString: limit must be a positive integer, got ${limit}` });
  }
  const rowStep = Math.max(1, Math.ceil(nQ / maxRows)), colStep = Math.max(1, Math.ceil(nKV / maxCols));
  const parts: string[] = [];
  for (let g = 0; g < B * H; g++) {
    if (g === limit) {
      parts.push("...");
      parts.push("To print out more, use toString({ limit: N })");
      parts.push("You can also slice (mask.slice(b, h)) to choose a specific batch or head");
      break;
    }
    let vis = `(${Math.floor(g / H)}, ${g % H})\n`;
    const base = g * nQ * nKV;
    for (let r = 0; r < nQ; r += rowStep) {
      for (let c = 0; c < nKV; c += colStep) {
        vis += cellChar(states, base, nKV, r, Math.min(r + rowStep, nQ), c, Math.min(c + colStep, nKV));
      }
      vis += "\n";
    }
    parts.push(vis);
  }
  return parts.join("\n");
}
