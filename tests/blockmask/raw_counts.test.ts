// The raw BlockMask constructor checks the count tables' values: the kernels' block walks trust them
// (lib/runtime/ROBUSTNESS.md), so a count outside [0, n] or partial + full > n is a typed error, not a read past a row.
import { it } from "./cpu_realizer.ts";
import { describe, expect } from "../harness.ts";
import { BlockMask, createBlockMask } from "../../lib/blockmask/mod.ts";
import { InvalidArgument } from "../../lib/errors.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { causalMask } from "../../mod.ts";

const i32 = (data: ArrayLike<number>, shape: number[]) => tensor(Array.from(data), shape, { dtype: "i32" });

describe("BlockMask constructor: count values", () => {
  it("accepts createBlockMask's tables and rejects a count above n, a negative count and partial + full > n", async () => {
    const m = await createBlockMask(causalMask, 1, 1, 300, 300, { blockSize: 128 }); // 3 × 3 blocks
    // causal's counts written out: per q block 1 partial (the diagonal) and 0, 1, 2 full blocks; per kv block likewise
    const kvNum = [1, 1, 1], fullKvNum = [0, 1, 2], qNum = [1, 1, 1];
    const fields = { ...m, kvNumBlocks: i32(kvNum, [1, 1, 3]), fullKvNumBlocks: i32(fullKvNum, [1, 1, 3]), qNumBlocks: i32(qNum, [1, 1, 3]) };
    expect(() => new BlockMask({ ...fields, tracedMask: undefined })).not.toThrow();
    const withKv = (row: number, v: number) => i32(kvNum.map((x, i) => i === row ? v : x), [1, 1, 3]);
    expect(() => new BlockMask({ ...fields, kvNumBlocks: withKv(1, 4) })).toThrow(InvalidArgument);
    expect(() => new BlockMask({ ...fields, kvNumBlocks: withKv(0, -1) })).toThrow(InvalidArgument);
    // row 2: 1 partial + 2 full = 3 blocks; 2 partial + 2 full = 4 > 3
    expect(() => new BlockMask({ ...fields, kvNumBlocks: withKv(2, 2) })).toThrow(/row 2/);
    expect(() => new BlockMask({ ...fields, qNumBlocks: i32(qNum.map((x, i) => i === 0 ? 7 : x), [1, 1, 3]) })).toThrow(/qNumBlocks\[0\] = 7/);
  });
});
