/**
 * `visualizeBlockMask`: attention-gym's BlockMask picture as PNG (drawn here) or SVG (lib/blockmask/picture.ts):
 * one (b, h) slice of the (q block, kv block) grid, full blocks dark, partial blocks light, skipped blocks white,
 * with a title, the block size and sparsity, and a legend.
 */
import type { BlockMask } from "../blockmask/block_mask.ts";
import { blockMaskSvg } from "../blockmask/picture.ts";
import { BLOCK_EMPTY, BLOCK_FULL } from "../blockmask/mask_blocks.ts";
import { InvalidArgument } from "../errors.ts";
import { pictureSlot } from "./slot.ts";
import { type PictureFormat, pictureFormat, writePicture } from "./output.ts";
import { Raster, rgb } from "./raster.ts";

/**
 * Options of {@link visualizeBlockMask}.
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask, visualizeBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, 1, 2, 256, 256, { blockSize: 32 });
 * const png = await visualizeBlockMask(mask, { h: 1, cell: 16 });
 * ```
 */
export interface VisualizeBlockMaskOptions {
  /** Writes the picture there (Deno, Node, Bun); the format follows a `.svg` / `.png` extension. */
  readonly path?: string;
  /** "png" (default) or "svg". */
  readonly format?: PictureFormat;
  /** The batch index to draw (default 0). */
  readonly b?: number;
  /** The head index to draw (default 0). */
  readonly h?: number;
  /** Cell edge in pixels (default: fits the grid into about 480 px, between 2 and 24). */
  readonly cell?: number;
  /** A title (default: the mask mod's name). */
  readonly title?: string;
}

/** The PNG colours of the three block states (the SVG uses the same, with a hatch on partial blocks). */
export const BLOCK_COLORS = { full: rgb("#1f4e79"), partial: rgb("#9dc3e6"), skipped: rgb("#ffffff") } as const;
const GRID = rgb("#d0d0d0"), TEXT = rgb("#222222");

/** Where cell (qBlock, kvBlock) lies in a PNG from {@link blockMaskPng} (for tests and overlays). */
export interface BlockGridLayout {
  readonly left: number;
  readonly top: number;
  readonly cell: number;
}

/** The PNG raster of one (b, h) slice and where its grid lies. */
export function blockMaskPng(mask: BlockMask, options: VisualizeBlockMaskOptions = {}): { raster: Raster; layout: BlockGridLayout } {
  const [B, H] = mask.shape;
  const b = pictureSlot("visualizeBlockMask", "b", options.b, B), h = pictureSlot("visualizeBlockMask", "h", options.h, H);
  const nQ = mask.numQBlocks, nKV = mask.numKvBlocks;
  const cell = options.cell ?? Math.max(2, Math.min(24, Math.floor(480 / Math.max(nQ, nKV, 1))));
  if (!Number.isInteger(cell) || cell < 1 || cell > 256) {
    throw new InvalidArgument({ message: `visualizeBlockMask: cell must be an integer number of pixels in [1, 256], got ${cell}` });
  }
  const states = mask.toStates();
  const base = (b * H + h) * nQ * nKV;
  const left = 12, top = 40, gridW = nKV * cell, gridH = nQ * cell;
  const legendX = left + gridW + 16;
  const r = new Raster(legendX + 130, Math.max(top + gridH + 12, top + 3 * 22 + 12));
  const title = options.title ?? (mask.tracedMask?.name ? `BlockMask ${mask.tracedMask.name}` : "BlockMask");
  r.text(left, 6, `${title} b=${b} h=${h}`, TEXT);
  r.text(left, 22, `${nQ}x${nKV} blocks of ${mask.blockSize[0]}x${mask.blockSize[1]}, sparsity ${mask.sparsity().toFixed(1)}%`, TEXT);
  for (let i = 0; i < nQ; i++) {
    for (let j = 0; j < nKV; j++) {
      const s = states[base + i * nKV + j];
      const c = s === BLOCK_FULL ? BLOCK_COLORS.full : s === BLOCK_EMPTY ? BLOCK_COLORS.skipped : BLOCK_COLORS.partial;
      r.fillRect(left + j * cell, top + i * cell, cell, cell, c);
      if (cell >= 6) r.strokeRect(left + j * cell, top + i * cell, cell, cell, GRID);
    }
  }
  r.strokeRect(left - 1, top - 1, gridW + 2, gridH + 2, GRID);
  ([["full", BLOCK_COLORS.full], ["partial", BLOCK_COLORS.partial], ["skipped", BLOCK_COLORS.skipped]] as const).forEach(([label, c], i) => {
    const y = top + i * 22;
    r.fillRect(legendX, y, 14, 14, c);
    r.strokeRect(legendX, y, 14, 14, GRID);
    r.text(legendX + 20, y + 2, label, TEXT);
  });
  return { raster: r, layout: { left, top, cell } };
}

/**
 * A picture of `mask`'s blocks for one (b, h): PNG bytes (default) or an SVG string; written to `path` when given.
 *
 * @example Writing a causal mask's picture
 * ```ts
 * import { causalMask, createBlockMask, visualizeBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 512, 512);
 * await visualizeBlockMask(mask, { path: "causal.png" }); // 4 × 4 blocks: diagonal partial, below it full
 * const svg = await visualizeBlockMask(mask, { format: "svg" }); // "<svg …>"
 * ```
 */
export async function visualizeBlockMask(mask: BlockMask, options: VisualizeBlockMaskOptions & { format: "svg" }): Promise<string>;
/** PNG bytes (or SVG when `path` ends in .svg). */
export async function visualizeBlockMask(mask: BlockMask, options?: VisualizeBlockMaskOptions): Promise<Uint8Array | string>;
export async function visualizeBlockMask(mask: BlockMask, options: VisualizeBlockMaskOptions = {}): Promise<Uint8Array | string> {
  const format = pictureFormat("visualizeBlockMask", options.format, options.path);
  const data = format === "svg"
    ? blockMaskSvg(mask, { b: options.b, h: options.h, cell: options.cell, title: options.title })
    : blockMaskPng(mask, options).raster.png();
  if (options.path) await writePicture(options.path, data);
  return data;
}
