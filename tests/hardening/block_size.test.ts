/**
 * Block sizes are positive integers ≤ MAX_BLOCK_SIZE (2^15) per side; a block larger than a length is clipped
 * to it. Before: blockSize 65536 wrapped bq·bkv to 0 in the mask kernel's u32 (every block "empty"), and the CPU
 * walked the whole block area whatever the lengths. The kernel cases run on the adapter the runtime picks
 * (skipped when only the CPU executor exists); the CPU cases always run.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import {
  BlockMask, causalMask, createBlockMask, deviceInfo, type Expr, InvalidArgument, noopMask, realizeAll, setPoison,
  traceMaskMod,
} from "../../mod.ts";
import { maskBlocksNode, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { MAX_BLOCK_SIZE } from "../../lib/blockmask/validate.ts";

const provider = await deviceInfo().then((i) => i.provider, () => "cpu");
const noGpu = provider === "cpu" ? "no WebGPU adapter (the runtime chose the CPU executor)" : false;

async function rejection(p: () => unknown): Promise<unknown> {
  try { await p(); } catch (e) { return e; }
  return undefined;
}

describe("hardening: block sizes", () => {
  it("blockSize 65536 is an InvalidArgument saying the bound (createBlockMask, fromKvBlocks, noop)", async () => {
    expect(MAX_BLOCK_SIZE).toBe(32768);
    const err = await rejection(() => createBlockMask(causalMask, null, null, 8, 8, { blockSize: 65536 }));
    expect(err).toBeInstanceOf(InvalidArgument);
    expect((err as Error).message).toContain("at most 32768");
    expect(await rejection(() => createBlockMask(causalMask, null, null, 8, 8, { blockSize: [8, 1e9] }))).toBeInstanceOf(InvalidArgument);
    expect(() => BlockMask.fromKvBlocks({ data: [1], shape: [1] }, { data: [0], shape: [1, 1] }, null, null, { blockSize: 65536, seqLengths: [8, 8] }))
      .toThrow(InvalidArgument);
    expect(() => BlockMask.noop(8, 8, 65536)).toThrow(InvalidArgument);
  });

  it("non-positive, fractional and non-numeric block sizes are InvalidArguments", async () => {
    for (const bs of [0, -128, 1.5, NaN, Infinity, "128", [64], [64, 0]]) {
      expect(await rejection(() => createBlockMask(causalMask, null, null, 8, 8, { blockSize: bs as never }))).toBeInstanceOf(InvalidArgument);
    }
  });

  it("the CPU walks only the entries inside the lengths (a 32768² block over 8×8 returns at once)", () => {
    const arg = { mask: traceMaskMod(causalMask), B: 1, H: 1, qLen: 8, kvLen: 8, blockSize: [MAX_BLOCK_SIZE, MAX_BLOCK_SIZE] as const };
    const t0 = performance.now();
    const states = maskBlockStatesCpu(arg, []);
    expect(performance.now() - t0).toBeLessThan(500); // was 2^30 mask evaluations
    expect(Array.from(states)).toEqual([1]); // partial: causal, and the block sticks out (padding is false)
    const noop = maskBlockStatesCpu({ ...arg, mask: traceMaskMod(noopMask), blockSize: [8, 8] }, []);
    expect(Array.from(noop)).toEqual([2]); // exactly the lengths: full
    const big = maskBlockStatesCpu({ ...arg, mask: traceMaskMod(noopMask) }, []);
    expect(Array.from(big)).toEqual([1]); // sticks out: never full
  });

  it("a block larger than the length is clipped: same states as the dense definition (CPU)", () => {
    const mod = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.sub(kv).le(3).and(q.ge(kv));
    const arg = { mask: traceMaskMod(mod), B: 1, H: 1, qLen: 37, kvLen: 50, blockSize: [16, 4096] as const };
    expect(Array.from(maskBlockStatesCpu(arg, []))).toEqual([1, 1, 1]);
  });

  it.skipIf(noGpu)(`the mask kernel with blocks up to 2^15 and odd lengths agrees with the CPU (${provider})`, async () => {
    const mod = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.sub(kv).le(5).and(q.ge(kv));
    const cases: [number, number, [number, number]][] = [
      [8, 8, [MAX_BLOCK_SIZE, MAX_BLOCK_SIZE]], [37, 50, [16, 4096]], [100, 70, [32, 7]], [64, 64, [64, 64]], [5, 300, [MAX_BLOCK_SIZE, 16]],
    ];
    for (const mask of [traceMaskMod(mod), traceMaskMod(noopMask)]) {
      for (const [qLen, kvLen, blockSize] of cases) {
        const arg = { mask, B: 1, H: 1, qLen, kvLen, blockSize };
        setPoison(true);
        let states;
        try { [states] = await realizeAll([maskBlocksNode(arg)]); } finally { setPoison(false); }
        expect([qLen, kvLen, blockSize, Array.from(states)]).toEqual([qLen, kvLen, blockSize, Array.from(maskBlockStatesCpu(arg, []))]);
      }
    }
    const m = await createBlockMask(causalMask, null, null, 8, 8, { blockSize: MAX_BLOCK_SIZE });
    expect(m.numComputedBlocks).toBe(1); // was 0: every block "empty", output zeros
  }, 300_000);
});

releaseGpuAfterAll();
