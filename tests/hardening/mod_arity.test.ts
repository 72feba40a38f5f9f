/**
 * Mod parameters are positional: a short list silently shifts the names. A mask becoming a BlockMask must
 * declare (b, h, q, kv) (or nothing: a constant); a score mod that declares 2–4 parameters and never reads the
 * first (the score) was written as (b, h, q, kv) and is refused. Both are ModArityError.
 */
import { describe, expect, it } from "../harness.ts";
import {
  andMasks, BlockMask, causalMask, createBlockMask, createMask, type Expr, flexAttention, GALLERY, ModArityError,
  notMask, orMasks, randn, traceMaskMod, traceScoreMod,
} from "../../mod.ts";

async function rejection(p: () => Promise<unknown>): Promise<unknown> {
  try { await p(); } catch (e) { return e; }
  return undefined;
}

describe("hardening: mod arity", () => {
  it("a 2-parameter mask mod (q, kv) => q.ge(kv) is a ModArityError in createBlockMask / createMask / fromKvBlocks", async () => {
    const short = (q: Expr, kv: Expr) => q.ge(kv);
    const err = await rejection(() => createBlockMask(short as never, 1, 1, 16, 16));
    expect(err).toBeInstanceOf(ModArityError);
    expect((err as Error).message).toContain("(b, h, q, kv)");
    expect(() => createMask(short as never, 1, 1, 8, 8)).toThrow(ModArityError);
    expect(() => BlockMask.fromKvBlocks({ data: [1], shape: [1] }, { data: [0], shape: [1, 1] }, null, null, { maskMod: short as never }))
      .toThrow(ModArityError);
  });

  it("a short mask inside andMasks / orMasks / notMask is found too", async () => {
    const short = (q: Expr, kv: Expr) => q.ge(kv);
    for (const m of [andMasks(causalMask, short as never), orMasks(short as never, causalMask), notMask(short as never)]) {
      expect(await rejection(() => createBlockMask(m, 1, 1, 16, 16))).toBeInstanceOf(ModArityError);
    }
  });

  it("a 5-parameter function passed as a mask mod is a ModArityError naming the score mod signature", () => {
    const score5 = (s: Expr, _b: Expr, _h: Expr, _q: Expr, _kv: Expr) => s.gt(0);
    expect(() => traceMaskMod(score5 as never)).toThrow(ModArityError);
    expect(() => createMask(score5 as never, 1, 1, 4, 4)).toThrow(/score, b, h, q, kv/);
  });

  it("a 4-parameter score mod (b, h, q, kv) that drops the score is a ModArityError", () => {
    const slopes = randn([2]);
    const bad = (_b: Expr, h: Expr, q: Expr, kv: Expr) => slopes.at(h).mul(q.sub(kv));
    let err: unknown;
    try { traceScoreMod(bad as never); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModArityError);
    expect((err as Error).message).toContain("(score, b, h, q, kv)");
    const q = randn([1, 2, 8, 16]);
    expect(() => flexAttention(q, q, q, { scoreMod: bad as never })).toThrow(ModArityError);
  });

  it("well-formed mods keep working: 4-param masks, constants, trailing parameters left out of score mods", async () => {
    expect((await createBlockMask((_b, _h, q, kv) => q.ge(kv), null, null, 16, 16, { blockSize: 8 })).numComputedBlocks).toBe(3);
    expect(createMask(() => true, 1, 1, 2, 2).data).toEqual(Int32Array.from([1, 1, 1, 1]));
    expect(traceScoreMod((s) => s.mul(2)).expr.op).toBe("mul");
    expect(traceScoreMod((s, _b, h) => s.add(h)).expr.op).toBe("add");
    expect(traceScoreMod((_s, _b, _h, q, _kv) => q).expr.dtype).toBe("f32"); // ignoring the score: declare all five
  });

  it("every gallery mod has the arity its kind requires", () => {
    for (const [name, entry] of Object.entries(GALLERY)) {
      const mod = entry.make(64, 4) as (...a: never[]) => unknown;
      if (entry.kind === "mask") expect([name, mod.length]).toEqual([name, 4]);
      else {
        expect([name, [1, 5].includes(mod.length)]).toEqual([name, true]);
        expect(() => traceScoreMod(mod as never)).not.toThrow();
      }
    }
  });
});
