/**
 * f16 end to end: constructors, the host binary16 conversion (vs the runtime's Float16Array), cast on the
 * GPU, and flexAttention / its backward on f16 inputs on the selected provider against the float64 oracle
 * on the same f16 values (outputs poisoned first: an unwritten element is NaN and fails).
 */
import fc from "fast-check";
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import {
  cast, causalMask, createBlockMask, DTypeError, f16Bits, f16ToNumber, flexAttention, full, GradError, randn, softcap,
  type Tensor, tensor, vjp, zeros,
} from "../../mod.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";

const noGpu = await gpuSkipReason();
const cpu = createCpuExecutor();
const cpuValues = (...ts: Tensor[]) => runPromise(cpu.realize(ts));

/** f16 output rounding alone is ≈ 2.8e-4 rel. L2; DESIGN.md §4 allows 2× PyTorch's own f16 error (2.5e-4). */
const TOL_OUT = 5e-4;
const TOL_GRAD = 1e-3;

describe("f16 tensors", () => {
  it("constructors take { dtype: 'f16' } and round to binary16", async () => {
    const t = tensor([1 / 3, 65504, 1e-8], [3], { dtype: "f16" });
    expect(t.dtype).toBe("f16");
    const v = await t.toArray();
    expect(v).toBeInstanceOf(Float16Array);
    expect(Array.from(v)).toEqual([0.333251953125, 65504, 0]);
    expect(randn([4, 5], { dtype: "f16", seed: 3 }).dtype).toBe("f16");
    expect(Array.from(await zeros([3], { dtype: "f16" }).toArray())).toEqual([0, 0, 0]);
    expect(Array.from(await full([2], 1.5, { dtype: "f16" }).toArray())).toEqual([1.5, 1.5]);
    expect(tensor(new Float16Array([1, 2])).dtype).toBe("f16");
  });

  it("bad dtypes and out-of-range i32 values are typed errors", () => {
    expect(() => tensor([3e9], [1], { dtype: "i32" })).toThrow(DTypeError);
    expect(() => full([2], 1.5, { dtype: "i32" })).toThrow(DTypeError);
    expect(() => randn([2], { dtype: "i32" as "f32" })).toThrow(DTypeError);
    expect(() => tensor([1], [1], { dtype: "f64" as "f32" })).toThrow(DTypeError);
    expect(() => cast(tensor([1]), "i32")).toThrow(DTypeError);
  });

  it("f16Bits agrees with the runtime's Float16Array on every f32 (round to nearest even, subnormals, Inf, NaN)", () => {
    const u = new Uint32Array(1), f = new Float32Array(u.buffer);
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
      u[0] = bits;
      const x = f[0];
      const want = new Uint16Array(new Float16Array([x]).buffer)[0];
      const got = f16Bits(x);
      if (Number.isNaN(x)) return (got & 0x7c00) === 0x7c00 && (got & 0x3ff) !== 0;
      return got === want && (Object.is(f16ToNumber(got), new Float16Array([x])[0]));
    }), { numRuns: 20000 });
  });
});

