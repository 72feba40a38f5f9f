/**
 * visualizeBlockMask: the PNG decodes (fast-png, the encoder's own decoder) to the raster's size and every
 * block's centre pixel has the colour of its state (full / partial / skipped, from the mask's tables); the legend
 * swatches are there; the SVG is well formed and has one rect per computed block and the legend; a file is
 * written; BlockMask's console.log / util.inspect shows shape, block size and sparsity, not the tables.
 */
import { inspect } from "node:util";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { decode } from "fast-png";
import { describe, expect, it, runtime } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { BlockMask, createBlockMask, type Expr, InvalidArgument, visualizeBlockMask } from "../../mod.ts";
import { BLOCK_COLORS, blockMaskPng } from "../../lib/visualize/mod.ts";
import { BLOCK_EMPTY, BLOCK_FULL } from "../../lib/blockmask/mask_blocks.ts";
import { checkWellFormedSvg } from "./svg_check.ts";

releaseGpuAfterAll();

// a head-dependent sliding window: all three states occur and head 1 differs from head 0
const window = (_b: Expr, h: Expr, q: Expr, kv: Expr) => q.ge(kv).and(q.sub(kv).le(h.mul(48).add(40)));
const [H, S, BS] = [2, 256, 32];

describe("visualizeBlockMask", () => {
  it("PNG: decodes to the drawn size; each block's centre pixel is its state's colour (both heads)", async () => {
    const mask = await createBlockMask(window, 1, H, S, S, { blockSize: BS });
    const states = mask.toStates();
    const n = S / BS;
    const seen = new Set<number>();
    for (let h = 0; h < H; h++) {
      const png = await visualizeBlockMask(mask, { h, cell: 10 }) as Uint8Array;
      expect(png[1]).toBe(0x50); // "PNG" signature
      const { raster, layout } = blockMaskPng(mask, { h, cell: 10 });
      const img = decode(png);
      expect([img.width, img.height, img.channels]).toEqual([raster.width, raster.height, 4]);
      const at = (x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 4, (y * img.width + x) * 4 + 3));
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const s = states[(h * n + i) * n + j];
          seen.add(s);
          const want = s === BLOCK_FULL ? BLOCK_COLORS.full : s === BLOCK_EMPTY ? BLOCK_COLORS.skipped : BLOCK_COLORS.partial;
          expect([h, i, j, at(layout.left + j * 10 + 5, layout.top + i * 10 + 5)]).toEqual([h, i, j, [...want]]);
        }
      }
      // the legend: three swatches right of the grid, full / partial / skipped
      const lx = layout.left + n * 10 + 16 + 7;
      expect(at(lx, layout.top + 7)).toEqual([...BLOCK_COLORS.full]);
      expect(at(lx, layout.top + 22 + 7)).toEqual([...BLOCK_COLORS.partial]);
    }
    expect([...seen].sort()).toEqual([0, 1, 2]);
    // head 1's window is wider than head 0's: the pictures differ
    expect(await visualizeBlockMask(mask, { h: 0 })).not.toEqual(await visualizeBlockMask(mask, { h: 1 }));
  });

  it("SVG: well formed, one rect per computed block, the legend and the sparsity", async () => {
    const mask = await createBlockMask(window, 1, H, S, S, { blockSize: BS });
    const svg = await visualizeBlockMask(mask, { format: "svg", h: 1 });
    checkWellFormedSvg(svg);
    const states = mask.toStates().subarray(64, 128);
    expect(svg.match(/class="full"/g)?.length).toBe(states.filter((s) => s === BLOCK_FULL).length);
    expect(svg.match(/class="partial"/g)?.length).toBe(states.filter((s) => s !== BLOCK_FULL && s !== BLOCK_EMPTY).length);
    for (const word of ["full (no mask mod)", "partial (mask mod)", "skipped", `sparsity ${mask.sparsity().toFixed(1)}%`]) {
      expect(svg).toContain(word);
    }
  });

  it("writes the file named by path, the format from its extension", async () => {
    const mask = await createBlockMask(window, 1, 1, 128, 128, { blockSize: BS });
    const dir = await mkdtemp(`${tmpdir()}/flex-pictures-`);
    try {
      const png = await visualizeBlockMask(mask, { path: `${dir}/m.png` });
      expect(new Uint8Array(await readFile(`${dir}/m.png`))).toEqual(png);
      const svg = await visualizeBlockMask(mask, { path: `${dir}/m.svg` });
      expect(typeof svg).toBe("string");
      expect(await readFile(`${dir}/m.svg`, "utf8")).toBe(svg);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it("bad slice, cell or format → InvalidArgument saying what to change", async () => {
    const mask = await createBlockMask(window, 1, 1, 128, 128, { blockSize: BS });
    await expect(visualizeBlockMask(mask, { h: 1 })).rejects.toThrow(/h must be an integer in \[0, 0\]/);
    await expect(visualizeBlockMask(mask, { cell: 0 })).rejects.toBeInstanceOf(InvalidArgument);
    // deno-lint-ignore no-explicit-any
    await expect(visualizeBlockMask(mask, { format: "jpg" as any })).rejects.toThrow(/format must be "png" or "svg"/);
  });
});

describe("BlockMask inspect", () => {
  it("util.inspect / console.log show shape, block size, grid, sparsity and the mask mod, not the tables", async () => {
    const mask = await createBlockMask(window, 1, H, 256, 200, { blockSize: 64 });
    const want = `BlockMask(shape [1, 2, 256, 200], block 64×64, 4×4 blocks, sparsity ${mask.sparsity().toFixed(1)}%, maskMod window)`;
    expect(inspect(mask)).toBe(want);
    expect(inspect({ mask })).not.toContain("kvIndices");
    if (runtime === "deno") {
      // deno-lint-ignore no-explicit-any
      expect((globalThis as any).Deno.inspect([mask])).toContain(want);
    }
    // a lazy mask (tables not realized) is described without realizing anything
    expect(inspect(BlockMask.lazyNoop(100_000, 100_000))).toContain("782×782 blocks, sparsity unknown");
  });
});
