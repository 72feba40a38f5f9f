/**
 * The BlockMask picture as SVG (the graphic twin of `toString()`): one grid of (q block, kv block) cells for
 * one (b, h), full blocks dark, partial blocks light with a diagonal hatch (the mask mod decides inside them),
 * skipped blocks blank, with axis labels, the block size, the sparsity and a legend. Plain text out, no DOM,
 * so it works the same in a browser (`innerHTML`), in Deno/Node/Bun (write a .svg file) and in tests.
 */
import { InvalidArgument } from "../errors.ts";
import type { BlockMask } from "./block_mask.ts";
import { BLOCK_EMPTY, BLOCK_FULL } from "./mask_blocks.ts";

/**
 * Options of {@link blockMaskSvg}.
 *
 * @example
 * ```ts
 * import { blockMaskSvg, causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, 1, 4, 512, 512);
 * const svg = blockMaskSvg(mask, { h: 2, cell: 12, title: "causal" });
 * ```
 */
export interface BlockMaskSvgOptions {
  /** The batch index to draw (default 0; a broadcast mask has only 0). */
  readonly b?: number;
  /** The head index to draw (default 0). */
  readonly h?: number;
  /** Cell edge in pixels (default: fits the grid into about 480 px, between 2 and 24). */
  readonly cell?: number;
  /** A title above the grid (default: the mask mod's name). */
  readonly title?: string;
}

const COLORS = { full: "#1f4e79", partial: "#9dc3e6", skipped: "#ffffff", grid: "#d0d0d0", text: "#222222" };

/** Escapes text for an SVG text node or attribute. */
function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

function index(name: string, value: number | undefined, size: number): number {
  const v = value ?? 0;
  if (!Number.isInteger(v) || v < 0 || v >= size) {
    throw new InvalidArgument({ message: `blockMaskSvg: ${name} must be an integer in [0, ${size - 1}], got ${value}` });
  }
  return v;
}

/**
 * An SVG picture of `mask`'s blocks for one (b, h).
 *
 * @example Drawing a causal mask
 * ```ts
 * import { blockMaskSvg, causalMask, createBlockMask } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 1024, 1024);
 * const svg = blockMaskSvg(mask); // "<svg …>": 8 × 8 cells, the diagonal partial, below it full
 * ```
 */
export function blockMaskSvg(mask: BlockMask, options: BlockMaskSvgOptions = {}): string {
  const [B, H] = mask.shape;
  const b = index("b", options.b, B), h = index("h", options.h, H);
  const nQ = mask.numQBlocks, nKV = mask.numKvBlocks;
  const cell = options.cell ?? Math.max(2, Math.min(24, Math.floor(480 / Math.max(nQ, nKV, 1))));
  if (!(cell > 0) || !Number.isFinite(cell)) throw new InvalidArgument({ message: `blockMaskSvg: cell must be a positive number of pixels, got ${cell}` });
  const states = mask.toStates();
  const base = (b * H + h) * nQ * nKV;
  const left = 56, top = 44, gridW = nKV * cell, gridH = nQ * cell;
  const width = left + gridW + 190, height = Math.max(top + gridH + 40, 150);
  const title = options.title ?? (mask.tracedMask?.name ? `BlockMask ${mask.tracedMask.name}` : "BlockMask");

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
    `<rect width="6" height="6" fill="${COLORS.partial}"/><line x1="0" y1="0" x2="0" y2="6" stroke="${COLORS.full}" stroke-width="1.2"/></pattern></defs>`);
  out.push(`<text x="${left}" y="16" fill="${COLORS.text}" font-size="14">${esc(title)} (b=${b}, h=${h})</text>`);
  out.push(`<text x="${left}" y="32" fill="${COLORS.text}">${nQ}×${nKV} blocks of ${mask.blockSize[0]}×${mask.blockSize[1]}, ` +
    `sparsity ${mask.sparsity().toFixed(1)}%</text>`);
  out.push(`<rect x="${left}" y="${top}" width="${gridW}" height="${gridH}" fill="${COLORS.skipped}" stroke="${COLORS.grid}"/>`);
  for (let r = 0; r < nQ; r++) {
    for (let c = 0; c < nKV; c++) {
      const s = states[base + r * nKV + c];
      if (s === BLOCK_EMPTY) continue;
      const fill = s === BLOCK_FULL ? COLORS.full : "url(#hatch)";
      out.push(`<rect class="${s === BLOCK_FULL ? "full" : "partial"}" x="${left + c * cell}" y="${top + r * cell}" ` +
        `width="${cell}" height="${cell}" fill="${fill}" stroke="${COLORS.grid}" stroke-width="${cell >= 6 ? 0.5 : 0}"/>`);
    }
  }
  out.push(`<text x="${left + gridW / 2}" y="${top + gridH + 18}" text-anchor="middle" fill="${COLORS.text}">kv blocks →</text>`);
  out.push(`<text x="${left - 10}" y="${top + gridH / 2}" text-anchor="middle" fill="${COLORS.text}" ` +
    `transform="rotate(-90 ${left - 10} ${top + gridH / 2})">← q blocks</text>`);
  const lx = left + gridW + 20;
  const legend: [string, string][] = [[COLORS.full, "full (no mask mod)"], ["url(#hatch)", "partial (mask mod)"], [COLORS.skipped, "skipped"]];
  legend.forEach(([fill, label], i) => {
    const y = top + i * 22;
    out.push(`<rect x="${lx}" y="${y}" width="14" height="14" fill="${fill}" stroke="${COLORS.grid}"/>`);
    out.push(`<text x="${lx + 20}" y="${y + 11}" fill="${COLORS.text}">${label}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}
