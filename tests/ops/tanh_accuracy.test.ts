/**
 * The tensor op tanh (lib/lower/plan_tensor_ops.ts, the strided kernel) is relatively accurate near 0, as the
 * score mods' flex_tanh is (lib/lower/wgsl_expr.ts: an odd polynomial below |x| = 1/4, one exp2 above): WGSL's
 * builtin tanh was 4.7 % off at 1e-7 on llvmpipe. Checked on whatever provider runs (dawn, native, or the CPU
 * executor), outputs poisoned, against Math.tanh in float64:
 *   - f32: within 1e-6 relative, from 1e-7 to 40 (and ±∞, 0, both sides of 1/4), alone and inside a fused chain;
 *   - f16 storage (math in f32): within one f16 ulp of the correctly rounded value;
 *   - the vjp g·(1 − tanh²): 1e-6 relative where |x| < 1; elsewhere the 1 − out² form cancels (out is within
 *     half an f32 ulp of ±1), so there it is held to 3e-7·|g| absolute.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { cast, mulScalar } from "../../lib/tensor/ops.ts";
import { tanh, tensor, type Tensor } from "../../mod.ts";
import { vjp } from "../../lib/passes/mod.ts";
import { f16Bits, f16ToNumber } from "../../lib/tensor/dtype.ts";
import { gpu, randF32 } from "./fixtures.ts";

const VALUES = [1e-7, -1e-7, 1e-3, 0.2, 0.2499, 0.2501, 3, -5, 40, 0, 1e-30, Infinity, -Infinity];

const f32 = (xs: readonly number[]) => xs.map(Math.fround);

/** |got − want| ≤ tol·|want| per element (tol 0: exact), with the element named on failure. */
function expectRelative(got: ArrayLike<number>, want: readonly number[], tol: number, label: string) {
  want.forEach((w, i) => {
    const rel = w === got[i] ? 0 : Math.abs(got[i] - w) / Math.abs(w);
    expect({ label, x: VALUES[i % VALUES.length], ok: rel <= tol, rel }).toEqual({ label, x: VALUES[i % VALUES.length], ok: true, rel });
  });
}

describe("tensor tanh: relative accuracy near 0", () => {
  it("f32, alone and fused (3·tanh(x)), within 1e-6 relative of float64", async () => {
    const x = tensor(VALUES);
    const want = f32(VALUES).map(Math.tanh);
    const [alone, fused] = await gpu(tanh(x), mulScalar(tanh(x), 3));
    expectRelative(alone, want, 1e-6, "tanh");
    expectRelative(fused, want.map((w) => 3 * w), 1.2e-6, "3·tanh");
  });

  it("f16 storage: within one f16 ulp of the correctly rounded tanh", async () => {
    const x = cast(tensor(VALUES), "f16");
    const [got] = await gpu(tanh(x));
    const xs = VALUES.map((v) => f16ToNumber(f16Bits(v)));
    xs.forEach((xh, i) => {
      const want = f16Bits(Math.tanh(xh)), have = f16Bits(got[i]);
      // same sign: the bit patterns count ulps
      const ulps = (want & 0x8000) === (have & 0x8000) ? Math.abs(want - have) : Infinity;
      expect({ x: xh, got: got[i], ok: ulps <= 1 }).toEqual({ x: xh, got: got[i], ok: true });
    });
  });

  it("the gradient g·(1 − tanh²): relative 1e-6 where |x| < 1, absolute 3e-7·|g| elsewhere", async () => {
    const finite = VALUES.filter(Number.isFinite);
    const n = finite.length;
    const g = randF32([n], 0.5, 2);
    const [, back] = vjp((a: Tensor) => tanh(a), tensor(finite));
    const [got] = await gpu(back(g)[0]);
    const gs = Array.from(g.data!);
    f32(finite).forEach((x, i) => {
      const want = gs[i] / Math.cosh(x) ** 2;
      const err = Math.abs(got[i] - want);
      const ok = Math.abs(x) < 1 ? err <= 1e-6 * Math.abs(want) : err <= 3e-7 * gs[i];
      expect({ x, got: got[i], want, ok }).toEqual({ x, got: got[i], want, ok: true });
    });
  });
});

releaseGpuAfterAll();
