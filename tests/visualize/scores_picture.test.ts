/**
 * visualizeScores / scoreMatrix: the scores drawn are the oracle's — every entry equals scale·q·k with the score
 * mod applied by hand in float64, masked exactly where the mask mod is false (GQA head mapping, h-dependent mods);
 * the PNG decodes to the drawn size and a few entries' pixels are the colour of their score on the colour scale
 * (masked ones grey), the colour bar runs max (top) → min (bottom); the SVG is well formed with the colour bar,
 * its min / max labels and one rect per entry carrying its score.
 */
import { decode } from "fast-png";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { type Expr, InvalidArgument, randn, scoreMatrix, tensor, visualizeScores } from "../../mod.ts";
import { MASKED_COLOR, scoresPng } from "../../lib/visualize/mod.ts";
import { colorOf } from "../../lib/visualize/colormap.ts";
import { scalePosition } from "../../lib/visualize/scores_picture.ts";
import { checkWellFormedSvg } from "./svg_check.ts";

releaseGpuAfterAll();

const [B, Hq, Hkv, Sq, Skv, D] = [2, 4, 2, 40, 48, 16];
const q = randn([B, Hq, Sq, D]), k = randn([B, Hkv, Skv, D]);
const slopes = [0.5, 0.25, 0.125, 0.0625];
const slopeT = tensor(slopes);
// alibi from a captured tensor, softcapped; a head- and batch-dependent causal window with an offset (Skv > Sq)
const scoreMod = (s: Expr, _b: Expr, h: Expr, qi: Expr, kv: Expr) => s.sub(slopeT.at(h).mul(qi.sub(kv))).div(3).tanh().mul(3);
const maskMod = (b: Expr, h: Expr, qi: Expr, kv: Expr) => qi.add(8).ge(kv).and(qi.add(8).sub(kv).le(h.mul(6).add(b.mul(5)).add(10)));

/** By hand: float64 scores of (b, h), NaN where masked. */
function expected(b: number, h: number): Float64Array {
  const Q = q.data!, K = k.data!, hk = Math.floor(h / (Hq / Hkv)), scale = 1 / Math.sqrt(D);
  const out = new Float64Array(Sq * Skv).fill(NaN);
  for (let i = 0; i < Sq; i++) {
    for (let j = 0; j < Skv; j++) {
      if (!(i + 8 >= j && i + 8 - j <= h * 6 + b * 5 + 10)) continue;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += Q[((b * Hq + h) * Sq + i) * D + d] * K[((b * Hkv + hk) * Skv + j) * D + d];
      const s = dot * scale - Math.fround(slopes[h]) * (i - j);
      out[i * Skv + j] = Math.tanh(s / 3) * 3;
    }
  }
  return out;
}

describe("scoreMatrix", () => {
  it("equals the scores computed by hand at every entry (two (b, h) slices, GQA), masked where the mask mod is false", async () => {
    for (const [b, h] of [[0, 0], [1, 3]]) {
      const m = await scoreMatrix(q, k, { scoreMod, maskMod, b, h });
      const want = expected(b, h);
      let maxErr = 0, nMasked = 0;
      for (let e = 0; e < Sq * Skv; e++) {
        expect(m.masked[e] === 1).toBe(Number.isNaN(want[e]));
        if (m.masked[e]) { nMasked++; continue; }
        maxErr = Math.max(maxErr, Math.abs(m.values[e] - want[e]));
      }
      expect(maxErr).toBeLessThan(1e-12);
      expect(nMasked).toBeGreaterThan(0);
      expect(nMasked).toBeLessThan(Sq * Skv);
      const finite = Array.from(want).filter(Number.isFinite);
      expect(Math.abs(m.min - Math.min(...finite))).toBeLessThan(1e-12);
      expect(Math.abs(m.max - Math.max(...finite))).toBeLessThan(1e-12);
    }
  });

  it("bad slice → InvalidArgument", async () => {
    await expect(scoreMatrix(q, k, { h: 4 })).rejects.toThrow(/h must be an integer in \[0, 3\]/);
    await expect(scoreMatrix(q, k, { b: -1 })).rejects.toBeInstanceOf(InvalidArgument);
  });
});

describe("visualizeScores", () => {
  it("PNG: decodes to the drawn size; entries are their score's colour, masked ones grey; the colour bar runs max → min", async () => {
    const opts = { scoreMod, maskMod, b: 1, h: 2, cell: 4 };
    const png = await visualizeScores(q, k, opts) as Uint8Array;
    const m = await scoreMatrix(q, k, opts);
    const { raster, layout } = scoresPng(m, { cell: 4 });
    const img = decode(png);
    expect([img.width, img.height]).toEqual([raster.width, raster.height]);
    const at = (x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 3));
    const want = expected(1, 2);
    let checkedMasked = 0, checkedScores = 0;
    for (let i = 0; i < Sq; i += 3) {
      for (let j = 0; j < Skv; j += 5) {
        const px = at(layout.left + j * 4 + 2, layout.top + i * 4 + 2);
        if (Number.isNaN(want[i * Skv + j])) { expect(px).toEqual([...MASKED_COLOR]); checkedMasked++; continue; }
        expect(px).toEqual([...colorOf(scalePosition(m, want[i * Skv + j]))]);
        checkedScores++;
      }
    }
    expect(checkedMasked).toBeGreaterThan(5);
    expect(checkedScores).toBeGreaterThan(5);
    expect(at(layout.barX + 8, layout.top)).toEqual([...colorOf(1)]);
    expect(at(layout.barX + 8, layout.top + layout.barH - 1)).toEqual([...colorOf(0)]);
  });

  it("SVG: well formed, one rect per entry with its score, the colour bar with min and max labels", async () => {
    const svg = await visualizeScores(q, k, { scoreMod, maskMod, h: 1, format: "svg", title: "alibi softcap" });
    checkWellFormedSvg(svg);
    const want = expected(0, 1);
    const nMasked = want.filter(Number.isNaN).length;
    expect(svg.match(/class="masked"/g)?.length).toBe(nMasked);
    const shown = [...svg.matchAll(/data-v="([^"]+)"/g)].map((x) => Number(x[1]));
    const visible = Array.from(want).filter((x) => !Number.isNaN(x));
    expect(shown.length).toBe(visible.length);
    expect(Math.max(...shown.map((v, i) => Math.abs(v - visible[i])))).toBeLessThan(1e-12);
    expect(svg).toContain('id="colorbar"');
    expect(svg).toContain(`max ${Number(Math.max(...visible).toPrecision(3))}`);
    expect(svg).toContain(`min ${Number(Math.min(...visible).toPrecision(3))}`);
    expect(svg).toContain("alibi softcap");
  });
});
