/**
 * The decode tile (kernels/flex_decode.ts, Sq ≤ 16) through the library's planner against the float64 oracle:
 * fresh random inputs, outputs poisoned first. GQA packing (4:1) and 1:1, ragged key lengths, masks with an offset
 * (causal, sliding window), a document mask and a score mod with captured tensors, D 64 / 128 / 20, f32 and f16,
 * many splits and none, a per-head mask (no packing), fully masked rows; that it is selected (and when not), that
 * a new key length rebuilds nothing, and that gradients through a decode-shaped call stay right.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { nativeHalf } from "../native_slice.ts";
import { blockMaskOf } from "./helpers.ts";
import { runGradCase } from "../kernels_bwd/helpers.ts";
import { Effect } from "effect";
import { randn, type Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { type FlexCall, flexNodes, type FlexOptions, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { planFlex } from "../../lib/lower/plan_flex.ts";
import { chooseDecodeSplits, decodeConfig, flexDecodeSwitch } from "../../lib/lower/flex_decode_config.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { explain } from "../../lib/lower/explain.ts";
import { tuneJobOf } from "../../lib/lower/flex_tune.ts";
import type { Expr } from "../../lib/ir/expr.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";

const TOL = { f32: { out: 1e-4, lse: 1e-4 }, f16: { out: 5e-4, lse: 1e-4 } };
const dataOf = (t: unknown) => (t as Tensor).data!;

/**
 * The cache-end window: query row q is token q + off[h] of the sequence and sees the keys off[h] + q − win[h] … off[h] + q
 * (causal at the cache end with win = ∞, a sliding window otherwise). Offsets and widths are captured tensors, so
 * one kernel serves every length and head layout below (lavapipe compiles each new kernel for seconds).
 */
const cacheWindow = (off: number[], win: number[]): MaskMod => {
  // always 8 entries: a captured tensor's shape is part of the kernel (its index bounds)
  const pad = (a: number[]) => Int32Array.from({ length: 8 }, (_, i) => a[i] ?? 0);
  const o = tensor(pad(off), [8], { dtype: "i32" }), w = tensor(pad(win), [8], { dtype: "i32" });
  return (_b, h, q, kv) => q.add(o.at(h)).ge(kv).and(q.add(o.at(h)).sub(kv).le(w.at(h)));
};
const BIG = 1 << 30;
const fill = (n: number, x: number) => Array.from({ length: n }, () => x);

interface DCase {
  B?: number; Hq?: number; Hkv?: number; Sq: number; Skv: number; D?: number; Dv?: number; dtype?: "f32" | "f16";
  mask?: MaskMod; maskH?: number; block?: number; options?: Omit<FlexOptions, "blockMask" | "enableGqa">;
}

function decodeCall(c: DCase): FlexCall {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, D = c.D ?? 64, Dv = c.Dv ?? D, dtype = c.dtype ?? "f32";
  const q = randn([B, Hq, c.Sq, D], { dtype }), k = randn([B, Hkv, c.Skv, D], { dtype }), v = randn([B, Hkv, c.Skv, Dv], { dtype });
  const blockMask = c.mask ? blockMaskOf(c.mask, 1, c.maskH ?? 1, c.Sq, c.Skv, c.block ?? 64) : undefined;
  return makeFlexCall(q, k, v, { ...c.options, blockMask, enableGqa: Hq !== Hkv });
}

async function check(c: DCase) {
  const call = decodeCall(c);
  const plan = planFlex(call, gpu.caps);
  expect(plan.launches[0].label).toContain("flex_decode");
  const { out, lse } = flexNodes(call);
  setPoison(true);
  const [o, l] = await Effect.runPromise(gpu.executor.realize([out, lse]));
  const ref = flexReference(call, {
    q: dataOf(call.q), k: dataOf(call.k), v: dataOf(call.v),
    scoreCaptures: call.scoreMod.captures.map(dataOf), maskCaptures: call.blockMask.tracedMask.captures.map(dataOf),
  });
  const tol = TOL[c.dtype ?? "f32"];
  const errOut = relL2(o, ref.out), errLse = relL2(l, ref.lse);
  expect({ errOut, errLse, ok: errOut <= tol.out && errLse <= tol.lse }).toEqual({ errOut, errLse, ok: true });
  return { o, l, ref, plan };
}

// the kernel cases (they compile): every other one in the deno/native pass (tests/native_slice.ts)
const gpuCase = nativeHalf(skipReason);

