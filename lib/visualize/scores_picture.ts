/**
 * `visualizeScores`: attention-gym's visualize_attention_scores as PNG or SVG — one (b, h)'s score matrix
 * after the mods (rows = queries, columns = keys), each entry coloured by viridis between the matrix's min and
 * max, masked entries in a flat grey, with a colour bar labelled with the min and max and a "masked" swatch.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { colorOf, hexOf } from "./colormap.ts";
import { type PictureFormat, pictureFormat, writePicture } from "./output.ts";
import { Raster, rgb } from "./raster.ts";
import { type ScoreMatrix, scoreMatrix, type ScoreMatrixOptions } from "./score_matrix.ts";
import { InvalidArgument } from "../errors.ts";

/**
 * Options of {@link visualizeScores}: the mods and slice of {@link ScoreMatrixOptions}, and where it goes.
 *
 * @example
 * ```ts
 * import { causalMask, randn, visualizeScores } from "@flex/attention";
 * const q = randn([1, 1, 64, 16]), k = randn([1, 1, 64, 16]);
 * const svg = await visualizeScores(q, k, { maskMod: causalMask, format: "svg", title: "causal" });
 * ```
 */
export interface VisualizeScoresOptions extends ScoreMatrixOptions {
  /** Writes the picture there (Deno, Node, Bun); the format follows a `.svg` / `.png` extension. */
  readonly path?: string;
  /** "png" (default) or "svg". */
  readonly format?: PictureFormat;
  /** Pixels per score entry (default: fits the matrix into about 480 px, between 1 and 16). */
  readonly cell?: number;
  /** A title (default "scores"). */
  readonly title?: string;
}

/** The colour of masked entries. */
export const MASKED_COLOR = rgb("#b0b0b0");
const TEXT = rgb("#222222"), FRAME = rgb("#808080");

/** Where entry (q, kv) and the colour bar lie in a picture of {@link scoresPng} (for tests and overlays). */
export interface ScoresLayout {
  readonly left: number;
  readonly top: number;
  readonly cell: number;
  /** The colour bar: x, width; it spans the grid's height, max at the top. */
  readonly barX: number;
  readonly barW: number;
  readonly barH: number;
}

/** [0, 1] position of `v` on the colour scale of `m` (0.5 when min = max). */
export function scalePosition(m: ScoreMatrix, v: number): number {
  return m.max > m.min ? (v - m.min) / (m.max - m.min) : 0.5;
}

function layoutOf(m: ScoreMatrix, cell: number | undefined): ScoresLayout {
  const c = cell ?? Math.max(1, Math.min(16, Math.floor(480 / Math.max(m.Sq, m.Skv, 1))));
  if (!Number.isInteger(c) || c < 1 || c > 256) {
    throw new InvalidArgument({ message: `visualizeScores: cell must be an integer number of pixels in [1, 256], got ${cell}` });
  }
  const left = 12, top = 26;
  return { left, top, cell: c, barX: left + m.Skv * c + 16, barW: 16, barH: Math.max(m.Sq * c, 60) };
}

const label = (v: number) => Number.isFinite(v) ? Number(v.toPrecision(3)).toString() : String(v);

/** The PNG raster of a score matrix and where its parts lie. */
export function scoresPng(m: ScoreMatrix, options: { cell?: number; title?: string } = {}): { raster: Raster; layout: ScoresLayout } {
  const L = layoutOf(m, options.cell);
  const { left, top, cell, barX, barW, barH } = L;
  const r = new Raster(barX + barW + 80, top + Math.max(m.Sq * cell, barH + 24) + 12);
  r.text(left, 6, `${options.title ?? "scores"} ${m.Sq}x${m.Skv}`, TEXT);
  for (let i = 0; i < m.Sq; i++) {
    for (let j = 0; j < m.Skv; j++) {
      const e = i * m.Skv + j;
      r.fillRect(left + j * cell, top + i * cell, cell, cell, m.masked[e] ? MASKED_COLOR : colorOf(scalePosition(m, m.values[e])));
    }
  }
  // colour bar: row y shows the value at position 1 − y/(barH − 1)
  for (let y = 0; y < barH; y++) r.fillRect(barX, top + y, barW, 1, colorOf(1 - y / Math.max(1, barH - 1)));
  r.strokeRect(barX - 1, top - 1, barW + 2, barH + 2, FRAME);
  r.text(barX + barW + 6, top, `max ${label(m.max)}`, TEXT);
  r.text(barX + barW + 6, top + barH - 10, `min ${label(m.min)}`, TEXT);
  r.fillRect(barX, top + barH + 10, 14, 14, MASKED_COLOR);
  r.text(barX + 20, top + barH + 12, "masked", TEXT);
  return { raster: r, layout: L };
}

