/**
 * The symbolic derivative of the mod IR: every rule against float64 central differences at random points
 * away from kinks, PyTorch's choices at the kinks, captured-tensor reads, custom ops, typed errors.
 */
import { describe, expect, it } from "../harness.ts";
import { type CustomOpDef, Expr, type Op, where } from "../../lib/ir/expr.ts";
import { compileExpr, type ModEnv } from "../../lib/mods/evaluate.ts";
import { DERIVATIVE_RULES, derivative, scoreModGradients } from "../../lib/mods/derivative.ts";
import { type ScoreMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { rng, tensor } from "../../lib/tensor/tensor.ts";
import { UndefinedDerivative } from "../../lib/errors.ts";
import { freshSeed } from "./fixtures.ts";

const cube: CustomOpDef = {
  name: "cube", arity: 1, wgsl: "return x0 * x0 * x0;", cpu: (x) => x * x * x,
  grad: ([x], g) => [g.mul(x).mul(x).mul(3)],
};
const noGrad: CustomOpDef = { name: "opaque", arity: 1, wgsl: "return x0;", cpu: (x) => x };

interface Case {
  readonly mod: ScoreMod;
  /** Points to skip (near a kink or outside the domain). */
  readonly avoid?: (s: number) => boolean;
}

const nearInt = (x: number) => Math.abs(x - Math.round(x)) < 1e-3;

/** One case per op that can carry a gradient (the others are covered by `zero-derivative ops`). */
const CASES: Partial<Record<Op, Case>> = {
  neg: { mod: (s) => s.neg().mul(s) },
  abs: { mod: (s) => s.abs().mul(s.exp()), avoid: (s) => Math.abs(s) < 1e-3 },
  exp: { mod: (s) => s.mul(0.7).exp() },
  exp2: { mod: (s) => s.mul(s).exp2() },
  log: { mod: (s) => s.mul(s).add(0.5).log() },
  sqrt: { mod: (s) => s.mul(s).add(0.25).sqrt() },
  tanh: { mod: (s) => s.mul(1.3).tanh().mul(2) },
  sigmoid: { mod: (s) => s.mul(s).sigmoid() },
  floor: { mod: (s) => s.mul(2).floor().mul(s), avoid: (s) => nearInt(2 * s) },
  cast: { mod: (s, _b, h, q, kv) => s.mul(q.sub(kv)).add(h).add(s.mul(3).toInt().toFloat().mul(s)), avoid: (s) => nearInt(3 * s) },
  add: { mod: (s) => s.add(s.mul(s)) },
  sub: { mod: (s) => s.sub(s.mul(s).mul(2)) },
  mul: { mod: (s, _b, _h, q) => s.mul(s).mul(q) },
  div: { mod: (s) => s.div(s.mul(s).add(2)).add(Expr.const(3, "f32").div(s.add(4))) },
  pow: { mod: (s) => s.mul(s).add(0.5).pow(s) },
  min: { mod: (s) => s.min(s.mul(s).sub(0.5)), avoid: (s) => Math.abs(s - (s * s - 0.5)) < 1e-3 },
  max: { mod: (s) => s.max(s.mul(0.5).add(0.2)).mul(s), avoid: (s) => Math.abs(s - (0.5 * s + 0.2)) < 1e-3 },
  floorDiv: { mod: (s) => s.floorDiv(0.7).mul(s), avoid: (s) => nearInt(s / 0.7) },
  mod: {
    mod: (s) => s.mod(s.mul(0.3).add(1.7)),
    avoid: (s) => nearInt(s / (0.3 * s + 1.7)),
  },
  clamp: {
    mod: (s) => s.clamp(-0.8, 0.9).mul(s).add(s.mul(2).clamp(s.sub(0.3), s.mul(s))),
    avoid: (s) => [s + 0.8, s - 0.9, 2 * s - (s - 0.3), 2 * s - s * s, s * s - (s - 0.3)].some((d) => Math.abs(d) < 1e-3),
  },
  where: {
    mod: (s, _b, _h, q, kv) => where(s.gt(0).and(q.ge(kv)), s.exp(), where(s.lt(-1).or(q.lt(kv)).not(), s.mul(s), s)),
    avoid: (s) => Math.abs(s) < 1e-3 || Math.abs(s + 1) < 1e-3,
  },
  custom: { mod: (s) => Expr.custom(cube, [s.mul(0.5)]).add(s) },
};

/** Ops whose derivative is zero or which carry no float gradient (bool / int / leaves). */
const ZERO_OR_LEAF: Op[] = ["const", "arg", "load", "not", "eq", "ne", "lt", "le", "gt", "ge", "and", "or"];

const H = 1e-6;

function checkAgainstFd(name: string, c: Case, seed: number) {
  const traced = traceScoreMod(c.mod);
  const f = compileExpr(traced.expr);
  const df = compileExpr(derivative(traced.expr, "score"));
  const r = rng(seed);
  let checked = 0;
  for (let t = 0; t < 40 && checked < 20; t++) {
    const s = -2 + 4 * r();
    if (c.avoid?.(s)) continue;
    const env: ModEnv = { score: s, b: 1, h: 2, q: 1 + Math.floor(r() * 5), kv: Math.floor(r() * 5) };
    const at = (x: number) => Number(f({ ...env, score: x }, []));
    const fd = (at(s + H) - at(s - H)) / (2 * H);
    const d = Number(df(env, []));
    if (Math.abs(d - fd) > 1e-6 * Math.max(1, Math.abs(fd))) {
      throw new Error(`${name}: d/dscore at ${JSON.stringify(env)}: symbolic ${d}, finite differences ${fd}`);
    }
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(10);
}

describe("derivative", () => {
  it("the rule table is total and every float rule has a finite-difference case", () => {
    const ops = Object.keys(DERIVATIVE_RULES) as Op[];
    for (const op of ops) expect(CASES[op] !== undefined || ZERO_OR_LEAF.includes(op)).toBe(true);
    expect(ops.length).toBe(Object.keys(CASES).length + ZERO_OR_LEAF.length);
  });

  for (const [op, c] of Object.entries(CASES)) {
    it(`d/dscore through ${op} matches central differences`, () => checkAgainstFd(op, c!, freshSeed()));
  }

  it("abs'(0) = 0 (grad · sgn)", () => {
    const df = compileExpr(derivative(traceScoreMod((s) => s.abs()).expr, "score"));
    expect(df({ score: 0, b: 0, h: 0, q: 0, kv: 0 }, [])).toBe(0);
    expect(df({ score: -2, b: 0, h: 0, q: 0, kv: 0 }, [])).toBe(-1);
  });

  it("clamp passes the gradient on its bounds (inclusive) and not outside", () => {
    const e = traceScoreMod((s) => s.clamp(-1, 1)).expr;
    const df = compileExpr(derivative(e, "score"));
    const at = (score: number) => df({ score, b: 0, h: 0, q: 0, kv: 0 }, []);
    expect([at(-1), at(1), at(0.3), at(1.01), at(-1.01)]).toEqual([1, 1, 1, 0, 0]);
  });

  it("min / max split the gradient in halves at a tie (torch.minimum / torch.maximum)", () => {
    for (const mk of [(s: Expr) => s.max(s.mul(2)), (s: Expr) => s.min(s.mul(2))]) {
      const df = compileExpr(derivative(traceScoreMod(mk).expr, "score"));
      // at s = 0 both operands tie: 0.5·1 + 0.5·2
      expect(df({ score: 0, b: 0, h: 0, q: 0, kv: 0 }, [])).toBe(1.5);
    }
  });

  it("floor, floorDiv and integer paths have zero derivative", () => {
    const e = traceScoreMod((s, _b, h, q, kv) => s.floor().add(s.floorDiv(0.5)).add(q.sub(kv).mul(h))).expr;
    const d = derivative(e, "score");
    expect(d.isConst && d.value === 0).toBe(true);
  });

  it("mod (Python %) gives g to x and −g·⌊x/y⌋ to y", () => {
    const bias = tensor([2.5]);
    const e = traceScoreMod((s) => s.mod(bias.at(0))).expr;
    const g = scoreModGradients(e);
    const env = { score: 6, b: 0, h: 0, q: 0, kv: 0 };
    expect(compileExpr(g.dScore)(env, [[2.5]])).toBe(1);
    expect(compileExpr(g.captures.get(0)![0].d)(env, [[2.5]])).toBe(-2);
  });

  it("a captured tensor read twice gives one entry per read, with its indices", () => {
    const table = tensor(Float32Array.from({ length: 9 }, (_, i) => 0.1 * i - 0.4));
    const mod: ScoreMod = (s, _b, _h, q, kv) =>
      s.add(table.at(q.sub(kv).add(4))).add(table.at(kv.sub(q).add(4)).mul(s));
    const traced = traceScoreMod(mod);
    const reads = derivative(traced.expr, { slot: 0 });
    expect(reads.length).toBe(2);
    const env: ModEnv = { score: 0.7, b: 0, h: 0, q: 3, kv: 1 };
    const data = Float64Array.from(table.data!);
    const f = compileExpr(traced.expr);
    // finite differences per table entry vs the sum of the reads that hit it
    const expected = new Float64Array(9);
    for (const r of reads) {
      const idx = Number(compileExpr(r.indices[0])(env, [data]));
      expected[idx] += Number(compileExpr(r.d)(env, [data]));
    }
    for (let i = 0; i < 9; i++) {
      const x0 = data[i];
      data[i] = x0 + H; const up = Number(f(env, [data]));
      data[i] = x0 - H; const down = Number(f(env, [data]));
      data[i] = x0;
      expect(Math.abs((up - down) / (2 * H) - expected[i])).toBeLessThan(1e-7);
    }
    expect(expected[6]).toBe(1); // q − kv + 4
    expect(expected[2]).toBeCloseTo(0.7, 6); // kv − q + 4, times the score
  });

  it("the same read used twice is one entry whose derivative sums both uses", () => {
    const slopes = tensor([0.5, -0.25]);
    const mod: ScoreMod = (s, _b, h, q, kv) => s.add(slopes.at(h).mul(q.sub(kv))).add(slopes.at(h).mul(slopes.at(h)));
    const reads = derivative(traceScoreMod(mod).expr, { slot: 0 });
    expect(reads.length).toBe(1);
    const d = compileExpr(reads[0].d)({ score: 0, b: 0, h: 1, q: 5, kv: 2 }, [[0.5, -0.25]]);
    expect(d).toBeCloseTo(3 + 2 * -0.25, 12);
  });

  it("derivative(expr, node) differentiates with respect to one node of the DAG", () => {
    const slopes = tensor([0.5, -0.25]);
    const traced = traceScoreMod((s, _b, h, q, kv) => s.mul(s).add(slopes.at(h).mul(q.sub(kv))));
    const load = derivative(traced.expr, { slot: 0 })[0].load;
    const env = { score: 1.5, b: 0, h: 1, q: 4, kv: 1 };
    expect(compileExpr(derivative(traced.expr, load))(env, [[0.5, -0.25]])).toBe(3);
    expect(compileExpr(derivative(traced.expr, Expr.arg("score")))(env, [[0.5, -0.25]])).toBe(3);
    expect(derivative(traced.expr, Expr.arg("q")).value).toBe(0); // an int node carries no gradient
  });

  it("i32 captures get no derivative entries", () => {
    const docs = tensor(new Int32Array([0, 0, 1, 1]));
    const e = traceScoreMod((s, _b, _h, q, kv) => where(docs.at(q).eq(docs.at(kv)), s, s.mul(0.5))).expr;
    expect(derivative(e, { slot: 0 }).length).toBe(0);
  });

  it("a custom op without grad fails with UndefinedDerivative; with grad it is used", () => {
    const e = traceScoreMod((s) => Expr.custom(noGrad, [s])).expr;
    expect(() => derivative(e, "score")).toThrow(UndefinedDerivative);
    const d = derivative(traceScoreMod((s) => Expr.custom(cube, [s])).expr, "score");
    expect(compileExpr(d)({ score: 2, b: 0, h: 0, q: 0, kv: 0 }, [])).toBe(12);
  });

  it("results are simplified: d(score + bias)/dscore is the constant 1", () => {
    const bias = tensor([1, 2]);
    const d = derivative(traceScoreMod((s, _b, h) => s.add(bias.at(h))).expr, "score");
    expect(d.isConst && d.value === 1).toBe(true);
  });

  it("the branch a where did not take contributes 0, not NaN (lifted routing)", () => {
    const d = derivative(traceScoreMod((s) => where(s.gt(0), s.sqrt(), s.mul(0.5))).expr, "score");
    const at = (score: number) => compileExpr(d)({ score, b: 0, h: 0, q: 0, kv: 0 }, []);
    expect(at(-2)).toBe(0.5);
    expect(at(4)).toBe(0.25);
    const d2 = derivative(traceScoreMod((s) => where(s.le(0), s.mul(2), s.log().mul(s))).expr, "score");
    expect(compileExpr(d2)({ score: -1, b: 0, h: 0, q: 0, kv: 0 }, [])).toBe(2);
  });

  it("an infinite factor times a zero stays NaN (not simplified away)", () => {
    const d = derivative(traceScoreMod((s) => s.mul(0).sqrt().add(s)).expr, "score");
    expect(Number.isNaN(compileExpr(d)({ score: 1, b: 0, h: 0, q: 0, kv: 0 }, []))).toBe(true);
  });
});