describe("flex decode tile vs oracle", () => {
  const run = gpuCase;

  run("f32 D 64: Sq 1 GQA 4:1 causal at the end of a ragged cache (many splits); Sq 3 1:1 B 2 sliding window", async () => {
    const { plan } = await check({ Hq: 8, Hkv: 2, Sq: 1, Skv: 1000, mask: cacheWindow(fill(8, 999), fill(8, BIG)) });
    expect(plan.launches.map((l) => l.label.split(" ")[0])).toEqual(["flex_decode", "flex_combine"]);
    await check({ B: 2, Hq: 2, Sq: 3, Skv: 777, mask: cacheWindow(fill(2, 774), fill(2, 300)) });
  });

  run("f32 D 64, a per-head mask with GQA (heads not packed), fully masked rows (out 0, lse −∞)", async () => {
    // row 0 of head 1 sees nothing (q − 1 ≥ kv never holds at q = 0); the other heads windows of their own widths
    const { o, l } = await check({ Hq: 4, Hkv: 2, Sq: 3, Skv: 260, mask: cacheWindow([257, -1, 200, 257], [BIG, BIG, 50, 10]), maskH: 4 });
    expect(l[3]).toBe(-Infinity);
    expect(Array.from(o.slice(3 * 64, 4 * 64)).every((x) => x === 0)).toBe(true);
  });

  run("f32 D 128: document mask (captured ids) ∧ causal at the end, Sq 16 1:1 and Sq 3 GQA 4:1", async () => {
    const Skv = 500, ids = Int32Array.from({ length: Skv }, (_, i) => (i < 130 ? 0 : i < 420 ? 1 : 2));
    const docs = tensor(ids, [Skv], { dtype: "i32" }), off = tensor(Int32Array.of(Skv - 16), [1], { dtype: "i32" });
    const mask: MaskMod = (_b, _h, q, kv) => docs.at(q.add(off.at(0))).eq(docs.at(kv)).and(q.add(off.at(0)).ge(kv));
    await check({ Hq: 2, Sq: 16, Skv, D: 128, mask });
    await check({ Hq: 8, Hkv: 2, Sq: 3, Skv, D: 128, mask });
  });

  run("f16 D 128: alibi-like score mod (captured f32 slopes) ∧ causal at the end, Sq 16 GQA 4:1 (64 rows: row tiles), Sq 3", async () => {
    const slopes = tensor(Float32Array.from({ length: 8 }, (_, h) => 2 ** -(h + 1)), [8]);
    const scoreMod = (s: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) => s.add(slopes.at(h).mul(kv.sub(q)));
    await check({ Hq: 8, Hkv: 2, Sq: 16, Skv: 400, D: 128, dtype: "f16", mask: cacheWindow(fill(8, 384), fill(8, BIG)), options: { scoreMod } });
    await check({ Hq: 8, Hkv: 2, Sq: 3, Skv: 601, D: 128, dtype: "f16", mask: cacheWindow(fill(8, 598), fill(8, BIG)), options: { scoreMod } });
  });

  run("f16 8 keys a step (the f16 default where registers allow): D 64 GQA 2:1 causal at a ragged cache end, many splits", async () => {
    flexDecodeSwitch.override = { L: 8, KPS: 8 };
    try {
      const { plan } = await check({ Hq: 4, Hkv: 2, Sq: 1, Skv: 1500, D: 64, dtype: "f16", mask: cacheWindow(fill(4, 1499), fill(4, BIG)) });
      expect(plan.launches[0].label).toContain("L8 KPS8");
    } finally {
      flexDecodeSwitch.override = undefined;
    }
  });

  run("prefetch (step st + 1's loads before step st's math): f32 GQA 4:1 sliding window at a ragged end, 2 steps a block, splits; f16 alibi captures, no split", async () => {
    const slopes = tensor(Float32Array.from({ length: 8 }, (_, h) => 2 ** -(h + 2)), [8]);
    const scoreMod = (s: Expr, _b: Expr, h: Expr, q: Expr, kv: Expr) => s.add(slopes.at(h).mul(kv.sub(q)));
    try {
      flexDecodeSwitch.override = { prefetch: true, KPS: 1 };
      const a = await check({ Hq: 8, Hkv: 2, Sq: 1, Skv: 1000, block: 128, mask: cacheWindow(fill(8, 999), fill(8, 700)) });
      expect(a.plan.launches.map((l) => l.label.split(" ")[0])).toEqual(["flex_decode", "flex_combine"]);
      const [L, NT] = ["L", "NT"].map((k) => Number(a.plan.launches[0].label.match(new RegExp(` ${k}(\\d+)`))![1]));
      expect({ prefetch: a.plan.launches[0].label.includes(" prefetch"), stepsABlock: 128 / (NT / L) >= 2 }).toEqual({ prefetch: true, stepsABlock: true });
      flexDecodeSwitch.override = { prefetch: true };
      const b = await check({
        Hq: 4, Hkv: 2, Sq: 3, Skv: 700, D: 64, dtype: "f16", block: 64, mask: cacheWindow(fill(4, 697), fill(4, 400)),
        options: { scoreMod, kernelOptions: { splitKv: 1 } },
      });
      expect(b.plan.launches.length).toBe(1);
    } finally {
      flexDecodeSwitch.override = undefined;
    }
  });

  run("f16 odd head dims D 20, Dv 36 (units short of the lanes), B 2, no mask, no split (direct f16 out)", async () => {
    const { plan } = await check({ B: 2, Hq: 4, Hkv: 1, Sq: 1, Skv: 300, D: 20, Dv: 36, dtype: "f16", options: { kernelOptions: { splitKv: 1 } } });
    expect(plan.launches.length).toBe(1);
  });
});

