/**
 * `tanhApprox(x)`: a cheap tanh as a custom op (the seed's `tanh_approx`; attention-gym uses PTX
 * `tanh.approx.f32` for the same purpose). It is the [3/2] Padé approximant of tanh clamped where it reaches
 * ±1 exactly:
 *
 *   tanhApprox(x) = x (27 + x²) / (27 + 9x²)   for |x| < 3,   sign(x) for |x| ≥ 3
 *
 * (error < 0.024 absolute; continuous, and so is its derivative). Derivative, exact for this definition:
 *   d/dx = ((9 − x²) / (3 (3 + x²)))²  for |x| < 3, 0 beyond.
 */
import { type Expr, where } from "../../ir/expr.ts";
import { type CustomOpFn, customOp } from "../custom_op.ts";

/**
 * The definition in float64, shared by `cpu` and the tests.
 *
 * @example
 * ```ts
 * import { tanhApproxValue } from "@flex/attention";
 * tanhApproxValue(0.5); // 0.4658 (tanh(0.5) = 0.4621)
 * ```
 */
export function tanhApproxValue(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (Math.abs(x) >= 3) return Math.sign(x);
  const x2 = x * x;
  return (x * (27 + x2)) / (27 + 9 * x2);
}

/**
 * `tanhApprox(x)` in a mod: the custom op above (WGSL body, float64 twin, exact derivative).
 *
 * @example
 * ```ts
 * import { flexAttention, randn, tanhApprox } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { scoreMod: (s) => tanhApprox(s.div(20)).mul(20) });
 * ```
 */
export const tanhApprox: CustomOpFn = customOp({
  name: "tanh_approx",
  wgsl: "let x = clamp(x0, -3.0, 3.0);\nlet x2 = x * x;\nreturn x * (27.0 + x2) / (27.0 + 9.0 * x2);",
  cpu: (x: number) => tanhApproxValue(x),
  grad: ([x]: readonly Expr[], g: Expr) => {
    const x2 = x.mul(x);
    const slope = x2.neg().add(9).div(x2.add(3).mul(3));
    return [where(x.abs().lt(3), slope.mul(slope), 0).mul(g)];
  },
});
