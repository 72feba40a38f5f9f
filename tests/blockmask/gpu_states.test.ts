/**
 * The `maskBlocks` node on the device the runtime picks (Dawn / native WebGPU): its block states must equal
 * the dense definition, for a few masks with and without captured tensors, odd lengths and non-square
 * blocks. Outputs are poisoned first so an unwritten state fails. Skipped when only the CPU executor exists.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { deviceInfo, realizeAll, setPoison } from "../../lib/runtime/mod.ts";
import { maskBlocksNode } from "../../lib/blockmask/mask_blocks.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import { BlockMask, createBlockMask } from "../../lib/blockmask/mod.ts";
import { type BlockTablesArg, blockTablesCpu, blockTablesNode, PARTS } from "../../lib/blockmask/block_tables.ts";
import { maskBlocksTuning } from "../../lib/lower/plan_mask_blocks.ts";
import { build, denseOf, referenceTables, type Spec, statesOfDense } from "./reference.ts";

const provider = await deviceInfo().then((i) => i.provider, () => "cpu");
const skip = provider === "cpu" ? "no WebGPU adapter (the runtime chose the CPU executor)" : false;

const cases: [string, Spec, number, number, number, number, number | [number, number]][] = [
  ["causal S=300 block 128", { kind: "causal" }, 1, 1, 300, 300, 128],
  ["window ∧ ¬prefix, 200×300, [32, 64]", { kind: "and", a: { kind: "window", w: 70 }, b: { kind: "not", a: { kind: "prefix", p: 40 } } }, 1, 1, 200, 300, [32, 64]],
  ["per (b, h) window, B=2 H=2, 130×77, block 16", { kind: "headWindow", w: 5 }, 2, 2, 130, 77, 16],
  ["documents (captures), 256×256, block 64", { kind: "docs", seed: 7 }, 1, 1, 256, 256, 64],
  ["captured table, 100×180, block 32", { kind: "table", seed: 3, cell: 16, noise: true }, 1, 2, 100, 180, 32],
  // a kv block wider than the workgroup (its row is strided) and one narrower than a lattice row
  ["window, kv blocks of 600, 50×1300, [8, 600]", { kind: "window", w: 450 }, 1, 1, 50, 1300, [8, 600]],
  ["prefix ∨ causal, 70×90, [70, 3]", { kind: "or", a: { kind: "prefix", p: 5 }, b: { kind: "causal" } }, 1, 1, 70, 90, [70, 3]],
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

describe("maskBlocks kernel unrolls", () => {
  // the states kernel walks rowsPerStep rows of its column per step (then single rows): other unrolls than the
  // default must give the same states, with steps that end exactly, leave a remainder, or never run
  it.skipIf(skip)(`rowsPerStep 1, 2, 4 equal the dense definition (${provider})`, async () => {
    const picked: [Spec, number, number, number, number, [number, number]][] = [
      [{ kind: "causal" }, 1, 1, 300, 300, [128, 128]],
      [{ kind: "docs", seed: 5 }, 1, 1, 256, 200, [64, 32]],
      [{ kind: "headWindow", w: 9 }, 1, 2, 90, 77, [24, 16]],
    ];
    const saved = maskBlocksTuning.rowsPerStep;
    try {
      for (const rowsPerStep of [1, 2, 4]) {
        maskBlocksTuning.rowsPerStep = rowsPerStep;
        for (const [spec, B, H, qLen, kvLen, blockSize] of picked) {
          const { mod, js } = build(spec, qLen, kvLen);
          setPoison(true);
          let states;
          try { [states] = await realizeAll([maskBlocksNode({ mask: traceMaskMod(mod), B, H, qLen, kvLen, blockSize })]); } finally { setPoison(false); }
          const want = statesOfDense(denseOf(js, B, H, qLen, kvLen), B, H, qLen, kvLen, blockSize);
          expect({ rowsPerStep, spec: spec.kind, states: Array.from(states) }).toEqual({ rowsPerStep, spec: spec.kind, states: Array.from(want) });
        }
      }
    } finally {
      maskBlocksTuning.rowsPerStep = saved;
    }
  }, 300_000);
});

describe("blockTables on the GPU", () => {
  it.skipIf(skip)(`every part, partial-only and noop grids equal blockTablesCpu (${provider})`, async () => {
    // random states (empty / partial / full) over odd grids, G > 1, a row longer than the workgroup
    const grids: [number, number, number, number][] = [[1, 1, 3, 5], [2, 3, 7, 4], [1, 2, 1, 300], [1, 1, 300, 2]];
    let seed = 11;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const [B, H, nQ, nKV] of grids) {
      const blockSize: [number, number] = [4, 4];
      const states = Int32Array.from({ length: B * H * nQ * nKV }, () => Math.floor(rnd() * 3));
      const statesNode = tensor(Array.from(states), [B, H, nQ, nKV], { dtype: "i32" });
      for (const [separateFull, parts] of [[true, PARTS], [false, PARTS.filter((p) => !p.startsWith("full"))], [true, ["qIdx", "fullKvNum"]]] as const) {
        const arg: BlockTablesArg = { B, H, qLen: nQ * 4 - 1, kvLen: nKV * 4, blockSize, source: "states", separateFull, parts };
        setPoison(true);
        const node = blockTablesNode(arg, statesNode); // its arg lists the parts in PARTS order
        let got;
        try { [got] = await realizeAll([node]); } finally { setPoison(false); }
        expect(Array.from(got)).toEqual(Array.from(blockTablesCpu(node.arg as BlockTablesArg, states)));
      }
    }
    for (const [qLen, kvLen, bs] of [[300, 129, [64, 32]], [5, 700, [2, 2]]] as const) {
      const arg: BlockTablesArg = { B: 1, H: 1, qLen, kvLen, blockSize: bs, source: "noop", separateFull: true, parts: PARTS };
      setPoison(true);
      let got;
      try { [got] = await realizeAll([blockTablesNode(arg)]); } finally { setPoison(false); }
      const want = BlockMask.noop(qLen, kvLen, bs);
      expect(Array.from(got)).toEqual(Array.from(blockTablesCpu(arg)));
      expect(Array.from(got.subarray(0, want.numQBlocks))).toEqual(Array.from(want.kvNumBlocks.data!));
    }
  }, 300_000);

  it.skipIf(skip)(`createBlockMask builds its tables on the device, equal to the reference (${provider})`, async () => {
    const { mod, js } = build({ kind: "and", a: { kind: "causal" }, b: { kind: "window", w: 90 } }, 333, 333);
    for (const separateFullBlocks of [true, false]) {
      const m = await createBlockMask(mod, 1, 2, 333, 333, { blockSize: [32, 16], separateFullBlocks });
      const want = statesOfDense(denseOf(js, 1, 2, 333, 333), 1, 2, 333, 333, [32, 16]);
      const ref = referenceTables(separateFullBlocks ? want : want.map((s) => (s === 2 ? 1 : s)), 2, m.numQBlocks, m.numKvBlocks);
      expect(Array.from(m.kvIndices.data!)).toEqual(ref.kv.idx);
      expect(Array.from(m.kvNumBlocks.data!)).toEqual(ref.kv.num);
      expect(Array.from(m.qIndices.data!)).toEqual(ref.q.idx);
      expect(Array.from(m.qNumBlocks.data!)).toEqual(ref.q.num);
      if (separateFullBlocks) {
        expect(Array.from(m.fullKvIndices!.data!)).toEqual(ref.fullKv.idx);
        expect(Array.from(m.fullQIndices!.data!)).toEqual(ref.fullQ.idx);
        expect(Array.from(m.fullQNumBlocks!.data!)).toEqual(ref.fullQ.num);
      } else {
        expect(m.fullKvNumBlocks).toBeNull();
        expect(m.fullQIndices).toBeNull();
      }
    }
  }, 300_000);
});

releaseGpuAfterAll();