describe("flex decode tile selection", () => {
  const run = it.skipIf(skipReason);

  run("chosen for Sq ≤ 16 (and in explain), not for Sq 17 or a pinned blockM", () => {
    const label = (c: DCase) => planFlex(decodeCall(c), gpu.caps).launches[0].label;
    expect(label({ Sq: 16, Skv: 256 })).toContain("flex_decode");
    expect(label({ Sq: 17, Skv: 256 })).not.toContain("flex_decode");
    expect(label({ Sq: 1, Skv: 256, options: { kernelOptions: { blockM: 32 } } })).not.toContain("flex_decode");
    expect(label({ Sq: 1, Skv: 256, options: { kernelOptions: { family: "portable" } } })).toContain("flex_decode");
    expect(tuneJobOf(flexNodes(decodeCall({ Sq: 1, Skv: 256, options: { kernelOptions: { autotune: "max" } } })).out, gpu.caps)).toBeUndefined();
    const call = decodeCall({ Hq: 4, Hkv: 1, Sq: 1, Skv: 256 });
    expect(explain(flexNodes(call).out, gpu.caps).kernels.some((k) => k.startsWith("flex_decode"))).toBe(true);
  });

  run("a step (slots × keys a slot) stays within the mask's kv block on this device", () => {
    for (const [block, dtype] of [[64, "f16"], [128, "f16"], [64, "f32"]] as const) {
      const label = planFlex(decodeCall({ Hq: 4, Hkv: 1, Sq: 1, Skv: 512, dtype, mask: cacheWindow(fill(8, 511), fill(8, BIG)), block }), gpu.caps).launches[0].label;
      const [L, KPS, NT] = ["L", "KPS", "NT"].map((k) => Number(label.match(new RegExp(` ${k}(\\d+)`))![1]));
      expect({ label, block, fits: (NT / L) * KPS <= block }).toEqual({ label, block, fits: true });
    }
  });

  run("a new key length rebuilds nothing (same WGSL), uniforms differ", () => {
    const mask = cacheWindow(fill(8, 0), fill(8, 100));
    const a = planFlex(decodeCall({ Hq: 8, Hkv: 2, Sq: 1, Skv: 300, mask }), gpu.caps);
    const b = planFlex(decodeCall({ Hq: 8, Hkv: 2, Sq: 1, Skv: 900, mask }), gpu.caps);
    expect(a.launches[0].code).toBe(b.launches[0].code);
    const skv = (p: typeof a) => (p.launches[0].bindings[8] as { data: Uint32Array }).data[3];
    expect([skv(a), skv(b)]).toEqual([300, 900]);
  });

  gpuCase("gradients through a decode-shaped call (backward on the existing kernels)", async () => {
    const r = await runGradCase({ Hq: 4, Hkv: 2, Sq: 3, Skv: 200, withLse: true });
    for (const [name, e] of Object.entries(r.errors)) expect({ name, ok: e <= 1e-3 }).toEqual({ name, ok: true });
  });
});

describe("flex decode config (an H200-like device: 32-lane subgroups, 256 threads)", () => {
  const caps = { ...DEFAULT_CAPABILITIES, features: new Set(["subgroups"]), subgroupMinSize: 32, subgroupMaxSize: 32 };
  it("f16 D 64 with 4 rows a tile: 8 keys a slot in 128-thread workgroups (a 128-key step, not 256), two splits for 128 (b, kv head)", () => {
    const c = decodeConfig({ D: 64, Dv: 64, dtype: "f16", units: 4, identityScore: true, KB: 128 }, caps)!;
    expect([c.RT, c.L, c.KPS, c.NT]).toEqual([4, 8, 8, 128]);
    expect(chooseDecodeSplits(128, 64, undefined, c.NT)).toBe(2);
    // a 256-key block admits the 256-thread workgroup, which then needs no split for 128 workgroups
    const w = decodeConfig({ D: 64, Dv: 64, dtype: "f16", units: 4, identityScore: true, KB: 256 }, caps)!;
    expect([w.L, w.KPS, w.NT, chooseDecodeSplits(128, 32, undefined, w.NT)]).toEqual([8, 8, 256, 1]);
  });
  it("D 128 (GQA 4 rows) and f32 keep 256 threads: their steps are 128 and 64 keys", () => {
    const h = decodeConfig({ D: 128, Dv: 128, dtype: "f16", units: 4, identityScore: true, KB: 128 }, caps)!;
    const f = decodeConfig({ D: 64, Dv: 64, dtype: "f32", units: 4, identityScore: true, KB: 128 }, caps)!;
    expect([h.L, h.KPS, h.NT, f.L, f.KPS, f.NT]).toEqual([16, 8, 256, 8, 4, 256]);
  });
});

releaseGpuAfterAll();
