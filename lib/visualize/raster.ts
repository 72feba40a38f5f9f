/**
 * A small RGBA pixel canvas for the PNG pictures: filled rectangles and 3×5-font text, encoded by `fast-png`
 * (pure JS, so it runs the same under Deno, Bun, Node and in a browser).
 */
import { encode } from "fast-png";
import { GLYPH_H, glyphDots, textWidth } from "./font.ts";

export type Rgb = readonly [number, number, number];

/** "#rrggbb" → [r, g, b]. */
export function rgb(hex: string): Rgb {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export class Raster {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, background: Rgb = [255, 255, 255]) {
    this.data = new Uint8Array(width * height * 4);
    this.fillRect(0, 0, width, height, background);
  }

  /** Fills [x, x+w) × [y, y+h), clipped to the canvas. */
  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.max(0, Math.floor(x)), y0 = Math.max(0, Math.floor(y));
    const x1 = Math.min(this.width, Math.floor(x + w)), y1 = Math.min(this.height, Math.floor(y + h));
    for (let j = y0; j < y1; j++) {
      for (let i = x0; i < x1; i++) {
        const o = (j * this.width + i) * 4;
        this.data[o] = c[0]; this.data[o + 1] = c[1]; this.data[o + 2] = c[2]; this.data[o + 3] = 255;
      }
    }
  }

  /** An unfilled 1 px rectangle outline. */
  strokeRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    this.fillRect(x, y, w, 1, c); this.fillRect(x, y + h - 1, w, 1, c);
    this.fillRect(x, y, 1, h, c); this.fillRect(x + w - 1, y, 1, h, c);
  }

  /** Text with its top left at (x, y), each font pixel `scale` × `scale` canvas pixels. */
  text(x: number, y: number, s: string, c: Rgb, scale = 2): void {
    glyphDots(s, (i, j) => this.fillRect(x + i * scale, y + j * scale, scale, scale, c));
  }

  /** [r, g, b] at (x, y). */
  pixel(x: number, y: number): Rgb {
    const o = (y * this.width + x) * 4;
    return [this.data[o], this.data[o + 1], this.data[o + 2]];
  }

  png(): Uint8Array {
    return encode({ width: this.width, height: this.height, data: this.data, channels: 4, depth: 8 });
  }
}

/** Canvas pixels taken by `s` drawn at `scale`. */
export function textSize(s: string, scale = 2): [number, number] {
  return [textWidth(s) * scale, GLYPH_H * scale];
}
