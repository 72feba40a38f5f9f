import { it } from "./cpu_realizer.ts";
import fc from "fast-check";
import { describe, expect } from "../harness.ts";
import { createBlockMask, createMask } from "../../lib/blockmask/mod.ts";
import { anySpec, blockSizes, build, denseOf, referenceTables, statesOfDense } from "./reference.ts";
import { InvalidArgument, ModReturnTypeError } from "../../lib/errors.ts";
import { Tensor, tensor } from "../../lib/tensor/tensor.ts";
import type { Expr } from "../../lib/ir/expr.ts";

const pair = (bs: number | [number, number]): [number, number] => (typeof bs === "number" ? [bs, bs] : bs);

describe("createBlockMask", () => {
  it("agrees with the dense mask block by block (random mods, lengths, block sizes)", async () => {
    await fc.assert(
      fc.asyncProperty(
        anySpec, fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 300 }), blockSizes,
        fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 }),
        async (spec, qLen, kvLen, bs, B, H) => {
          const { mod, js } = build(spec, qLen, kvLen);
          const m = await createBlockMask(mod, B, H, qLen, kvLen, { blockSize: bs });
          const dense = denseOf(js, B, H, qLen, kvLen);
          const want = statesOfDense(dense, B, H, qLen, kvLen, pair(bs));
          expect(m.shape).toEqual([B, H, qLen, kvLen]);
          expect(Array.from(m.toStates())).toEqual(Array.from(want));
          // toDense: computed blocks (partial or full)
          expect(m.toDense().shape).toEqual([B, H, m.numQBlocks, m.numKvBlocks]);
          expect(Array.from(m.toDense().data!)).toEqual(Array.from(want, (s) => (s > 0 ? 1 : 0)));
          // sparsity over the real block grid
          const computed = want.filter((s) => s > 0).length;
          const sp = m.sparsity();
          expect(sp).toBeGreaterThanOrEqual(0);
          expect(sp).toBeLessThanOrEqual(100);
          expect(sp).toBeCloseTo(100 * (1 - computed / want.length), 9);
          // every table is PyTorch's ordering of the states, q tables the transposition
          const ref = referenceTables(want, B * H, m.numQBlocks, m.numKvBlocks);
          expect(Array.from(m.kvNumBlocks.data!)).toEqual(ref.kv.num);
          expect(Array.from(m.kvIndices.data!)).toEqual(ref.kv.idx);
          expect(Array.from(m.fullKvNumBlocks!.data!)).toEqual(ref.fullKv.num);
          expect(Array.from(m.fullKvIndices!.data!)).toEqual(ref.fullKv.idx);
          expect(Array.from(m.qNumBlocks.data!)).toEqual(ref.q.num);
          expect(Array.from(m.qIndices.data!)).toEqual(ref.q.idx);
          expect(Array.from(m.fullQNumBlocks!.data!)).toEqual(ref.fullQ.num);
          expect(Array.from(m.fullQIndices!.data!)).toEqual(ref.fullQ.idx);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("createMask equals the plain-JS mask", () => {
    fc.assert(
      fc.property(anySpec, fc.integer({ min: 1, max: 90 }), fc.integer({ min: 1, max: 90 }), (spec, qLen, kvLen) => {
        const { mod, js } = build(spec, qLen, kvLen);
        const t = createMask(mod, 2, null, qLen, kvLen);
        expect(t.shape).toEqual([2, 1, qLen, kvLen]);
        expect(t.dtype).toBe("i32");
        expect(Array.from(t.data!)).toEqual(Array.from(denseOf(js, 2, 1, qLen, kvLen)));
      }),
      { numRuns: 40 },
    );
  });

  for (const S of [128, 300, 512]) {
    it(`tables equal the dense reference at S = ${S} with the default block size`, async () => {
      const docs = new Int32Array(S).map((_, i) => Math.floor(i / 97));
      const docT = tensor(docs, [S], { dtype: "i32" });
      const mods: [string, (b: Expr, h: Expr, q: Expr, kv: Expr) => Expr, (q: number, kv: number) => boolean][] = [
        ["causal", (_b, _h, q, kv) => q.ge(kv), (q, kv) => q >= kv],
        ["window 100", (_b, _h, q, kv) => q.sub(kv).abs().le(100), (q, kv) => Math.abs(q - kv) <= 100],
        ["documents", (_b, _h, q, kv) => docT.at(q).eq(docT.at(kv)).and(q.ge(kv)), (q, kv) => docs[q] === docs[kv] && q >= kv],
      ];
      for (const [name, mod, js] of mods) {
        const m = await createBlockMask(mod, 1, 1, S, S);
        expect(m.blockSize).toEqual([128, 128]);
        const want = statesOfDense(createMask(mod, 1, 1, S, S).data!, 1, 1, S, S, [128, 128]);
        const wantJs = statesOfDense(denseOf((_b, _h, q, kv) => js(q, kv), 1, 1, S, S), 1, 1, S, S, [128, 128]);
        expect([name, Array.from(want)]).toEqual([name, Array.from(wantJs)]);
        const n = Math.ceil(S / 128);
        const ref = referenceTables(want, 1, n, n);
        expect([name, Array.from(m.kvNumBlocks.data!), Array.from(m.kvIndices.data!)]).toEqual([name, ref.kv.num, ref.kv.idx]);
        expect([name, Array.from(m.fullKvNumBlocks!.data!), Array.from(m.fullKvIndices!.data!)])
          .toEqual([name, ref.fullKv.num, ref.fullKv.idx]);
        expect([name, Array.from(m.qNumBlocks.data!), Array.from(m.qIndices.data!)]).toEqual([name, ref.q.num, ref.q.idx]);
        expect([name, Array.from(m.fullQNumBlocks!.data!), Array.from(m.fullQIndices!.data!)])
          .toEqual([name, ref.fullQ.num, ref.fullQ.idx]);
      }
    });
  }

  it("causal at S = 300, block 128: exact tables (edge blocks are never full)", async () => {
    const m = await createBlockMask((_b, _h, q, kv) => q.ge(kv), null, null, 300, 300);
    expect(m.shape).toEqual([1, 1, 300, 300]);
    // states: row 0 [P, _, _], row 1 [F, P, _], row 2 [P, P, P] (row 2 sticks out past 300: never full)
    expect(Array.from(m.kvNumBlocks.data!)).toEqual([1, 1, 3]);
    expect(Array.from(m.kvIndices.data!)).toEqual([0, 1, 2, 1, 0, 2, 0, 1, 2]);
    expect(Array.from(m.fullKvNumBlocks!.data!)).toEqual([0, 1, 0]);
    expect(Array.from(m.fullKvIndices!.data!)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2]);
    expect(Array.from(m.qNumBlocks.data!)).toEqual([2, 2, 1]);
    expect(Array.from(m.qIndices.data!)).toEqual([0, 2, 1, 1, 2, 0, 2, 0, 1]);
    expect(Array.from(m.fullQNumBlocks!.data!)).toEqual([1, 0, 0]);
    expect(Array.from(m.fullQIndices!.data!)).toEqual([1, 0, 2, 0, 1, 2, 0, 1, 2]);
    expect(m.sparsity()).toBeCloseTo(100 * (1 - 6 / 9), 9);
  });

  it("rejects bad arguments with typed errors", async () => {
    const causal = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.ge(kv);
    const bad: [string, () => Promise<unknown>][] = [
      ["qLen 0", () => createBlockMask(causal, 1, 1, 0, 8)],
      ["kvLen -3", () => createBlockMask(causal, 1, 1, 8, -3)],
      ["qLen 1.5", () => createBlockMask(causal, 1, 1, 1.5, 8)],
      ["B 0", () => createBlockMask(causal, 0, 1, 8, 8)],
      ["H 2.5", () => createBlockMask(causal, 1, 2.5, 8, 8)],
      ["blockSize 0", () => createBlockMask(causal, 1, 1, 8, 8, { blockSize: 0 })],
      ["blockSize [16]", () => createBlockMask(causal, 1, 1, 8, 8, { blockSize: [16] as unknown as [number, number] })],
      ["blockSize [16, -1]", () => createBlockMask(causal, 1, 1, 8, 8, { blockSize: [16, -1] })],
      ["maskMod not a function", () => createBlockMask(42 as never, 1, 1, 8, 8)],
    ];
    for (const [name, f] of bad) {
      let caught: unknown;
      try { await f(); } catch (e) { caught = e; }
      expect([name, caught instanceof InvalidArgument]).toEqual([name, true]);
    }
    let err: unknown;
    try { await createBlockMask((_b, _h, q, kv) => q.sub(kv), 1, 1, 8, 8); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModReturnTypeError);
    expect(() => createMask(causal, 1, 1, 0, 4)).toThrow(InvalidArgument);
    expect(() => createMask(causal, -1, 1, 4, 4)).toThrow(InvalidArgument);
    const lazy = new Tensor("maskBlocks", [], [4], "i32", {} as never);
    expect(() => createMask((_b, _h, q, _kv) => lazy.at(q).eq(1), 1, 1, 4, 4)).toThrow(InvalidArgument);
  });
});
