/**
 * The attention-fusion pass: hand-written attention (tensor ops) becomes one flex call — with the mask as a
 * mask mod (block-sparse BlockMask), the rest as the score mod, a scalar scale as `scale`, repeated K/V heads
 * as GQA — and its backward is the flex backward. Checked against flexAttention written directly and against
 * the unfused graph (FLEX_PASSES=none semantics: the same ops without the pass) on the CPU oracle.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import {
  add, arange, cast, causalMask, createBlockMask, flexAttention, matmul, mul, randn, repeatInterleave, reshape, softmax, sub,
  type Tensor, tensor, transpose, vjp, where, ge, sum, exp, explain,
} from "../../mod.ts";
import { fuseAttention } from "../../lib/passes/fuse_attention.ts";
import { createCpuExecutor, topoOrder } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { CPU_OPS } from "../../lib/runtime/cpu/ops.ts";

const cpu = createCpuExecutor();
const values = (...ts: Tensor[]) => runPromise(cpu.realize(ts));

function causalAttention(q: Tensor, k: Tensor, v: Tensor, bias?: (s: Tensor, qi: Tensor, ki: Tensor) => Tensor) {
  const [S, Skv, D] = [q.shape[2], k.shape[2], q.shape[3]];
  const qi = reshape(arange(S), [S, 1]), ki = reshape(arange(Skv), [1, Skv]);
  let s = mul(matmul(q, transpose(k, -2, -1)), 1 / Math.sqrt(D));
  if (bias) s = bias(s, qi, ki);
  return matmul(softmax(where(ge(qi, ki), s, -Infinity), -1), v);
}

describe("attention fusion", () => {
  it("causal attention written by hand becomes one block-sparse flex call with the identity score mod", async () => {
    const [B, H, S, D] = [1, 2, 160, 32];
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
    const hand = causalAttention(q, k, v);
    const [f] = fuseAttention([hand]);
    expect(f.op).toBe("flexOut");
    const call = f.arg as FlexCall;
    expect(call.scale).toBeCloseTo(1 / Math.sqrt(D), 6);
    expect(call.scoreMod.name).toBe("identity");
    expect(call.blockMask.sparsity()).toBeGreaterThan(0);
    const ref = flexAttention(q, k, v, { blockMask: await createBlockMask(causalMask, null, null, S, S) });
    const [got, want] = await values(hand, ref);
    expect(relL2(got, want)).toBeLessThanOrEqual(1e-6);
  });

  it("a bias of captured per-head slopes becomes the score mod; repeated K/V heads become GQA", async () => {
    const [B, Hq, Hkv, S, D] = [1, 4, 2, 96, 16];
    const q = randn([B, Hq, S, D]), k = randn([B, Hkv, S, D]), v = randn([B, Hkv, S, D]);
    const slopes = tensor([0.5, 0.25, 0.125, 0.0625], [Hq, 1, 1]);
    const hand = causalAttention(q, repeatInterleave(k, 2, 1), repeatInterleave(v, 2, 1), (s, qi, ki) => add(s, mul(slopes, cast(sub(ki, qi), "f32"))));
    const [f] = fuseAttention([hand]);
    expect(f.op).toBe("flexOut");
    const call = f.arg as FlexCall;
    expect(call.dims.Hkv).toBe(Hkv);
    expect(call.scoreMod.captures.length).toBe(1);
    // the unfused graph is the oracle: realize it without the pass
    const [got] = await values(hand);
    const unfused = CPU_OPS as unknown as Record<string, unknown>;
    expect(typeof unfused.matmul).toBe("function");
    const { realizeCpu } = await import("../../lib/runtime/cpu/executor.ts");
    const env = (globalThis as { Deno?: { env: { set(k: string, v: string): void; delete(k: string): void } } }).Deno?.env;
    const proc = (globalThis as { process?: { env: Record<string, string | undefined> } }).process;
    env ? env.set("FLEX_PASSES", "none") : proc && (proc.env.FLEX_PASSES = "none");
    try {
      const [want] = realizeCpu([hand]);
      expect(relL2(got, want)).toBeLessThanOrEqual(1e-6);
    } finally {
      env ? env.delete("FLEX_PASSES") : proc && delete proc.env.FLEX_PASSES;
    }
  });

  it("explain() shows the fusion: one flex kernel for the attention part, none of the unfused matmuls", () => {
    const [B, H, S, D] = [1, 2, 64, 16];
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
    const e = explain(causalAttention(q, k, v));
    expect(e.kernels.filter((l) => l.includes("flex")).length).toBe(1);
    expect(e.kernels.some((l) => l.includes("matmul"))).toBe(false);
    expect(e.toString()).toContain("after the passes");
    expect(e.after).toContain("flexOut");
    expect(e.before).toContain("matmul");
  });

  it("a graph that is not attention stays as built (same node)", () => {
    const x = randn([1, 1, 8, 8]);
    const notAttention = matmul(softmax(x, 2), x); // softmax over the wrong dim
    expect(fuseAttention([notAttention])[0]).toBe(notAttention);
    const y = exp(x);
    expect(fuseAttention([y])[0]).toBe(y);
  });

  it("vjp of hand-written attention runs the flex backward and matches flexAttention's gradients", async () => {
    const [B, H, S, D] = [1, 2, 64, 16];
    const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]), w = randn([B, H, S, D]);
    const lossHand = (q: Tensor, k: Tensor, v: Tensor) => sum(mul(causalAttention(q, k, v), w));
    const mask = await createBlockMask(causalMask, null, null, S, S);
    const lossFlex = (q: Tensor, k: Tensor, v: Tensor) => sum(mul(flexAttention(q, k, v, { blockMask: mask }), w));
    const [, backH] = vjp(lossHand, q, k, v);
    const [, backF] = vjp(lossFlex, q, k, v);
    const one = tensor([1], []);
    const gh = backH(one), gf = backF(one);
    expect(topoOrder(gh).some((t) => t.op === "flexGrad")).toBe(true);
    const got = await values(...gh), want = await values(...gf);
    got.forEach((g, i) => expect(relL2(g, want[i])).toBeLessThanOrEqual(1e-5));
  });
});
