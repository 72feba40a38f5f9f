/**
 * The `maskBlocks` node on the device the runtime picks (Dawn / native WebGPU): its block states must equal
 * the dense definition, for a few masks with and without captured tensors, odd lengths and non-square
 * blocks. Outputs are poisoned first so an unwritten state fails. Skipped when only the CPU executor exists.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { deviceInfo, realizeAll, setPoison } from "../../lib/runtime/mod.ts";
import { maskBlocksNode } from "../../lib/blockmask/mask_blocks.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import { BlockMask } from "../../lib/blockmask/mod.ts";
import { build, denseOf, referenceTables, type Spec, statesOfDense } from "./reference.ts";

const provider = await deviceInfo().then((i) => i.provider, () => "cpu");
const skip = provider === "cpu" ? "no WebGPU adapter (the runtime chose the CPU executor)" : false;

const cases: [string, Spec, number, number, number, number, number | [number, number]][] = [
  ["causal S=300 block 128", { kind: "causal" }, 1, 1, 300, 300, 128],
  ["window ∧ ¬prefix, 200×300, [32, 64]", { kind: "and", a: { kind: "window", w: 70 }, b: { kind: "not", a: { kind: "prefix", p: 40 } } }, 1, 1, 200, 300, [32, 64]],
  ["per (b, h) window, B=2 H=2, 130×77, block 16", { kind: "headWindow", w: 5 }, 2, 2, 130, 77, 16],
  ["documents (captures), 256×256, block 64", { kind: "docs", seed: 7 }, 1, 1, 256, 256, 64],
  ["captured table, 100×180, block 32", { kind: "table", seed: 3, cell: 16, noise: true }, 1, 2, 100, 180, 32],
];

describe("maskBlocks on the GPU", () => {
  for (const [name, spec, B, H, qLen, kvLen, bs] of cases) {
    it.skipIf(skip)(`${name} (${provider})`, async () => {
      const blockSize: [number, number] = typeof bs === "number" ? [bs, bs] : bs;
      const { mod, js } = build(spec, qLen, kvLen);
      const node = maskBlocksNode({ mask: traceMaskMod(mod), B, H, qLen, kvLen, blockSize });
      setPoison(true);
      let states;
      try { [states] = await realizeAll([node]); } finally { setPoison(false); }
      const want = statesOfDense(denseOf(js, B, H, qLen, kvLen), B, H, qLen, kvLen, blockSize);
      expect(Array.from(states)).toEqual(Array.from(want));
      const m = BlockMask.fromStates(states, { B, H, qLen, kvLen, blockSize, maskMod: mod });
      const ref = referenceTables(want, B * H, m.numQBlocks, m.numKvBlocks);
      expect(Array.from(m.kvIndices.data!)).toEqual(ref.kv.idx);
      expect(Array.from(m.fullQIndices!.data!)).toEqual(ref.fullQ.idx);
    }, 300_000);
  }
});

releaseGpuAfterAll();
