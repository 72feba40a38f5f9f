import { it } from "./cpu_realizer.ts";
import fc from "fast-check";
import { describe, expect } from "../harness.ts";
import { BlockMask, createBlockMask, createMask } from "../../lib/blockmask/mod.ts";
import { anySpec, blockSizes, build, denseOf, lengthFreeSpec, tablesOf } from "./reference.ts";
import { InvalidArgument } from "../../lib/errors.ts";
import { Expr } from "../../lib/ir/expr.ts";

/** What attention sees through a mask: full → kept, partial → the mask mod decides, skipped → dropped. */
function effective(m: BlockMask, js: (b: number, h: number, q: number, kv: number) => boolean): Uint8Array {
  const [B, H, qLen, kvLen] = m.shape, [bq, bkv] = m.blockSize, nQ = m.numQBlocks, nKV = m.numKvBlocks;
  const s = m.toStates();
  const out = new Uint8Array(B * H * qLen * kvLen);
  let o = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    for (let q = 0; q < qLen; q++) for (let kv = 0; kv < kvLen; kv++) {
      const st = s[((b * H + h) * nQ + Math.floor(q / bq)) * nKV + Math.floor(kv / bkv)];
      out[o++] = st === 2 || (st === 1 && js(b, h, q, kv)) ? 1 : 0;
    }
  }
  return out;
}

/** A full block must lie inside both lengths. */
function noFullSticksOut(m: BlockMask): boolean {
  const [B, H, qLen, kvLen] = m.shape, [bq, bkv] = m.blockSize, nQ = m.numQBlocks, nKV = m.numKvBlocks;
  const s = m.toStates();
  for (let g = 0; g < B * H; g++) for (let i = 0; i < nQ; i++) for (let j = 0; j < nKV; j++) {
    if (s[(g * nQ + i) * nKV + j] === 2 && ((i + 1) * bq > qLen || (j + 1) * bkv > kvLen)) return false;
  }
  return true;
}

// depends on b and h, so a wrong slice shows
const bhMask = (b: Expr, h: Expr, q: Expr, kv: Expr) => q.sub(kv).le(b.mul(40).add(h.mul(25)).add(3)).and(kv.le(q.add(h.mul(30))));

