/**
 * A score mod that reads a captured f32 tensor (ALiBi's slopes) on f16 inputs: when the graph asks for no gradient of
 * the capture (vjp over q, k, v only: FlexBwd.capGradSlots empty), the backward runs the tensor family — it reads
 * captures but computes no capture gradients; when it asks for the slopes' gradient too, the portable backward runs
 * (its dQ kernel sums capture gradients). Both against the float64 oracle on the same f16 values, outputs poisoned.
 * Before session 16 any f32 capture sent the backward to the portable family (H200 alibi + causal: 25.8 ms).
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { alibi, type Tensor, tensor } from "../../mod.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import { explain } from "../../lib/lower/explain.ts";
import { runGradCase } from "./helpers.ts";
import { causal, checkTensorBwd, tensorBwdSkip, TOL } from "./tensor_bwd_fixture.ts";

const H = 2, S = 64, D = 16;
const slopeValues = [0.25, -0.125];

describe("tensor-family backward with a captured f32 tensor in the score mod", () => {
  it.skipIf(tensorBwdSkip)("alibi + causal, f16, no gradient of the slopes asked: the tensor kernels, exact", async () => {
    const slopes = tensor(Float32Array.from(slopeValues), [H]);
    await checkTensorBwd(
      { name: "alibi + causal", Hq: H, Sq: S, D, block: 32, mask: causal, score: alibi(slopes), forwardTile: { blockM: 16, blockN: 16 } },
      null,
      (kernels) => {
        expect(kernels.some((l) => l.startsWith("flex_bwd_dkdv_tensor"))).toBe(true);
        expect(kernels.some((l) => l.startsWith("flex_bwd_dq_tensor"))).toBe(true);
      },
    );
  });

  // kernelOptions as given; the second: a forced tensor family with a 16-row tile no f32 (x3) shape has — the f32 twin
  // the portable backward reads (its Δ) falls back to the portable forward instead of failing with NoConfigFits
  for (const kernelOptions of [undefined, { family: "tensor" as const, blockM: 16, blockN: 16 }]) {
    it.skipIf(tensorBwdSkip)(`the slopes' gradient asked too${kernelOptions ? " (family tensor, blockM 16)" : ""}: the portable backward, dslopes and dq match float64`, async () => {
      const r = await runGradCase({
        Hq: H, Sq: S, D, maskMod: causal, blockSize: 32, dtype: "f16", kernelOptions,
        params: () => [tensor(Float32Array.from(slopeValues), [H])],
        scoreMod: (ps: Tensor[]) => alibi(ps[0]),
        inspect: async (grads) => {
          const kernels = explain([...grads], (await getExecutor()).caps).kernels;
          expect(kernels.some((l) => l.startsWith("flex_bwd_dkdv_tensor") || l.startsWith("flex_bwd_dq_tensor"))).toBe(false);
          expect(kernels.some((l) => l.startsWith("flex_bwd_reduce_captures"))).toBe(true); // the portable path sums them
        },
      });
      expect(r.errors.dq).toBeLessThan(TOL);
      expect(r.errors.dparam0).toBeLessThan(TOL);
    });
  }
});

releaseGpuAfterAll();
