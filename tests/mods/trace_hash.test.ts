import { describe, expect, it } from "../harness.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import { traceMaskMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { alibi, documentMask, slidingWindow } from "../../lib/mods/gallery/mod.ts";

describe("tracing hash (the kernel-cache key)", () => {
  it("the same mod traced twice has the same hash", () => {
    const mod = (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.ge(kv).and(q.sub(kv).le(5));
    expect(traceMaskMod(mod).hash).toBe(traceMaskMod(mod).hash);
    expect(traceMaskMod(slidingWindow(4)).hash).toBe(traceMaskMod(slidingWindow(4)).hash);
  });

  it("structurally equal mods written separately hash equal", () => {
    const a = traceMaskMod((_b, _h, q, kv) => q.ge(kv));
    const b = traceMaskMod((_b, _h, x, y) => x.ge(y));
    expect(a.hash).toBe(b.hash);
  });

  it("a changed closure constant changes the hash", () => {
    expect(traceMaskMod(slidingWindow(4)).hash).not.toBe(traceMaskMod(slidingWindow(5)).hash);
    const scaled = (c: number) => (s: Expr) => s.mul(c);
    expect(traceScoreMod(scaled(2)).hash).not.toBe(traceScoreMod(scaled(3)).hash);
  });

  it("different operators or argument roles change the hash", () => {
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv)).hash).not.toBe(traceMaskMod((_b, _h, q, kv) => q.gt(kv)).hash);
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv)).hash).not.toBe(traceMaskMod((_b, _h, q, kv) => kv.ge(q)).hash);
  });

  it("mask and score traces of the same expression do not collide", () => {
    expect(traceScoreMod((s) => s).hash).not.toBe(traceMaskMod(() => true).hash);
  });

  it("different captured VALUES of the same shape give the same hash", () => {
    const a = traceMaskMod(documentMask(tensor([0, 0, 1, 1], [4], { dtype: "i32" })));
    const b = traceMaskMod(documentMask(tensor([0, 1, 1, 2], [4], { dtype: "i32" })));
    expect(a.hash).toBe(b.hash);
    expect(a.captures.length).toBe(1);
    expect(a.captures[0]).not.toBe(b.captures[0]);
    const s1 = traceScoreMod(alibi([0.5, 0.25])), s2 = traceScoreMod(alibi([1, 2]));
    expect(s1.hash).toBe(s2.hash);
  });

  it("a captured tensor of another shape or dtype changes the hash", () => {
    const a = traceMaskMod(documentMask([0, 0, 1, 1]));
    const b = traceMaskMod(documentMask([0, 0, 1, 1, 2]));
    expect(a.hash).not.toBe(b.hash);
    const f = tensor([1, 2, 3, 4], [4], { dtype: "f32" }), i = tensor([1, 2, 3, 4], [4], { dtype: "i32" });
    expect(traceScoreMod((s, _b, _h, q) => s.add(f.at(q))).hash).not.toBe(traceScoreMod((s, _b, _h, q) => s.add(i.at(q))).hash);
  });

  it("captures are numbered by first appearance; the same tensor read twice is one slot", () => {
    const x = tensor([1, 2], [2], { dtype: "i32" }), y = tensor([3, 4], [2], { dtype: "i32" });
    const t = traceMaskMod((_b, _h, q, kv) => y.at(q).eq(x.at(kv)).and(y.at(kv).ge(0)));
    expect(t.captures).toEqual([y, x]);
    // swapping which tensor is read first gives a different program (slots follow roles), same values irrelevant
    const t2 = traceMaskMod((_b, _h, q, kv) => x.at(q).eq(y.at(kv)).and(x.at(kv).ge(0)));
    expect(t2.hash).toBe(t.hash);
  });

  it("traced mods keep the function's name", () => {
    expect(traceMaskMod(slidingWindow(3)).name).toBe("slidingWindow(3)");
    expect(traceScoreMod(function myBias(s) { return s; }).name).toBe("myBias");
  });
});
