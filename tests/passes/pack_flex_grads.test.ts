/** The packing pass: a flex call's gradients become reads of one packed backward node (one backward for all). */
import { describe, expect, it } from "../harness.ts";
import { explain, flexAttention, randn, tensor, type Tensor, vjp } from "../../mod.ts";
import { packFlexGrads } from "../../lib/passes/pack_flex_grads.ts";

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
});
