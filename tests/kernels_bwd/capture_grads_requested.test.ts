/**
 * The portable backward sums a captured tensor's gradient only where the graph asks for it (FlexBwd.capGradSlots):
 * ALiBi slopes as a constant of the score mod (a vjp over q, k, v) plan no capture-gradient code and no summing launch;
 * the slopes as a vjp input do. Both against the float64 oracle (f32 inputs, outputs poisoned).
 */
import { describe, expect, it } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { alibi, createBlockMask, flexAttention, realizeAll, setPoison, type Tensor, tensor, vjp } from "../../mod.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { explain } from "../../lib/lower/explain.ts";
import { relL2 } from "../harness.ts";
import type { MaskMod } from "../../mod.ts";

const noGpu = await gpuSkipReason();
const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
const H = 2, S = 64, D = 16, TOL = 1e-4;
const summing = (l: string) => l.startsWith("flex_bwd_reduce_captures") || l.startsWith("flex_bwd_finalize_captures");

describe("portable backward: capture gradients only where asked", () => {
  for (const asked of [false, true]) {
    it.skipIf(noGpu)(`f32 alibi + causal, the slopes' gradient ${asked ? "asked: summed" : "not asked: no summing code or launch"}; gradients vs float64`, async () => {
      const [q, k, v, dOut] = [21, 22, 23, 24].map((seed) => randn([1, H, S, D], { seed }));
      const slopes = tensor(Float32Array.from([0.25, -0.125]), [H]);
      const blockMask = await createBlockMask(causal, 1, 1, S, S, { blockSize: 32 });
      const f = (q: Tensor, k: Tensor, v: Tensor, s: Tensor) => flexAttention(q, k, v, { blockMask, scoreMod: alibi(s) }) as Tensor;
      const [y, back] = asked ? vjp(f, q, k, v, slopes) : vjp((q, k, v) => f(q, k, v, slopes), q, k, v);
      const grads = back(dOut);
      const kernels = explain(grads, (await getExecutor()).caps).kernels;
      expect(kernels.some((l) => /^flex_bwd_(dq|dkdv)/.test(l))).toBe(true);
      expect(kernels.some(summing)).toBe(asked);
      setPoison(true);
      let got: Awaited<ReturnType<typeof realizeAll>>;
      try {
        got = await realizeAll(grads);
      } finally {
        setPoison(false);
      }
      const call = (y as Tensor).arg as FlexCall;
      const data = (t: Tensor) => t.data!;
      const ref = flexReferenceBwd(call, {
        q: data(q), k: data(k), v: data(v), scoreCaptures: call.scoreMod.captures.map((t) => data(t as Tensor)), maskCaptures: [],
        dOut: data(dOut), dLse: null,
      });
      expect([relL2(got[0], ref.dq), relL2(got[1], ref.dk), relL2(got[2], ref.dv)].every((e) => e < TOL)).toBe(true);
      if (asked) expect(relL2(got[3], ref.dScoreCaptures[0]!)).toBeLessThan(TOL);
    });
  }
});

releaseGpuAfterAll();