describe("f16 on the GPU", () => {
  const run = it.skipIf(noGpu);

  run("cast f32 → f16 → f32 and f16 arithmetic match the CPU at odd sizes", async () => {
    setPoison(true);
    for (const n of [1, 255, 257]) {
      const x = randn([n], { seed: n });
      const h = cast(x, "f16");
      const back = cast(h, "f32");
      const y = cast(randn([n], { seed: n + 1 }), "f16");
      const s = await Promise.all([h.toArray(), back.toArray(), (await import("../../mod.ts")).add(h, y).toArray()]);
      const want = await cpuValues(h, back, (await import("../../mod.ts")).add(h, y));
      s.forEach((got, i) => expect({ n, i, same: Array.from(got).every((g, j) => Object.is(g, want[i][j])) }).toEqual({ n, i, same: true }));
    }
  });

  run("flexAttention f16 (noop, causal + softcap, GQA, ragged) vs the float64 oracle on the f16 values", async () => {
    setPoison(true);
    const cases = [
      { Hq: 2, Hkv: 2, Sq: 128, Skv: 128, D: 64, causal: false },
      { Hq: 4, Hkv: 2, Sq: 200, Skv: 173, D: 32, causal: true },
    ];
    for (const c of cases) {
      const q = randn([1, c.Hq, c.Sq, c.D], { dtype: "f16" }), k = randn([1, c.Hkv, c.Skv, c.D], { dtype: "f16" });
      const v = randn([1, c.Hkv, c.Skv, c.D], { dtype: "f16" });
      const blockMask = c.causal ? await createBlockMask(causalMask, null, null, c.Sq, c.Skv, { blockSize: 64 }) : undefined;
      const { out, lse } = flexAttention(q, k, v, { blockMask, scoreMod: c.causal ? softcap(5) : undefined, enableGqa: c.Hq !== c.Hkv, returnLse: true });
      expect(out.dtype).toBe("f16");
      expect(lse.dtype).toBe("f32");
      const [o, l] = [await out.toArray(), await lse.toArray()];
      expect(o).toBeInstanceOf(Float16Array);
      const call = out.arg as FlexCall;
      const ref = flexReference(call, { q: q.data!, k: k.data!, v: v.data!, scoreCaptures: [], maskCaptures: [] });
      expect({ c, err: relL2(o, ref.out) <= TOL_OUT }).toEqual({ c, err: true });
      expect({ c, err: relL2(l, ref.lse) <= 1e-4 }).toEqual({ c, err: true });
    }
  });

  run("the backward of an f16 call gives f16 gradients within 1e-3 of the f32-math oracle", async () => {
    setPoison(true);
    const [B, H, S, D] = [1, 2, 96, 32];
    const q = randn([B, H, S, D], { dtype: "f16" }), k = randn([B, H, S, D], { dtype: "f16" }), v = randn([B, H, S, D], { dtype: "f16" });
    const dOut = randn([B, H, S, D], { dtype: "f16" });
    const blockMask = await createBlockMask(causalMask, null, null, S, S, { blockSize: 32 });
    const f = (q: Tensor, k: Tensor, v: Tensor) => flexAttention(q, k, v, { blockMask });
    const grads = vjp(f, q, k, v)[1](dOut);
    grads.forEach((g) => expect(g.dtype).toBe("f16"));
    const got = await Promise.all(grads.map((g) => g.toArray()));
    // the oracle: the same values in f32, float64 math on the CPU
    const f32 = [q, k, v].map((t) => cast(t, "f32"));
    const want = await cpuValues(...vjp(f, f32[0], f32[1], f32[2])[1](cast(dOut, "f32")));
    got.forEach((g, i) => expect({ i, ok: relL2(g, want[i]) <= TOL_GRAD }).toEqual({ i, ok: true }));
  });
});

describe("f16 input validation", () => {
  it("mixed dtypes are a typed error that says what to convert", () => {
    const q = randn([1, 1, 8, 16], { dtype: "f16" }), k = randn([1, 1, 8, 16]);
    expect(() => flexAttention(q, k, k)).toThrow(DTypeError);
    expect(() => flexAttention(q, k, k)).toThrow(/cast\(/);
  });

  it("a bare Tensor cotangent for a structured output is a GradError, not zero gradients", () => {
    const q = randn([1, 1, 8, 16]);
    const [, back] = vjp((q: Tensor) => flexAttention(q, q, q, { returnLse: true }), q);
    expect(() => back(randn([1, 1, 8, 16]) as never)).toThrow(GradError);
  });

  it("a cotangent of the wrong dtype is a typed error", () => {
    const q = randn([1, 1, 8, 16], { dtype: "f16" });
    const [, back] = vjp((q: Tensor) => flexAttention(q, q, q), q);
    expect(() => back(randn([1, 1, 8, 16]))).toThrow(DTypeError);
  });
});

releaseGpuAfterAll();
