/**
 * JS operators on symbolic mod values: `q >= kv`, `s * 2`, template strings throw ModOperatorError at trace
 * time (Symbol.toPrimitive); `&&`, `!` and `?:`, which never convert their operand, are caught by the tracer as
 * a dropped condition. The method forms keep working, and so does the explicit `e.toString()`.
 */
import { describe, expect, it } from "../harness.ts";
import {
  andMasks, causalMask, createBlockMask, createMask, type Expr, flexAttention, ModOperatorError, noopMask, randn,
  type Tensor, traceMaskMod, traceScoreMod, where,
} from "../../mod.ts";

// deno-lint-ignore no-explicit-any
const loose = (f: (...a: any[]) => unknown) => f as never; // lets a test pass the mistakes TypeScript would flag

describe("hardening: JS operators on mod expressions", () => {
  it("q >= kv (a string comparison today) throws ModOperatorError naming the methods", () => {
    let err: unknown;
    try { traceMaskMod(loose((_b, _h, q, kv) => q >= kv)); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModOperatorError);
    expect((err as ModOperatorError)._tag).toBe("ModOperatorError");
    expect((err as Error).message).toContain("q.ge(kv)");
    expect((err as Error).message).toContain("s.mul(2)");
  });

  it("s * 2 (NaN today) throws, through flexAttention too", () => {
    expect(() => traceScoreMod(loose((s) => s * 2))).toThrow(ModOperatorError);
    const q = randn([1, 1, 8, 16]);
    expect(() => flexAttention(q, q, q, { scoreMod: loose((s) => s * 2) })).toThrow(ModOperatorError);
  });

  it("a template string or q + 1 throws; the explicit toString() still renders", () => {
    expect(() => traceMaskMod(loose((_b, _h, q, kv) => `${q}` === `${kv}`))).toThrow(ModOperatorError);
    expect(() => traceScoreMod(loose((s, _b, _h, q) => s.add(q + 1)))).toThrow(ModOperatorError);
    expect(traceMaskMod(causalMask).expr.toString()).toBe("(q >= kv)");
  });

  it("`a && b` (drops a) is a ModOperatorError naming .and()", () => {
    let err: unknown;
    try { traceMaskMod((_b, _h, q, kv) => q.ge(kv) && q.sub(kv).le(4)); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModOperatorError);
    expect((err as Error).message).toContain("a.and(b)");
    expect((err as Error).message).toContain("(q >= kv)"); // names what was dropped
  });

  it("`!a` and `a ? x : y` are ModOperatorErrors, in mask and score mods", () => {
    expect(() => traceMaskMod(loose((_b, _h, q, kv) => !q.ge(kv)))).toThrow(ModOperatorError);
    expect(() => traceScoreMod((s, _b, _h, q, kv) => (q.ge(kv) ? s : s.mul(2)))).toThrow(ModOperatorError);
  });

  it("the error reaches createBlockMask / createMask users", async () => {
    expect(() => createMask((_b, _h, q, kv) => q.ge(kv) && q.sub(kv).le(4), 1, 1, 8, 8)).toThrow(ModOperatorError);
    let err: unknown;
    try { await createBlockMask((_b, _h, q, kv) => q.ge(kv) && q.sub(kv).le(4), 1, 1, 8, 8); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ModOperatorError);
  });

  it("method forms, constants and folded-away operands still trace", () => {
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv).and(q.sub(kv).le(4))).expr.op).toBe("and");
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv).not().not()).expr.toString()).toBe("(q >= kv)");
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv).and(false)).expr.value).toBe(false);
    expect(traceMaskMod((_b, _h, q, kv) => q.ge(kv).or(q.ge(kv))).expr.op).toBe("ge");
    expect(traceScoreMod((s) => where(true, s, s.gt(0).toFloat())).expr.toString()).toBe("score");
    expect(traceMaskMod(() => true).expr.value).toBe(true);
    expect(traceMaskMod(noopMask).expr.value).toBe(true);
    expect(traceMaskMod(andMasks(causalMask, (_b: Expr, _h: Expr, _q: Expr, kv: Expr) => kv.lt(3))).expr.op).toBe("and");
  });

  it("an unused numeric intermediate is not an error (combinators pass positions an inner mask may ignore)", () => {
    const t = traceMaskMod((_b, _h, q, kv) => { q.sub(kv); return q.ge(kv); });
    expect(t.expr.toString()).toBe("(q >= kv)");
  });

  it("tracing outside a mod is unaffected (a nested trace records only its own nodes)", () => {
    const outer = traceMaskMod((_b, _h, q, kv) => {
      traceMaskMod(causalMask); // its nodes are not the outer mod's
      return q.lt(kv);
    });
    expect(outer.expr.op).toBe("lt");
  });

  it("a captured tensor read used with an operator throws", () => {
    const bias: Tensor = randn([8]);
    expect(() => traceScoreMod(loose((s, _b, _h, q) => s.add((bias.at(q) as unknown as number) * 2)))).toThrow(ModOperatorError);
  });
});
