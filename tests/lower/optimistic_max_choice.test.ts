/**
 * Which score mods get the tensor forward's optimisticMax shapes (a first walk without the lazy rescale, a second one
 * where a row's max outgrew its first tiles'): mask-only problems and score mods that read no position (softcap, a
 * per-head scale) do; mods that read q or kv (ALiBi, relative biases, a table indexed by position) do not — their
 * rows' maxima keep growing along the row, so most workgroups would walk twice (H200: ALiBi 1.89 vs 1.42 ms).
 */
import { describe, expect, it } from "../harness.ts";
import { tensor } from "../../lib/tensor/tensor.ts";
import { makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexProblemOf } from "../../lib/lower/plan_flex.ts";
import { flexTensorCandidates } from "../../lib/lower/flex_tensor_config.ts";
import { flexTuneKey } from "../../lib/lower/flex_tune_key.ts";
import { DEFAULT_CAPABILITIES, type Capabilities } from "../../lib/lower/capabilities.ts";
import { alibi, alibiSlopes, softcap } from "../../lib/mods/gallery/mod.ts";
import type { ScoreMod } from "../../lib/mods/trace.ts";

const x = tensor(new Float32Array(1 * 2 * 128 * 64).map((_, i) => Math.sin(i)), [1, 2, 128, 64], { dtype: "f16" });
const problem = (scoreMod?: ScoreMod) => flexProblemOf(makeFlexCall(x, x, x, scoreMod ? { scoreMod } : {}));
const H200ISH: Capabilities = {
  ...DEFAULT_CAPABILITIES,
  features: new Set(["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"]),
  limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 },
};
const first = (scoreMod?: ScoreMod) => flexTensorCandidates({ ...problem(scoreMod), QB: 128, KB: 128 }, H200ISH, {}, "native", true)[0];
const anyOptimistic = (scoreMod?: ScoreMod) =>
  flexTensorCandidates({ ...problem(scoreMod), QB: 128, KB: 128 }, H200ISH, {}, "native", true).some((c) => c.optimisticMax);

describe("optimisticMax: which score mods take it", () => {
  const perHead: ScoreMod = (s, _b, h) => s.mul(h.add(1));
  const relative: ScoreMod = (s, _b, _h, q, kv) => s.add(q.sub(kv).mul(0.01));
  const table = tensor(new Float32Array(128).map((_, i) => i / 128), [128]);
  const byKey: ScoreMod = (s, _b, _h, _q, kv) => s.add(table.at(kv));

  it("mask-only problems and position-free score mods lead with it", () => {
    expect(problem().positionalScore).toBeUndefined();
    expect(first()?.optimisticMax).toBe(true);
    for (const m of [softcap(20), perHead]) {
      expect(problem(m).positionalScore).toBeUndefined();
      expect(first(m)?.optimisticMax).toBe(true);
    }
  });

  it("score mods that read q or kv (directly or as a captured tensor's index) never get it", () => {
    for (const m of [alibi(alibiSlopes(2)), relative, byKey]) {
      expect(problem(m).positionalScore).toBe(true);
      expect(first(m)).toBeDefined();
      expect(anyOptimistic(m)).toBe(false);
    }
  });

  it("a positional mod's tuned winner is kept apart from a position-free one's", () => {
    const a = flexTuneKey("tensor-native", "f16", problem(alibi(alibiSlopes(2))), {});
    const s = flexTuneKey("tensor-native", "f16", problem(softcap(20)), {});
    expect(a).not.toBe(s);
  });
});
