/**
 * NaN propagates on the CPU executor: a row whose attended scores are all NaN used to read as "fully masked"
 * (out 0, lse −∞) because `s > m` skips NaN. Now its out and lse are NaN, as on the GPU and in any float64
 * softmax, and the backward's gradients of that row are NaN too (not an UndefinedDerivative, not zeros).
 * Runs on the CPU executor directly (the FLEX_WEBGPU=cpu path), whatever adapter the machine has.
 */
import { describe, expect, it } from "../harness.ts";
import { causalMask, type Expr, flexAttention, randn, type Tensor, tensor, vjp } from "../../mod.ts";
import { createCpuExecutor, runPromise } from "../../effect.ts";
import { BlockMask } from "../../lib/blockmask/block_mask.ts";
import { maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";

const cpu = createCpuExecutor();
const realize = (xs: Tensor[]) => runPromise(cpu.realize(xs));

const [S, D] = [8, 16];
const NAN_ROW = 1; // causal: row 1 attends kv 0 and 1, both made NaN by the bias below
const bias = tensor(Float32Array.from({ length: S }, (_, i) => (i === NAN_ROW ? NaN : 0)), [S], { dtype: "f32" });
const scoreMod = (s: Expr, _b: Expr, _h: Expr, q: Expr, _kv: Expr) => s.add(bias.at(q)).tanh();

function causal(): BlockMask {
  const traced = traceMaskMod(causalMask);
  const arg = { mask: traced, B: 1, H: 1, qLen: S, kvLen: S, blockSize: [4, 4] as const };
  return BlockMask.fromStates(maskBlockStatesCpu(arg, []), { B: 1, H: 1, qLen: S, kvLen: S, blockSize: [4, 4], maskMod: causalMask, tracedMask: traced });
}

describe("hardening: NaN on the CPU executor", () => {
  it("a row of NaN scores gives NaN out and lse; other rows stay finite", async () => {
    const q = randn([1, 1, S, D], { seed: 1 }), k = randn([1, 1, S, D], { seed: 2 }), v = randn([1, 1, S, D], { seed: 3 });
    const { out, lse } = flexAttention(q, k, v, { scoreMod, blockMask: causal(), returnLse: true });
    const [o, l] = await realize([out, lse]);
    expect(Number.isNaN(l[NAN_ROW])).toBe(true); // was −∞
    for (let d = 0; d < D; d++) expect(Number.isNaN(o[NAN_ROW * D + d])).toBe(true); // was 0
    for (let i = 0; i < S; i++) if (i !== NAN_ROW) expect(Number.isFinite(l[i])).toBe(true);
    expect(Array.from(o.subarray(0, D)).every(Number.isFinite)).toBe(true);
  });

  it("a NaN in q gives NaN for its row (NaN never passes as masked)", async () => {
    const qd = randn([1, 1, S, D], { seed: 4 }).data!.slice();
    qd[3 * D] = NaN;
    const q = tensor(qd, [1, 1, S, D]), k = randn([1, 1, S, D], { seed: 5 });
    const { out, lse } = flexAttention(q, k, k, { blockMask: causal(), returnLse: true });
    const [o, l] = await realize([out, lse]);
    expect(Number.isNaN(l[3])).toBe(true);
    expect(Number.isNaN(o[3 * D])).toBe(true);
    expect(Number.isFinite(l[2])).toBe(true);
  });

  it("the backward gives NaN gradients for that row, and no UndefinedDerivative", async () => {
    const q = randn([1, 1, S, D], { seed: 6 }), k = randn([1, 1, S, D], { seed: 7 }), v = randn([1, 1, S, D], { seed: 8 });
    const blockMask = causal();
    const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { scoreMod, blockMask }), q, k, v);
    const [dq, dk, dv] = await realize([...back(randn([1, 1, S, D], { seed: 9 }))]);
    expect(Number.isNaN(dq[NAN_ROW * D])).toBe(true);
    expect(Array.from(dq.subarray(0, D)).every(Number.isFinite)).toBe(true); // row 0 is untouched by the NaN
    expect(Number.isNaN(dk[0]) && Number.isNaN(dv[0])).toBe(true); // kv 0 is attended by the NaN row
    expect(Array.from(dk.subarray(7 * D, 8 * D)).every(Number.isFinite)).toBe(true); // kv 7: only row 7 attends it
  });
});