describe("BlockMask.slice", () => {
  it("selects a batch and/or head and keeps the mask mod's meaning there", async () => {
    const [B, H, S] = [2, 3, 150];
    const m = await createBlockMask(bhMask, B, H, S, S, { blockSize: 32 });
    const full = createMask(bhMask, B, H, S, S).data!;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const s = m.slice(b, h);
        expect(s.shape).toEqual([1, 1, S, S]);
        const fixed = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => bhMask(Expr.const(b), Expr.const(h), q, kv);
        const fresh = await createBlockMask(fixed, 1, 1, S, S, { blockSize: 32 });
        expect(tablesOf(s)).toEqual(tablesOf(fresh));
        // the sliced mask mod at (0, 0) is the original at (b, h)
        const dense = createMask(s.maskMod, 1, 1, S, S).data!;
        expect(Array.from(dense)).toEqual(Array.from(full.subarray((b * H + h) * S * S, (b * H + h + 1) * S * S)));
        expect(s.tracedMask.name).toContain(`b=${b}`);
      }
    }
    const heads = m.slice(null, 2);
    expect(heads.shape).toEqual([2, 1, S, S]);
    const n = m.numQBlocks * m.numKvBlocks, st = m.toStates();
    expect(Array.from(heads.toStates())).toEqual([...st.subarray(2 * n, 3 * n), ...st.subarray(5 * n, 6 * n)]);
    expect(m.slice(1).shape).toEqual([1, 3, S, S]);
    expect(tablesOf(m.slice(-1, -1))).toEqual(tablesOf(m.slice(1, 2)));
    expect(m.slice()).toBe(m);
  });

  it("on a broadcast dim reads row 0 and substitutes the requested index in the mask mod", async () => {
    const m = await createBlockMask(bhMask, null, 3, 100, 100, { blockSize: 16 });
    const s = m.slice(1, 0);
    expect(s.shape).toEqual([1, 1, 100, 100]);
    expect(Array.from(s.toStates())).toEqual(Array.from(m.slice(0, 0).toStates()));
    const want = createMask((_b, _h, q, kv) => bhMask(Expr.const(1), Expr.const(0), q, kv), 1, 1, 100, 100).data!;
    expect(Array.from(createMask(s.maskMod, 1, 1, 100, 100).data!)).toEqual(Array.from(want));
  });

  it("over q blocks equals the mask built fresh over the selected rows (random ranges, b / h picks)", async () => {
    await fc.assert(
      fc.asyncProperty(
        anySpec, fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), blockSizes, fc.nat(), fc.nat(), fc.boolean(),
        async (spec, qLen, kvLen, bs, r1, r2, pickHead) => {
          const { mod, js } = build(spec, qLen, kvLen);
          const m = await createBlockMask(mod, 1, 2, qLen, kvLen, { blockSize: bs });
          const nQ = m.numQBlocks, bq = m.blockSize[0];
          const a = r1 % nQ, b = a + 1 + (r2 % (nQ - a));
          const h = pickHead ? 1 : null;
          const s = m.slice(null, h, [a, b]);
          const rows = Math.min(b * bq, qLen) - a * bq;
          expect(s.shape).toEqual([1, pickHead ? 1 : 2, rows, kvLen]);
          const shifted = (b_: Expr, h_: Expr, q: Expr, kv: Expr) => mod(b_, pickHead ? Expr.const(1) : h_, q.add(a * bq), kv);
          const fresh = await createBlockMask(shifted, 1, pickHead ? 1 : 2, rows, kvLen, { blockSize: bs });
          expect(tablesOf(s)).toEqual(tablesOf(fresh));
          const jsShifted = (b_: number, h_: number, q: number, kv: number) => js(b_, pickHead ? 1 : h_, q + a * bq, kv);
          expect(Array.from(effective(s, jsShifted))).toEqual(Array.from(denseOf(jsShifted, 1, pickHead ? 1 : 2, rows, kvLen)));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("rejects bad indices", async () => {
    const m = await createBlockMask(bhMask, 2, 3, 64, 64, { blockSize: 32 });
    for (const [b, h] of [[2, 0], [0, 3], [-3, 0], [0.5, 0], [0, -4]]) {
      expect(() => m.slice(b, h)).toThrow(InvalidArgument);
    }
    const bc = await createBlockMask(bhMask, null, null, 64, 64);
    expect(() => bc.slice(-1)).toThrow(InvalidArgument);
  });
});

describe("BlockMask.adjust", () => {
  it("stays exact for length-independent masks (shrink and grow), no full block sticks out", async () => {
    await fc.assert(
      fc.asyncProperty(
        lengthFreeSpec, fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), blockSizes, fc.integer({ min: 1, max: 2 }),
        async (spec, q1, kv1, q2, kv2, bs, H) => {
          const { mod, js } = build(spec, q1, kv1);
          const m = await createBlockMask(mod, 1, H, q1, kv1, { blockSize: bs });
          const a = m.adjust(q2, kv2);
          expect(a.shape).toEqual([1, H, q2, kv2]);
          expect(a.blockSize).toEqual(m.blockSize);
          expect(a.maskMod).toBe(m.maskMod);
          expect(Array.from(effective(a, js))).toEqual(Array.from(denseOf(js, 1, H, q2, kv2)));
          expect(noFullSticksOut(a)).toBe(true);
          const sp = a.sparsity();
          expect(sp >= 0 && sp <= 100).toBe(true);
        },
      ),
      { numRuns: 80 },
    );
  });

  it("cropping at block boundaries equals a fresh mask; same lengths return the mask itself", async () => {
    const causal = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.ge(kv);
    const m = await createBlockMask(causal, 1, 1, 512, 512);
    const fresh = await createBlockMask(causal, 1, 1, 256, 384);
    expect(tablesOf(m.adjust(256, 384))).toEqual(tablesOf(fresh));
    expect(m.adjust(512, 512)).toBe(m);
    // a grown grid: new blocks are partial (the mask mod decides there)
    const g = (await createBlockMask(causal, 1, 1, 128, 128)).adjust(256, 256);
    expect(Array.from(g.toStates())).toEqual([1, 1, 1, 1]);
    // a full block that now sticks out turns partial
    const s = m.adjust(200, 512);
    expect(Array.from(s.toStates().subarray(4, 8))).toEqual([1, 1, 0, 0]);
    expect(() => m.adjust(0, 4)).toThrow(InvalidArgument);
    expect(() => m.adjust(4, 2.5)).toThrow(InvalidArgument);
  });

  it("keeps the absence of full tables", async () => {
    const m = await createBlockMask((_b, _h, q, kv) => q.ge(kv), 1, 1, 256, 256);
    const partialOnly = BlockMask.fromKvBlocks(m.kvNumBlocks, m.kvIndices);
    const a = partialOnly.adjust(300, 300);
    expect(a.fullKvNumBlocks).toBeNull();
    expect(a.fullQIndices).toBeNull();
    expect(Array.from(a.toStates())).toEqual([1, 0, 1, 0, 1, 1, 1, 1, 1]);
  });
});
