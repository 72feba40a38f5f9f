/**
 * Random differentiable score mods for property tests (fast-check): a small recipe tree over the score,
 * the positions, and an optional learnable f32 bias table, built into a ScoreMod with the public Expr API.
 *
 * Every operator whose derivative the backward generates appears (tanh, sigmoid, exp, exp2, log, sqrt, abs,
 * min/max, clamp, where, div, a captured read), arranged so that values stay moderate in f32 (exp and exp2
 * only of bounded arguments, log and sqrt only of arguments ≥ 1) and so that no branch or kink depends on
 * the score itself being on one side of a constant: f32 and float64 could then take different sides and the
 * comparison would test rounding, not the kernels. Conditions of `where` use positions only.
 */
import fc from "fast-check";
import { type Expr, type ScoreMod, type Tensor, where } from "../../mod.ts";

export type Recipe =
  | { readonly t: "score" }
  | { readonly t: "pos"; readonly scale: number }
  | { readonly t: "bias" }
  | { readonly t: "const"; readonly value: number }
  | { readonly t: "unary"; readonly op: Unary; readonly x: Recipe }
  | { readonly t: "binary"; readonly op: Binary; readonly x: Recipe; readonly y: Recipe }
  | { readonly t: "where"; readonly cond: Cond; readonly x: Recipe; readonly y: Recipe };

const UNARY = ["tanh", "sigmoid", "expTanh", "exp2Tanh", "logSq", "sqrtSq", "abs", "neg", "clamp"] as const;
const BINARY = ["add", "sub", "mul", "min", "max", "divSq"] as const;
const CONDS = ["causal", "parity", "head0"] as const;
type Unary = (typeof UNARY)[number];
type Binary = (typeof BINARY)[number];
type Cond = (typeof CONDS)[number];

const leaf: fc.Arbitrary<Recipe> = fc.oneof(
  { weight: 4, arbitrary: fc.constant<Recipe>({ t: "score" }) },
  { weight: 1, arbitrary: fc.double({ min: -0.05, max: 0.05, noNaN: true }).map((scale): Recipe => ({ t: "pos", scale })) },
  { weight: 1, arbitrary: fc.constant<Recipe>({ t: "bias" }) },
  { weight: 1, arbitrary: fc.double({ min: -2, max: 2, noNaN: true }).map((value): Recipe => ({ t: "const", value })) },
);

/** Recipes of depth ≤ `depth`, containing the score at least once. */
export function recipe(depth = 3): fc.Arbitrary<Recipe> {
  const tree = fc.letrec<{ node: Recipe }>((tie) => ({
    node: fc.oneof(
      { depthSize: "small", withCrossShrink: true, maxDepth: depth },
      leaf,
      fc.record({ t: fc.constant("unary" as const), op: fc.constantFrom(...UNARY), x: tie("node") }),
      fc.record({ t: fc.constant("binary" as const), op: fc.constantFrom(...BINARY), x: tie("node"), y: tie("node") }),
      fc.record({ t: fc.constant("where" as const), cond: fc.constantFrom(...CONDS), x: tie("node"), y: tie("node") }),
    ),
  })).node;
  return tree.filter(usesScore);
}

export function usesScore(r: Recipe): boolean {
  switch (r.t) {
    case "score": return true;
    case "unary": return usesScore(r.x);
    case "binary": case "where": return usesScore(r.x) || usesScore(r.y);
    default: return false;
  }
}

export function usesBias(r: Recipe): boolean {
  switch (r.t) {
    case "bias": return true;
    case "unary": return usesBias(r.x);
    case "binary": case "where": return usesBias(r.x) || usesBias(r.y);
    default: return false;
  }
}

/** A readable form for failure messages. */
export function show(r: Recipe): string {
  switch (r.t) {
    case "score": return "s";
    case "pos": return `${r.scale.toPrecision(3)}·(q−kv)`;
    case "bias": return "bias[h, q−kv]";
    case "const": return r.value.toPrecision(3);
    case "unary": return `${r.op}(${show(r.x)})`;
    case "binary": return `${r.op}(${show(r.x)}, ${show(r.y)})`;
    case "where": return `where(${r.cond}, ${show(r.x)}, ${show(r.y)})`;
  }
}

/** Bias table shape for `bias[h, q − kv + Skv − 1]`. */
export const biasShape = (H: number, Sq: number, Skv: number): number[] => [H, Sq + Skv - 1];

/** The score mod of a recipe; `bias` is the captured table (read only if the recipe uses it). */
export function build(r: Recipe, bias: Tensor | undefined, Skv: number): ScoreMod {
  const go = (n: Recipe, s: Expr, h: Expr, q: Expr, kv: Expr): Expr => {
    const rec = (m: Recipe) => go(m, s, h, q, kv);
    switch (n.t) {
      case "score": return s;
      case "pos": return q.sub(kv).toFloat().mul(n.scale);
      case "bias": return bias!.at(h, q.sub(kv).add(Skv - 1));
      case "const": return s.mul(0).add(n.value); // an f32 Expr, still a constant after simplification
      case "unary": {
        const x = rec(n.x);
        switch (n.op) {
          case "tanh": return x.tanh();
          case "sigmoid": return x.sigmoid();
          case "expTanh": return x.tanh().exp();
          case "exp2Tanh": return x.tanh().exp2();
          case "logSq": return x.mul(x).add(1).log();
          case "sqrtSq": return x.mul(x).add(1).sqrt();
          case "abs": return x.abs();
          case "neg": return x.neg();
          case "clamp": return x.clamp(-1.5, 1.5);
        }
        break;
      }
      case "binary": {
        const [x, y] = [rec(n.x), rec(n.y)];
        switch (n.op) {
          case "add": return x.add(y);
          case "sub": return x.sub(y);
          // products of unbounded subtrees could grow: bound one side
          case "mul": return x.mul(y.tanh());
          case "min": return x.min(y);
          case "max": return x.max(y);
          case "divSq": return x.div(y.mul(y).add(1));
        }
        break;
      }
      case "where": {
        const cond = n.cond === "causal" ? q.ge(kv) : n.cond === "parity" ? q.add(kv).mod(2).eq(0) : h.eq(0);
        return where(cond, rec(n.x), rec(n.y));
      }
    }
    throw new Error(`unknown recipe ${JSON.stringify(n)}`);
  };
  return (s, _b, h, q, kv) => go(r, s, h, q, kv);
}
