/**
 * A score mod's tanh is relatively accurate near 0 (lib/lower/wgsl_expr.ts flex_tanh): the 1 − e form lost it
 * (tanh(1e-6) 1.3 % off), and a mod multiplying by a small tanh got dq / dk off by as much — the random-mod property
 * test (gallery_bwd.test.ts) drew mul(x, tanh(4.3e-38·(q−kv))) in session 8. Forward and backward against the
 * float64 oracle on fresh random inputs, outputs poisoned.
 */
import { describe, expect, it } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { causalMask, type Expr } from "../../mod.ts";
import { runGradCase } from "./helpers.ts";

const noGpu = await gpuSkipReason();

describe("tanh near 0 in a score mod", () => {
  it.skipIf(noGpu)("score · tanh(c·(q − kv)) for c = 1e-6 and 0.2: dq, dk, dv within 1e-5 of float64", async () => {
    for (const c of [1e-6, 0.2]) {
      const r = await runGradCase({
        Hq: 1, Sq: 64, D: 16, maskMod: causalMask, blockSize: 32,
        scoreMod: () => (s: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) => s.mul(q.sub(kv).toFloat().mul(c).tanh()),
      });
      for (const n of r.names) expect({ c, n, ok: r.errors[n] <= 1e-5 }).toEqual({ c, n, ok: true });
    }
  }, 600_000);
});

releaseGpuAfterAll();
