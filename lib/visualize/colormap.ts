/**
 * The value → colour scale of the score pictures: viridis (perceptually even, readable in grey), as linear
 * interpolation between 9 stops of the matplotlib map. `colorOf(t)` takes t in [0, 1].
 */
import type { Rgb } from "./raster.ts";

const STOPS: readonly Rgb[] = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

export function colorOf(t: number): Rgb {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  const a = STOPS[i], b = STOPS[i + 1];
  return [0, 1, 2].map((c) => Math.round(a[c] + (b[c] - a[c]) * f)) as unknown as Rgb;
}

/** "#rrggbb" of colorOf(t) (the SVG pictures). */
export function hexOf(t: number): string {
  return "#" + colorOf(t).map((c) => c.toString(16).padStart(2, "0")).join("");
}