/** The SVG of a score matrix: one rect per entry (class "masked" or data-v = the score), a gradient colour bar. */
export function scoresSvg(m: ScoreMatrix, options: { cell?: number; title?: string } = {}): string {
  const { left, top, cell, barX, barW, barH } = layoutOf(m, options.cell);
  const width = barX + barW + 90, height = top + Math.max(m.Sq * cell, barH + 24) + 12;
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  const stops = Array.from({ length: 9 }, (_, i) => `<stop offset="${i / 8}" stop-color="${hexOf(1 - i / 8)}"/>`).join("");
  o.push(`<defs><linearGradient id="colorbar" x1="0" y1="0" x2="0" y2="1">${stops}</linearGradient></defs>`);
  o.push(`<text x="${left}" y="16" fill="#222222">${esc(options.title ?? "scores")} (${m.Sq}×${m.Skv})</text>`);
  o.push(`<g shape-rendering="crispEdges">`);
  const masked = `#${MASKED_COLOR.map((c) => c.toString(16).padStart(2, "0")).join("")}`;
  for (let i = 0; i < m.Sq; i++) {
    for (let j = 0; j < m.Skv; j++) {
      const e = i * m.Skv + j, x = left + j * cell, y = top + i * cell;
      o.push(m.masked[e]
        ? `<rect class="masked" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${masked}"/>`
        : `<rect data-v="${m.values[e]}" x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${hexOf(scalePosition(m, m.values[e]))}"/>`);
    }
  }
  o.push(`</g>`);
  o.push(`<rect id="colorbar-rect" x="${barX}" y="${top}" width="${barW}" height="${barH}" fill="url(#colorbar)" stroke="#808080"/>`);
  o.push(`<text class="max" x="${barX + barW + 6}" y="${top + 10}" fill="#222222">max ${label(m.max)}</text>`);
  o.push(`<text class="min" x="${barX + barW + 6}" y="${top + barH}" fill="#222222">min ${label(m.min)}</text>`);
  o.push(`<rect x="${barX}" y="${top + barH + 10}" width="14" height="14" fill="${masked}"/>`);
  o.push(`<text x="${barX + 20}" y="${top + barH + 21}" fill="#222222">masked</text>`);
  o.push("</svg>");
  return o.join("\n");
}

/**
 * A picture of the attention scores of one (b, h) after `scoreMod` / `maskMod` (masked entries grey), with a
 * colour bar: PNG bytes (default) or an SVG string; written to `path` when given.
 *
 * @example Softcapped causal scores
 * ```ts
 * import { causalMask, randn, visualizeScores } from "@flex/attention";
 * const q = randn([1, 1, 64, 16]), k = randn([1, 1, 64, 16]);
 * await visualizeScores(q, k, { maskMod: causalMask, scoreMod: (s) => s.div(2).tanh().mul(2), path: "scores.png" });
 * ```
 */
export async function visualizeScores(q: Tensor, k: Tensor, options: VisualizeScoresOptions & { format: "svg" }): Promise<string>;
/** PNG bytes (or SVG when `path` ends in .svg). */
export async function visualizeScores(q: Tensor, k: Tensor, options?: VisualizeScoresOptions): Promise<Uint8Array | string>;
export async function visualizeScores(q: Tensor, k: Tensor, options: VisualizeScoresOptions = {}): Promise<Uint8Array | string> {
  const format = pictureFormat("visualizeScores", options.format, options.path);
  const m = await scoreMatrix(q, k, options);
  const data = format === "svg" ? scoresSvg(m, options) : scoresPng(m, options).raster.png();
  if (options.path) await writePicture(options.path, data);
  return data;
}
