import fc from "fast-check";
import { describe, expect, it } from "../harness.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import { andMasks, noopMask, notMask, orMasks } from "../../lib/mods/algebra.ts";
import { causalMask, slidingWindow } from "../../lib/mods/gallery/mod.ts";
import { maskFn } from "./dense.ts";

type Pred = (b: number, h: number, q: number, kv: number) => boolean;
/** A random atomic mask with its plain-JS meaning. */
interface Atom { readonly mod: MaskMod; readonly ref: Pred; readonly label: string }

const atom: fc.Arbitrary<Atom> = fc.oneof(
  fc.constant<Atom>({ mod: causalMask, ref: (_b, _h, q, kv) => q >= kv, label: "causal" }),
  fc.integer({ min: 0, max: 40 }).map((w): Atom => ({
    mod: (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.sub(kv).le(w), ref: (_b, _h, q, kv) => q - kv <= w, label: `win${w}`,
  })),
  fc.integer({ min: 0, max: 60 }).map((n): Atom => ({
    mod: (_b: Expr, _h: Expr, _q: Expr, kv: Expr) => kv.lt(n), ref: (_b, _h, _q, kv) => kv < n, label: `prefix${n}`,
  })),
  fc.tuple(fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 4 })).map(([m, r]): Atom => ({
    mod: (_b: Expr, _h: Expr, q: Expr, kv: Expr) => q.add(kv).mod(m).eq(r % m),
    ref: (_b, _h, q, kv) => (q + kv) % m === r % m, label: `sum%${m}==${r % m}`,
  })),
  fc.integer({ min: 0, max: 3 }).map((c): Atom => ({
    mod: (_b: Expr, h: Expr) => h.ne(c), ref: (_b, h) => h !== c, label: `h!=${c}`,
  })),
  fc.integer({ min: 0, max: 1 }).map((c): Atom => ({
    mod: (b: Expr) => b.eq(c), ref: (b) => b === c, label: `b==${c}`,
  })),
  fc.boolean().map((v): Atom => ({ mod: () => v, ref: () => v, label: `const ${v}` })),
);

const point = fc.record({
  b: fc.integer({ min: 0, max: 1 }), h: fc.integer({ min: 0, max: 3 }),
  q: fc.integer({ min: 0, max: 100 }), kv: fc.integer({ min: 0, max: 100 }),
});
const points = fc.array(point, { minLength: 8, maxLength: 24 });

/** The two masks agree on every point (evaluated through the traced IR). */
function agree(a: MaskMod, b: MaskMod, pts: { b: number; h: number; q: number; kv: number }[]): boolean {
  const fa = maskFn(a), fb = maskFn(b);
  return pts.every((p) => fa(p.b, p.h, p.q, p.kv) === fb(p.b, p.h, p.q, p.kv));
}

function matches(m: MaskMod, ref: Pred, pts: { b: number; h: number; q: number; kv: number }[]): boolean {
  const f = maskFn(m);
  return pts.every((p) => f(p.b, p.h, p.q, p.kv) === ref(p.b, p.h, p.q, p.kv));
}

const RUNS = { numRuns: 150 };

describe("mask algebra", () => {
  it("andMasks / orMasks / notMask mean ∧ / ∨ / ¬ pointwise", () => {
    fc.assert(fc.property(atom, atom, atom, points, (x, y, z, pts) =>
      matches(andMasks(x.mod, y.mod, z.mod), (...p) => x.ref(...p) && y.ref(...p) && z.ref(...p), pts) &&
      matches(orMasks(x.mod, y.mod, z.mod), (...p) => x.ref(...p) || y.ref(...p) || z.ref(...p), pts) &&
      matches(notMask(x.mod), (...p) => !x.ref(...p), pts)), RUNS);
  });

  it("associativity", () => {
    fc.assert(fc.property(atom, atom, atom, points, (x, y, z, pts) =>
      agree(andMasks(x.mod, andMasks(y.mod, z.mod)), andMasks(andMasks(x.mod, y.mod), z.mod), pts) &&
      agree(orMasks(x.mod, orMasks(y.mod, z.mod)), orMasks(orMasks(x.mod, y.mod), z.mod), pts) &&
      agree(andMasks(x.mod, y.mod, z.mod), andMasks(andMasks(x.mod, y.mod), z.mod), pts)), RUNS);
  });

  it("commutativity", () => {
    fc.assert(fc.property(atom, atom, points, (x, y, pts) =>
      agree(andMasks(x.mod, y.mod), andMasks(y.mod, x.mod), pts) &&
      agree(orMasks(x.mod, y.mod), orMasks(y.mod, x.mod), pts)), RUNS);
  });

  it("De Morgan with notMask", () => {
    fc.assert(fc.property(atom, atom, points, (x, y, pts) =>
      agree(notMask(andMasks(x.mod, y.mod)), orMasks(notMask(x.mod), notMask(y.mod)), pts) &&
      agree(notMask(orMasks(x.mod, y.mod)), andMasks(notMask(x.mod), notMask(y.mod)), pts)), RUNS);
  });

  it("noopMask is the identity of andMasks and absorbing for orMasks", () => {
    fc.assert(fc.property(atom, points, (x, pts) =>
      agree(andMasks(x.mod, noopMask), x.mod, pts) && agree(andMasks(noopMask, x.mod), x.mod, pts) &&
      agree(orMasks(x.mod, noopMask), noopMask, pts) && matches(noopMask, () => true, pts)), RUNS);
  });

  it("double negation", () => {
    fc.assert(fc.property(atom, points, (x, pts) => agree(notMask(notMask(x.mod)), x.mod, pts)), RUNS);
  });

  it("empty combinations: andMasks() keeps everything, orMasks() nothing (as PyTorch)", () => {
    expect(traceMaskMod(andMasks()).expr.value).toBe(true);
    expect(traceMaskMod(orMasks()).expr.value).toBe(false);
    expect(traceMaskMod(noopMask).expr.value).toBe(true);
    expect(andMasks(causalMask)).toBe(causalMask);
  });

  it("results are named after their parts", () => {
    expect(andMasks(causalMask, slidingWindow(3)).name).toBe("and(causal, slidingWindow(3))");
    expect(orMasks(causalMask, notMask(causalMask)).name).toBe("or(causal, not(causal))");
    expect(traceMaskMod(andMasks(causalMask, slidingWindow(3))).name).toBe("and(causal, slidingWindow(3))");
  });

  it("a part returning a non-bool is a ModReturnTypeError naming it", () => {
    const bad = function distance(_b: Expr, _h: Expr, q: Expr, kv: Expr) { return q.sub(kv); };
    expect(() => traceMaskMod(andMasks(causalMask, bad))).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
    expect(() => traceMaskMod(orMasks(bad, causalMask))).toThrow(/distance/);
    expect(() => traceMaskMod(notMask(bad))).toThrow(expect.objectContaining({ _tag: "ModReturnTypeError" }));
  });

  it("JS-boolean parts are lifted", () => {
    const f = maskFn(andMasks(() => true, causalMask));
    expect(f(0, 0, 3, 2)).toBe(true);
    expect(f(0, 0, 2, 3)).toBe(false);
    expect(maskFn(orMasks(() => false, () => false))(0, 0, 0, 0)).toBe(false);
  });
});
