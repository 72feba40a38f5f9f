import { Effect } from "effect";
import { describe, expect, it, relL2 } from "../harness.ts";
import { CaptureOutOfRange, InvalidArgument } from "../../lib/errors.ts";
import { createCpuExecutor, topoOrder } from "../../lib/runtime/cpu/executor.ts";
import { CPU_OPS } from "../../lib/runtime/cpu/ops.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { randn, Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { flexAttention, type FlexCall } from "../../lib/attention/flex_attention.ts";
import { BlockMask } from "../../lib/blockmask/block_mask.ts";
import { maskBlocksNode, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import type { Expr } from "../../lib/ir/expr.ts";

const cpu = createCpuExecutor();
const realize = (roots: Tensor[]) => runPromise(cpu.realize(roots));

/** A causal mask with a captured per-head window, its block states realized by the CPU executor itself. */
async function causalWindowMask(S: number, H: number, block: number) {
  const window = tensor(Int32Array.from({ length: H }, (_, h) => 9 + 7 * h), [H], { dtype: "i32" });
  const maskMod = (_b: Expr, h: Expr, q: Expr, kv: Expr) => q.ge(kv).and(q.sub(kv).le(window.at(h)));
  const tracedMask = traceMaskMod(maskMod);
  const [states] = await realize([maskBlocksNode({ mask: tracedMask, B: 1, H, qLen: S, kvLen: S, blockSize: [block, block] })]);
  return BlockMask.fromStates(states, { B: 1, H, qLen: S, kvLen: S, blockSize: [block, block], maskMod, tracedMask });
}

describe("cpu executor", () => {
  it("realizes a flexAttention forward (out and lse) equal to flexReference", async () => {
    const [B, H, S, D] = [2, 2, 70, 16];
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
    const bias = randn([H], { seed: 7 });
    const scoreMod = (score: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) => score.add(bias.at(h).mul(q.sub(kv)).mul(0.05));
    const blockMask = await causalWindowMask(S, H, 32);
    const { out, lse } = flexAttention(q, k, v, { scoreMod, blockMask, returnLse: true });
    const [o, l] = await realize([out, lse]);
    const call = out.arg as FlexCall;
    const ref = flexReference(call, { q: q.data!, k: k.data!, v: v.data!, scoreCaptures: [bias.data!], maskCaptures: [call.blockMask.tracedMask.captures[0] as Tensor].map((t) => t.data!) });
    expect(o).toBeInstanceOf(Float32Array);
    expect(o.length).toBe(B * H * S * D);
    expect(relL2(o, ref.out)).toBeLessThanOrEqual(1e-6);
    expect(relL2(l, ref.lse)).toBeLessThanOrEqual(1e-6);
    expect(Array.from(o).some((x) => x !== 0)).toBe(true);
  });

  it("shares one evaluation between out and lse of one call", async () => {
    const q = randn([1, 1, 8, 16]);
    const { out, lse } = flexAttention(q, q, q, { returnLse: true });
    let evaluations = 0;
    const counting = { ...CPU_OPS, flexOut: (c: Parameters<typeof CPU_OPS.flexOut>[0]) => { if (!c.memo.has(c.node.arg)) evaluations++; return CPU_OPS.flexOut(c); },
      flexLse: (c: Parameters<typeof CPU_OPS.flexLse>[0]) => { if (!c.memo.has(c.node.arg)) evaluations++; return CPU_OPS.flexLse(c); } };
    await runPromise(createCpuExecutor(counting).realize([out, lse]));
    expect(evaluations).toBe(1);
  });

  it("realizes maskBlocks equal to maskBlockStatesCpu", async () => {
    const traced = traceMaskMod((_b, _h, q, kv) => q.ge(kv));
    const arg = { mask: traced, B: 1, H: 1, qLen: 50, kvLen: 40, blockSize: [16, 16] as const };
    const [states] = await realize([maskBlocksNode(arg)]);
    expect(states).toBeInstanceOf(Int32Array);
    expect(Array.from(states)).toEqual(Array.from(maskBlockStatesCpu(arg, [])));
  });

  it("returns copies of constants, in root order, and orders inputs first", async () => {
    const a = tensor([1, 2]), b = tensor([3], [1], { dtype: "i32" });
    const [ra, rb] = await realize([a, b]);
    ra[0] = 99;
    expect(a.data![0]).toBe(1);
    expect(Array.from(rb)).toEqual([3]);
    const top = new Tensor("add", [a, b], [1], "i32", undefined);
    expect(topoOrder([top]).map((t) => t.id)).toEqual([a.id, b.id, top.id]);
  });

  it("a mod reading a capture out of range fails with CaptureOutOfRange (an Effect failure)", async () => {
    const ids = tensor(Int32Array.from([0, 1, 2]), [3], { dtype: "i32" });
    const traced = traceMaskMod((_b, _h, q, kv) => ids.at(q).eq(ids.at(kv)));
    const node = maskBlocksNode({ mask: traced, B: 1, H: 1, qLen: 5, kvLen: 5, blockSize: [4, 4] });
    const tag = await Effect.runPromise(cpu.realize([node]).pipe(Effect.flip, Effect.map((e) => e._tag)));
    expect(tag).toBe("CaptureOutOfRange");
    await expect(realize([node])).rejects.toBeInstanceOf(CaptureOutOfRange);
  });

  it("an op it does not know fails with InvalidArgument naming the op", async () => {
    const e = await realize([new Tensor("frobnicate" as never, [], [1], "f32", undefined as never)]).then(() => undefined, (e) => e);
    expect(e).toBeInstanceOf(InvalidArgument);
    expect((e as Error).message).toContain("frobnicate");
  });

  it("profile returns NaN", async () => {
    expect(Number.isNaN(await runPromise(cpu.profile([tensor([1])], 3)))).toBe(true);
  });
});
