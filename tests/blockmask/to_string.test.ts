import { it } from "./cpu_realizer.ts";
import { describe, expect } from "../harness.ts";
import { BlockMask, createBlockMask } from "../../lib/blockmask/mod.ts";
import { InvalidArgument } from "../../lib/errors.ts";
import type { Expr } from "../../lib/ir/expr.ts";

const causal = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.ge(kv);

describe("BlockMask.toString", () => {
  it("draws a small causal mask exactly: ██ full, ░░ partial, blank skipped", async () => {
    const m = await createBlockMask(causal, 1, 1, 64, 64, { blockSize: 16 });
    expect(m.toString()).toBe(
      "(0, 0)\n" +
        "░░      \n" +
        "██░░    \n" +
        "████░░  \n" +
        "██████░░\n",
    );
  });

  it("shows edge blocks that stick out past the length as partial", async () => {
    const m = await createBlockMask(causal, 1, 1, 70, 70, { blockSize: 32 });
    expect(m.toString()).toBe("(0, 0)\n░░    \n██░░  \n░░░░░░\n");
    const wide = await createBlockMask(causal, 1, 1, 32, 64, { blockSize: [16, 32] });
    expect(wide.toString()).toBe("(0, 0)\n░░  \n░░  \n");
  });

  it("downsamples grids larger than 20×20 (a cell is full only if all its blocks are)", async () => {
    const m = await createBlockMask(causal, 1, 1, 640, 640, { blockSize: 16 }); // 40 × 40 blocks
    const rows = Array.from({ length: 20 }, (_, r) => "██".repeat(r) + "░░" + "  ".repeat(19 - r) + "\n");
    expect(m.toString()).toBe("(0, 0)\n" + rows.join(""));
    const lines = (s: string) => s.split("\n").filter((l) => l.length > 0 && !l.startsWith("("));
    expect(lines(m.toString({ gridSize: -1 })).length).toBe(40);
    expect(lines(m.toString({ gridSize: -1 }))[39]).toBe("██".repeat(39) + "░░");
    const small = lines(m.toString({ gridSize: [5, 10] }));
    expect(small.length).toBe(5);
    expect(small.every((l) => l.length === 20)).toBe(true);
    expect(small[0]).toBe("░░░░" + "  ".repeat(8)); // rows 0-7 × cols 0-3 and 4-7 hold the diagonal
    expect(() => m.toString({ gridSize: 0 })).toThrow(InvalidArgument);
    expect(() => m.toString({ limit: 0 })).toThrow(InvalidArgument);
  });

  it("prints up to `limit` (b, h) grids, then says how to see more", async () => {
    const m = await createBlockMask(causal, 2, 3, 32, 32, { blockSize: 16 });
    const grid = "░░  \n██░░\n"; // q block 1 × kv block 0 is full, the diagonal blocks partial
    const s = m.toString();
    expect(s).toBe(
      ["(0, 0)\n" + grid, "(0, 1)\n" + grid, "(0, 2)\n" + grid, "(1, 0)\n" + grid, "...",
        "To print out more, use toString({ limit: N })",
        "You can also slice (mask.slice(b, h)) to choose a specific batch or head"].join("\n"),
    );
    expect(m.toString({ limit: 6 }).split("\n").filter((l) => l.startsWith("(")).length).toBe(6);
  });
});

describe("BlockMask.repr / asTuple", () => {
  it("summarizes shape, block size, sparsity and mask name", async () => {
    const m = await createBlockMask(causal, 1, 1, 64, 64, { blockSize: 16 });
    const r = m.repr();
    expect(r).toContain("shape=[1, 1, 64, 64]");
    expect(r).toContain("blockSize=[16, 16]");
    expect(r).toContain("sparsity=37.50%");
    expect(r).toContain("kvIndices=[1, 1, 4, 4]");
    expect(r).toContain("qNumBlocks=[1, 1, 4]");
    expect(r).toContain("maskMod=causal");
    expect(BlockMask.fromKvBlocks(m.kvNumBlocks, m.kvIndices).repr()).toContain("fullKvIndices=null");
  });

  it("asTuple lists lengths, the eight tables, block sizes and the mask mod", async () => {
    const m = await createBlockMask(causal, 1, 1, 48, 64, { blockSize: [16, 32] });
    const t = m.asTuple();
    expect(t.length).toBe(13);
    expect([t[0], t[1], t[10], t[11]]).toEqual([48, 64, 16, 32]);
    expect(t[2]).toBe(m.kvNumBlocks);
    expect(t[9]).toBe(m.fullQIndices);
    expect(t[12]).toBe(causal);
  });
});
