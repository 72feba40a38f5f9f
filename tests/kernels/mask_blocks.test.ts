/**
 * The generated block-mask kernel must agree exactly with maskBlockStatesCpu (0 skipped / 1 partial / 2 full),
 * for several mods, lengths 1…300 and block sizes, with its output poisoned first.
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { tensor, type Tensor } from "../../lib/tensor/tensor.ts";
import { type MaskMod, traceMaskMod } from "../../lib/mods/trace.ts";
import { type MaskBlocksArg, maskBlocksNode, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { setPoison } from "../../lib/runtime/debug.ts";

async function agree(mod: MaskMod, B: number, H: number, qLen: number, kvLen: number, blockSize: [number, number]) {
  const mask = traceMaskMod(mod);
  const arg: MaskBlocksArg = { mask, B, H, qLen, kvLen, blockSize };
  setPoison(true);
  const [gpuStates] = await Effect.runPromise(gpu.executor.realize([maskBlocksNode(arg)]));
  const cpu = maskBlockStatesCpu(arg, mask.captures.map((c) => (c as Tensor).data!));
  expect(Array.from(gpuStates)).toEqual(Array.from(cpu));
}

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

describe("mask_blocks kernel vs maskBlockStatesCpu", () => {
  const run = it.skipIf(skipReason);

  run("causal over lengths 1…300 and block sizes", async () => {
    for (const [q, kv] of [[1, 1], [7, 300], [128, 128], [300, 300], [129, 65], [256, 17]]) {
      for (const bs of [[128, 128], [64, 64], [16, 32], [100, 100], [3, 5]] as [number, number][]) {
        await agree(causal, 1, 1, q, kv, bs);
      }
    }
  });

  run("sliding window, prefix, checkerboard", async () => {
    await agree((_b, _h, q, kv) => q.sub(kv).abs().le(20), 1, 1, 300, 300, [32, 32]);
    await agree((_b, _h, q, kv) => kv.lt(40).or(q.ge(kv)), 1, 1, 200, 250, [64, 64]);
    await agree((_b, _h, q, kv) => q.add(kv).mod(2).eq(0), 1, 1, 64, 64, [1, 2]);
    await agree((_b, _h, q, kv) => q.sub(kv).floorDiv(16).mod(3).ne(0), 1, 1, 190, 190, [16, 16]);
  });

  run("per batch / head masks (B=2, H=2)", () =>
    agree((b, h, q, kv) => kv.le(q.add(b.mul(40)).sub(h.mul(25))), 2, 2, 150, 150, [32, 32]));

  run("document mask with a captured i32 tensor", async () => {
    const ids = Int32Array.from({ length: 300 }, (_, i) => Math.floor(i / 37) + (i % 53 === 0 ? 1 : 0));
    const docs = tensor(ids, [300], { dtype: "i32" });
    await agree((_b, _h, q, kv) => docs.at(q).eq(docs.at(kv)), 1, 1, 300, 300, [64, 64]);
    await agree((_b, _h, q, kv) => docs.at(q).eq(docs.at(kv)).and(q.ge(kv)), 1, 1, 300, 300, [16, 16]);
  });

  run("one pipeline for every length and block size of a mod", async () => {
    const win: MaskMod = (_b, _h, q, kv) => q.sub(kv).le(33).and(q.ge(kv));
    await agree(win, 1, 1, 100, 100, [32, 32]);
    const n = gpu.executor.pipelineCacheSize();
    await agree(win, 1, 1, 250, 180, [64, 16]);
    expect(gpu.executor.pipelineCacheSize()).toBe(n);
  });
});

releaseGpuAfterAll();
