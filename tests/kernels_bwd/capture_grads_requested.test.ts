/**
 * The portable backward sums a captured tensor's gradient only where the graph asks for it (FlexBwd.capGradSlots):
 * ALiBi slopes as a constant of the score mod (a vjp over q, k, v) plan no capture-gradient code and no summing launch;
 * the slopes as a vjp input do. Both against the float64 oracle (f32 inputs, outputs poisoned: runGradCase).
 */
import { describe, expect, it } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { alibi, type MaskMod, type Tensor, tensor } from "../../mod.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import { explain } from "../../lib/lower/explain.ts";
import { runGradCase, worst } from "./helpers.ts";

const noGpu = await gpuSkipReason();
const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const TOL = 1e-4;
const summing = (l: string) => l.startsWith("flex_bwd_reduce_captures") || l.startsWith("flex_bwd_finalize_captures");
const slopes = () => tensor(Float32Array.from([0.25, -0.125]), [2]);

describe("portable backward: capture gradients only where asked", () => {
  for (const asked of [false, true]) {
    it.skipIf(noGpu)(`f32 alibi + causal, the slopes' gradient ${asked ? "asked: summed" : "not asked: no summing code or launch"}; gradients vs float64`, async () => {
      const constant = slopes();
      const r = await runGradCase({
        Hq: 2, Sq: 64, D: 16, maskMod: causal, blockSize: 32,
        ...(asked ? { params: () => [slopes()] } : {}),
        scoreMod: (ps: Tensor[]) => alibi(asked ? ps[0] : constant),
        inspect: async (grads) => {
          const kernels = explain([...grads], (await getExecutor()).caps).kernels;
          expect(kernels.some((l) => /^flex_bwd_(dq|dkdv)/.test(l))).toBe(true);
          expect(kernels.some(summing)).toBe(asked);
        },
      });
      expect(r.names).toEqual(asked ? ["dq", "dk", "dv", "dparam0"] : ["dq", "dk", "dv"]);
      expect(worst(r)).toBeLessThan(TOL);
    });
  }
});

releaseGpuAfterAll();
