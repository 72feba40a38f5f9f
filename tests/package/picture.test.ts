/** blockMaskSvg: one cell per computed block, full and partial told apart, for the (b, h) asked; bad indices are typed errors. */
import { describe, expect, it } from "../harness.ts";
import { blockMaskSvg, BlockMask, createBlockMask, InvalidArgument } from "../../mod.ts";

const count = (svg: string, cls: string) => svg.split(`class="${cls}"`).length - 1;

describe("blockMaskSvg", () => {
  it("draws exactly the mask's full and partial blocks, per head (random window per head)", async () => {
    const H = 3, S = 160 + Math.floor(Math.random() * 96), w0 = 8 + Math.floor(Math.random() * 40), step = 9 + Math.floor(Math.random() * 20);
    // causal with a window that grows with the head: each head has its own picture
    const m = await createBlockMask((_b, h, q, kv) => q.ge(kv).and(q.sub(kv).le(h.mul(step).add(w0))), 1, H, S, S, { blockSize: 16 });
    const states = m.toStates();
    const n = m.numQBlocks * m.numKvBlocks;
    const seen = new Set<string>();
    for (let h = 0; h < H; h++) {
      let full = 0, partial = 0;
      for (let i = h * n; i < (h + 1) * n; i++) { if (states[i] === 2) full++; else if (states[i] === 1) partial++; }
      const svg = blockMaskSvg(m, { h });
      expect(svg.startsWith("<svg")).toBe(true);
      expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
      expect({ full: count(svg, "full"), partial: count(svg, "partial") }).toEqual({ full, partial });
      expect(full + partial).toBeGreaterThan(0);
      expect(svg).toContain(`(b=0, h=${h})`);
      seen.add(`${full}/${partial}`);
    }
    expect(seen.size).toBeGreaterThan(1); // the heads' pictures differ
  });

  it("escapes a title and refuses an index outside the mask", () => {
    const m = BlockMask.noop(64, 64);
    expect(blockMaskSvg(m, { title: "<a & b>" })).toContain("&lt;a &amp; b&gt;");
    expect(() => blockMaskSvg(m, { h: 1 })).toThrow(InvalidArgument);
    expect(() => blockMaskSvg(m, { b: -1 })).toThrow(InvalidArgument);
    expect(() => blockMaskSvg(m, { cell: 0 })).toThrow(InvalidArgument);
  });
});
