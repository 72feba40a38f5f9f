import { it } from "./cpu_realizer.ts";
import fc from "fast-check";
import { describe, expect } from "../harness.ts";
import { BlockMask, createBlockMask } from "../../lib/blockmask/mod.ts";
import { anySpec, blockSizes, build, referenceTables, tablesOf } from "./reference.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../../lib/errors.ts";
import { Tensor, tensor } from "../../lib/tensor/tensor.ts";

const i32 = (data: number[], shape: number[]) => tensor(data, shape, { dtype: "i32" });

describe("BlockMask.fromKvBlocks", () => {
  it("round-trips createBlockMask's tables (Tensors and { data, shape })", async () => {
    await fc.assert(
      fc.asyncProperty(
        anySpec, fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), blockSizes, fc.integer({ min: 1, max: 2 }),
        async (spec, qLen, kvLen, bs, H) => {
          const { mod } = build(spec, qLen, kvLen);
          const m = await createBlockMask(mod, 1, H, qLen, kvLen, { blockSize: bs });
          const opts = { blockSize: bs, maskMod: mod, seqLengths: [qLen, kvLen] as const };
          const a = BlockMask.fromKvBlocks(m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks, m.fullKvIndices, opts);
          expect(tablesOf(a)).toEqual(tablesOf(m));
          expect(a.seqLengths).toEqual([qLen, kvLen]);
          expect(a.tracedMask.hash).toBe(m.tracedMask.hash);
          const raw = (t: Tensor | null) => ({ data: Array.from(t!.data!), shape: [...t!.shape] });
          const b = BlockMask.fromKvBlocks(raw(m.kvNumBlocks), raw(m.kvIndices), raw(m.fullKvNumBlocks), raw(m.fullKvIndices), opts);
          expect(tablesOf(b)).toEqual(tablesOf(m));
          expect(Array.from(b.toStates())).toEqual(Array.from(m.toStates()));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("q tables are the exact transposition, whatever order the kv rows list their blocks in", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 3 }), fc.nat(),
        (nQ, nKV, G, seed) => {
          // random states, then kv rows listing their valid blocks in a scrambled order
          let s = seed || 1;
          const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
          const states = Array.from({ length: G * nQ * nKV }, () => Math.floor(rand() * 3));
          const ref = referenceTables(states, G, nQ, nKV);
          const scramble = (num: number[], idx: number[]) => {
            const out = [...idx];
            for (let r = 0; r < num.length; r++) {
              const row = out.slice(r * nKV, r * nKV + num[r]).reverse();
              out.splice(r * nKV, num[r], ...row);
            }
            return out;
          };
          const m = BlockMask.fromKvBlocks(
            i32(ref.kv.num, [1, G, nQ]), i32(scramble(ref.kv.num, ref.kv.idx), [1, G, nQ, nKV]),
            i32(ref.fullKv.num, [1, G, nQ]), i32(scramble(ref.fullKv.num, ref.fullKv.idx), [1, G, nQ, nKV]),
            { blockSize: 16 },
          );
          expect(Array.from(m.qNumBlocks.data!)).toEqual(ref.q.num);
          expect(Array.from(m.qIndices.data!)).toEqual(ref.q.idx);
          expect(Array.from(m.fullQNumBlocks!.data!)).toEqual(ref.fullQ.num);
          expect(Array.from(m.fullQIndices!.data!)).toEqual(ref.fullQ.idx);
          expect(Array.from(m.toStates())).toEqual(states);
          expect(m.seqLengths).toEqual([nQ * 16, nKV * 16]); // default: table sizes × block size
        },
      ),
      { numRuns: 100 },
    );
  });

  it("accepts tables without batch / head dims and without full tables", () => {
    const m = BlockMask.fromKvBlocks({ data: [1, 2], shape: [2] }, { data: [1, 0, 0, 1], shape: [2, 2] });
    expect(m.shape).toEqual([1, 1, 256, 256]);
    expect(m.kvIndices.shape).toEqual([1, 1, 2, 2]);
    expect(m.fullKvNumBlocks).toBeNull();
    expect(m.fullQIndices).toBeNull();
    expect(Array.from(m.toStates())).toEqual([0, 1, 1, 1]);
    expect(Array.from(m.qNumBlocks.data!)).toEqual([1, 2]);
    expect(Array.from(m.qIndices.data!)).toEqual([1, 0, 0, 1]);
    expect(m.tracedMask.name).toBe("noopMask");
    expect(m.sparsity()).toBeCloseTo(25, 9);
  });

  it("rejects bad tables with typed errors", () => {
    const num = i32([1, 1], [1, 1, 2]), idx = i32([0, 1, 1, 0], [1, 1, 2, 2]);
    const cases: [string, () => unknown, unknown][] = [
      ["index out of range", () => BlockMask.fromKvBlocks(num, i32([2, 1, 1, 0], [1, 1, 2, 2])), InvalidArgument],
      ["negative index", () => BlockMask.fromKvBlocks(num, i32([0, -1, 1, 0], [1, 1, 2, 2])), InvalidArgument],
      ["count above nKV", () => BlockMask.fromKvBlocks(i32([3, 1], [1, 1, 2]), idx), InvalidArgument],
      ["negative count", () => BlockMask.fromKvBlocks(i32([-1, 1], [1, 1, 2]), idx), InvalidArgument],
      ["duplicate block", () => BlockMask.fromKvBlocks(i32([2, 1], [1, 1, 2]), i32([0, 0, 1, 0], [1, 1, 2, 2])), InvalidArgument],
      ["partial and full overlap", () => BlockMask.fromKvBlocks(num, idx, num, idx), InvalidArgument],
      ["only one full table", () => BlockMask.fromKvBlocks(num, idx, num, null), InvalidArgument],
      ["num shape", () => BlockMask.fromKvBlocks(i32([1, 1, 1], [1, 1, 3]), idx), ShapeError],
      ["full shape", () => BlockMask.fromKvBlocks(num, idx, i32([0], [1, 1, 1]), i32([0, 0], [1, 1, 1, 2])), ShapeError],
      ["rank 1 indices", () => BlockMask.fromKvBlocks({ data: [1], shape: [] }, { data: [0], shape: [1] }), ShapeError],
      ["data/shape size", () => BlockMask.fromKvBlocks({ data: [1], shape: [2] }, { data: [0, 1, 1, 0], shape: [2, 2] }), ShapeError],
      ["lengths vs grid", () => BlockMask.fromKvBlocks(num, idx, null, null, { seqLengths: [300, 256] }), ShapeError],
      ["bad seqLengths", () => BlockMask.fromKvBlocks(num, idx, null, null, { seqLengths: [0, 256] }), InvalidArgument],
      ["bad blockSize", () => BlockMask.fromKvBlocks(num, idx, null, null, { blockSize: -4 }), InvalidArgument],
      ["f32 table", () => BlockMask.fromKvBlocks(tensor([1, 1], [1, 1, 2]), idx), DTypeError],
      ["non-integer data", () => BlockMask.fromKvBlocks({ data: [1.5, 1], shape: [2] }, { data: [0, 1, 1, 0], shape: [2, 2] }), DTypeError],
      ["lazy tensor", () => BlockMask.fromKvBlocks(new Tensor("maskBlocks", [], [1, 1, 2], "i32", {} as never), idx), InvalidArgument],
    ];
    for (const [name, f, cls] of cases) {
      let caught: unknown;
      try { f(); } catch (e) { caught = e; }
      expect([name, caught instanceof (cls as typeof Error), (caught as Error | undefined)?.message !== ""]).toEqual([name, true, true]);
    }
    // shorter lengths with the same grid are fine (partial last blocks)
    expect(BlockMask.fromKvBlocks(num, idx, null, null, { seqLengths: [200, 129] }).shape).toEqual([1, 1, 200, 129]);
  });
});

describe("BlockMask.noop", () => {
  it("keeps everything: full blocks inside, partial edge blocks, noop mask, B = H = 1", async () => {
    for (const [S1, S2, bs] of [[256, 256, 128], [300, 200, 128], [5, 77, 16], [64, 64, [16, 32]]] as const) {
      const m = BlockMask.noop(S1, S2, bs as number | [number, number]);
      expect(m.shape).toEqual([1, 1, S1, S2]);
      const fresh = await createBlockMask(() => true, null, null, S1, S2, { blockSize: bs as number | [number, number] });
      expect(tablesOf(m)).toEqual(tablesOf(fresh));
      expect(m.sparsity()).toBe(0);
      expect(m.tracedMask.expr.value).toBe(true);
    }
    const m = BlockMask.noop(256, 384);
    expect(m.blockSize).toEqual([128, 128]);
    expect(Array.from(m.kvNumBlocks.data!)).toEqual([0, 0]);
    expect(Array.from(m.fullKvNumBlocks!.data!)).toEqual([3, 3]);
    expect(Array.from(m.toStates())).toEqual([2, 2, 2, 2, 2, 2]);
    expect(() => BlockMask.noop(0, 4)).toThrow(InvalidArgument);
  });
});
