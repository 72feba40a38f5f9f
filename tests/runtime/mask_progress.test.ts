/**
 * A big CPU mask build reports its progress (issue #10 item 5): the CPU executor's maskBlocks op draws a bar over
 * the q-block rows when a build covers more than 2^28 entries, and none for small ones (on a terminal only; the test
 * forces the bar on through setProgressWriter).
 */
import { describe, expect, it } from "../harness.ts";
import { setProgressWriter } from "../../lib/runtime/progress.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { maskBlocksNode } from "../../lib/blockmask/mask_blocks.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import { causalMask } from "../../mod.ts";

const cpu = createCpuExecutor();

async function barWrites(S: number): Promise<string[]> {
  const writes: string[] = [];
  setProgressWriter((t) => void writes.push(t));
  try {
    const node = maskBlocksNode({ mask: traceMaskMod(causalMask), B: 1, H: 1, qLen: S, kvLen: S, blockSize: [128, 128] });
    await runPromise(cpu.realize([node]));
  } finally {
    setProgressWriter(undefined);
  }
  return writes;
}

describe("CPU createBlockMask progress", () => {
  it("S = 20000 (4·10^8 entries): a bar over the 157 q-block rows, ending at 157/157", async () => {
    const w = await barWrites(20000);
    expect(w.some((t) => t.includes("[flex createBlockMask 20000×20000]"))).toBe(true);
    expect(w.some((t) => t.includes("157/157"))).toBe(true);
    expect(w[w.length - 1]).toBe("\n");
  });
  it("S = 4096: no bar", async () => {
    expect(await barWrites(4096)).toEqual([]);
  });
});
