import { describe, expect, it } from "../harness.ts";
import { Expr, where } from "../../lib/ir/expr.ts";
import { traceMaskMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { evalAt } from "./dense.ts";

const q = Expr.arg("q"), kv = Expr.arg("kv"), score = Expr.arg("score");

describe("IR typing and promotion", () => {
  it("args: score is f32, indices are i32; number constants type by integrality", () => {
    expect(score.dtype).toBe("f32");
    expect(q.dtype).toBe("i32");
    expect(Expr.const(3).dtype).toBe("i32");
    expect(Expr.const(0.5).dtype).toBe("f32");
    expect(Expr.const(true).dtype).toBe("bool");
  });

  it("i32 ∘ f32 promotes to f32, i32 ∘ i32 stays i32", () => {
    expect(q.add(kv).dtype).toBe("i32");
    expect(q.add(0.5).dtype).toBe("f32");
    expect(q.mul(score).dtype).toBe("f32");
    expect(score.sub(q).dtype).toBe("f32");
    expect(evalAt(q.add(0.5), { q: 3 })).toBe(3.5);
  });

  it("bool in arithmetic acts as i32", () => {
    const e = q.ge(kv).add(1);
    expect(e.dtype).toBe("i32");
    expect(evalAt(e, { q: 2, kv: 1 })).toBe(2);
    expect(evalAt(e, { q: 0, kv: 1 })).toBe(1);
    expect(q.lt(kv).mul(score).dtype).toBe("f32");
  });

  it("div is always true division (f32), even of two ints", () => {
    const e = q.div(kv);
    expect(e.dtype).toBe("f32");
    expect(evalAt(e, { q: 7, kv: 2 })).toBe(3.5);
    expect(Expr.const(7).div(2).value).toBe(3.5); // constant-folded too
  });

  it("floorDiv and mod follow Python on negatives (floor; sign of the divisor)", () => {
    const cases: [number, number, number, number][] = [
      [-7, 2, -4, 1], [7, -2, -4, -1], [-7, -2, 3, -1], [7, 2, 3, 1], [-6, 3, -2, 0], [-1, 5, -1, 4],
    ];
    for (const [a, b, fd, m] of cases) {
      expect(evalAt(q.floorDiv(kv), { q: a, kv: b })).toBe(fd);
      expect(evalAt(q.mod(kv), { q: a, kv: b })).toBe(m);
      expect(Expr.const(a).floorDiv(b).value).toBe(fd); // folding agrees with the interpreter
      expect(Expr.const(a).mod(b).value).toBe(m);
    }
    expect(q.floorDiv(2).dtype).toBe("i32");
    expect(score.mod(2).dtype).toBe("f32");
    expect(evalAt(score.mod(2), { score: -0.5 })).toBe(1.5);
  });

  it("where promotes its branches to a common type", () => {
    const c = q.ge(kv);
    expect(where(c, 1, 0).dtype).toBe("i32");
    expect(where(c, 1, 0.5).dtype).toBe("f32");
    expect(where(c, score, q).dtype).toBe("f32");
    expect(evalAt(where(c, 1, 0.5), { q: 0, kv: 1 })).toBe(0.5);
    expect(where(true, q, kv)).toBe(q); // constant condition folds
  });

  it("comparisons give bool; and/or/not need bools", () => {
    expect(q.lt(kv).dtype).toBe("bool");
    expect(score.ge(q).dtype).toBe("bool");
    expect(q.lt(kv).and(q.ge(0)).dtype).toBe("bool");
  });
});

describe("IR errors", () => {
  it("`and` on ints is a ModTypeError", () => {
    expect(() => q.and(kv)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
    expect(() => q.lt(kv).or(1)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
    expect(() => q.not()).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
  });

  it("where with a non-bool condition is a ModTypeError", () => {
    expect(() => where(q, 1, 2)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
  });

  it("a mask mod returning an int is a ModReturnTypeError", () => {
    expect(() => traceMaskMod((_b, _h, q, kv) => q.sub(kv))).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
    expect(() => traceMaskMod(() => 1)).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
  });

  it("a score mod returning a bool is a ModReturnTypeError", () => {
    expect(() => traceScoreMod((_s, _b, _h, q, kv) => q.ge(kv))).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
    expect(() => traceScoreMod(() => undefined as unknown as number)).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
  });

  it("a score mod returning an int is promoted to f32; a mask mod may return a JS boolean", () => {
    expect(traceScoreMod((_s, _b, _h, q, _kv) => q).expr.dtype).toBe("f32");
    expect(traceMaskMod(() => true).expr.value).toBe(true);
  });

  const t = tensor([1, 2, 3, 4, 5, 6], [2, 3], { dtype: "i32" });

  it("t.at with the wrong number of indices is a ShapeError", () => {
    expect(() => t.at(q)).toThrow(expect.objectContaining({ _tag: "ShapeError" }));
    expect(() => t.at(q, kv, 0)).toThrow(expect.objectContaining({ _tag: "ShapeError" }));
    expect(t.at(q, kv).dtype).toBe("i32");
  });

  it("a constant index out of range is CaptureOutOfRange", () => {
    expect(() => t.at(2, kv)).toThrow(expect.objectContaining({ _tag: "CaptureOutOfRange" }));
    expect(() => t.at(q, -1)).toThrow(expect.objectContaining({ _tag: "CaptureOutOfRange" }));
    expect(() => t.at(q, 3)).toThrow(expect.objectContaining({ _tag: "CaptureOutOfRange" }));
    expect(t.at(1, 2).dtype).toBe("i32");
  });

  it("a float index is a ModTypeError", () => {
    expect(() => t.at(q, 0.5)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
    expect(() => t.at(score, 0)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
    expect(() => t.at(q.div(2), 0)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
  });

  it("lifting something that is not a number, bool or Expr is a ModTypeError", () => {
    expect(() => q.add("1" as unknown as number)).toThrow(expect.objectContaining({ _tag: "ModTypeError" }));
  });
});
