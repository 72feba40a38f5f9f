/** The packing pass: a flex call's gradients become reads of one packed backward node (one backward for all). */
import { describe, expect, it } from "../harness.ts";
import { explain, flexAttention, randn, tensor, type Tensor, vjp } from "../../mod.ts";
import { packFlexGrads } from "../../lib/passes/pack_flex_grads.ts";
import { type FlexGradArg, flexGradPart } from "../../lib/passes/flex_grad.ts";
import { f16Bits, f16ToNumber } from "../../lib/tensor/dtype.ts";

describe("packFlexGrads", () => {
  it("dq, dk, dv and a capture gradient are parts of one packed node; explain() plans one backward", () => {
    const q = randn([1, 2, 32, 16]), k = randn([1, 2, 32, 16]), v = randn([1, 2, 32, 16]);
    const slopes = tensor([0.5, 0.25], [2]);
    const f = (q: Tensor, k: Tensor, v: Tensor, s: Tensor) =>
      flexAttention(q, k, v, { scoreMod: (x, _b, h, qi, kv) => x.add(s.at(h).mul(kv.sub(qi))) });
    const grads = vjp(f, q, k, v, slopes)[1](randn([1, 2, 32, 16]));
    expect(grads.map((g) => g.op)).toEqual(["flexGrad", "flexGrad", "flexGrad", "flexGrad"]);
    const packed = packFlexGrads(grads);
    expect(packed.map((g) => g.op)).toEqual(["flexGradPart", "flexGradPart", "flexGradPart", "flexGradPart"]);
    expect(new Set(packed.map((g) => g.inputs[0])).size).toBe(1);
    expect(packed.map((g) => g.shape)).toEqual(grads.map((g) => g.shape));
    const kernels = explain(grads).kernels;
    expect(kernels.filter((l) => l.startsWith("flex_backward") || l.includes("dq") && l.includes("flex_bwd")).length).toBeGreaterThan(0);
    expect(kernels.filter((l) => l.startsWith("flex_bwd_copy")).length).toBe(4);
  });

  it("f16 inputs: each gradient is one f16 read of the packed node (no cast node), rounded as the cast rounds", async () => {
    const shape = [1, 2, 9, 16];
    const q = randn(shape, { dtype: "f16", seed: 71 }), k = randn(shape, { dtype: "f16", seed: 72 }), v = randn(shape, { dtype: "f16", seed: 73 });
    const grads = vjp((q: Tensor, k: Tensor, v: Tensor) => flexAttention(q, k, v), q, k, v)[1](randn(shape, { dtype: "f16", seed: 74 }));
    const packed = packFlexGrads(grads);
    expect(packed.map((g) => [g.op, g.dtype])).toEqual([["flexGradPart", "f16"], ["flexGradPart", "f16"], ["flexGradPart", "f16"]]);
    expect(explain(grads).kernels.filter((l) => l.startsWith("flex_bwd_copy") && l.endsWith(" f16")).length).toBe(3);
    // the f16 parts against the f32 parts of the same packed node, rounded here
    const bwd = (packed[0].inputs[0].arg as FlexGradArg).bwd;
    for (const which of ["dq", "dk", "dv"] as const) {
      const [p16, p32] = await Promise.all([flexGradPart(bwd, which, "f16").toArray(), flexGradPart(bwd, which, "f32").toArray()]);
      expect(p16.length).toBe(288);
      const want = Array.from(p32, (x) => f16ToNumber(f16Bits(x)));
      expect(Array.from(p16, Number)).toEqual(want);
      expect(want.some((x) => x !== 0)).toBe(true);
    }
  });
});
