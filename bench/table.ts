/**
 * `deno task bench`: the seed-style table. For each provider (Dawn and Deno's built-in WebGPU by default, in the
 * same run), it measures the provider's scalar FMA peak with a probe kernel, then times flexAttention forward
 * (noop and causal) and the materialized-mask baseline, and prints ms, TF/s (fwd FLOPs = 4·B·H·Sq·Skv·D·density)
 * and % of the measured peak, plus the causal/noop time ratio. The backward (dq, dk, dv through `vjp`) is timed
 * as forward+backward in one realize minus the forward alone (bwd FLOPs = 10·B·H·Sq·Skv·D·density).
 *
 *   FLEX_BENCH_PROVIDERS=dawn,native   providers to run (default both; those without an adapter are reported)
 *   FLEX_BENCH_SHAPES=4x16x4096x64,4x16x1024x64   B×H×S×D shapes (default: the shape and a smaller one)
 *   FLEX_BENCH_ITERS=10
 *   FLEX_BENCH_BWD=0                  skip the backward rows
 *   FLEX_BENCH_REPS=5                 profiles per row after a warm-up; the best is reported
 *   FLEX_BENCH_DECODE=1x16x1x32768x64  B×H×Sq×Skv×D decoding shapes (split-KV off vs auto); empty: none
 */
import { Effect } from "effect";
import {
  type BlockMask, causalMask, createBlockMask, createMask, deviceInfo, flexAttention, getExecutor, randn, resetRuntime,
  type Tensor, vjp,
} from "../mod.ts";
import { denseAttention } from "../lib/attention/baselines.ts";
import { fmaProbe, fmaProbeFlops } from "../lib/lower/probes.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const providers = env("FLEX_BENCH_PROVIDERS", "dawn,native").split(",").map((s) => s.trim()).filter(Boolean);
const shapes = env("FLEX_BENCH_SHAPES", "4x16x4096x64,4x16x1024x64").split(",").map((s) => s.split("x").map(Number));
const iters = Number(env("FLEX_BENCH_ITERS", "10"));
const skipBwd = env("FLEX_BENCH_BWD", "1") === "0";
const reps = Number(env("FLEX_BENCH_REPS", "5"));
const decodeShapes = env("FLEX_BENCH_DECODE", "1x16x1x32768x64,8x16x4x8192x64").split(",").filter(Boolean).map((s) => s.split("x").map(Number));

type Row = { provider: string; case: string; shape: string; ms: number; tflops: number; pct: number; note: string };
const rows: Row[] = [];
const fmt = (x: number, d = 2) => Number.isFinite(x) ? x.toFixed(d) : "—";

for (const provider of providers) {
  Deno.env.set("FLEX_WEBGPU", provider);
  await resetRuntime();
  let info;
  try {
    info = await deviceInfo();
  } catch (e) {
    console.log(`${provider}: unavailable — ${(e as Error).message}`);
    continue;
  }
  console.log(`\n== provider ${info.provider}: ${info.adapter}`);
  const ex = await getExecutor();
  // Single profiles swing 2–10× on a GPU coming out of idle (clocks ramp, completion callbacks lag): warm up,
  // then report the best of `reps` profiles of `n` launches each.
  const best = async (roots: Tensor[], n = iters) => {
    await Effect.runPromise(ex.profile(roots, n));
    let min = Infinity;
    for (let r = 0; r < reps; r++) min = Math.min(min, await Effect.runPromise(ex.profile(roots, n)));
    return min;
  };
  const run = (t: Tensor, n = iters) => best([t], n);

  const probe = fmaProbe();
  const probeMs = await run(probe, 5);
  const peak = fmaProbeFlops(probe) / (probeMs * 1e-3) / 1e12;
  console.log(`FMA peak (f32, measured): ${fmt(peak, 1)} TF/s`);
  rows.push({ provider, case: "fma-probe", shape: "-", ms: probeMs, tflops: peak, pct: 100, note: "" });
  await decodeRows(provider, peak, run);

  for (const [B, H, S, D] of shapes) {
    const shape = `B${B} H${H} S${S} D${D}`;
    const q = randn([B, H, S, D], { seed: 1 }), k = randn([B, H, S, D], { seed: 2 }), v = randn([B, H, S, D], { seed: 3 });
    const causal = await createBlockMask(causalMask, null, null, S, S);
    const cases: [string, BlockMask | undefined, number][] = [
      ["noop", undefined, 1],
      ["causal", causal, 1 - causal.sparsity() / 100],
    ];
    const times: Record<string, number> = {};
    const dOut = randn([B, H, S, D], { seed: 4 });
    for (const [name, blockMask, density] of cases) {
      const fwd = flexAttention(q, k, v, { blockMask });
      const ms = await run(fwd);
      times[name] = ms;
      const tf = 4 * B * H * S * S * D * density / (ms * 1e-3) / 1e12;
      rows.push({ provider, case: `flex ${name} fwd`, shape, ms, tflops: tf, pct: 100 * tf / peak, note: `density ${density.toFixed(3)}` });
      if (skipBwd) continue;
      try {
        const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask }), q, k, v);
        const grads = back(dOut);
        const both = await best(grads);
        const bwd = both - ms;
        const tfb = 10 * B * H * S * S * D * density / (bwd * 1e-3) / 1e12;
        times[`${name} bwd`] = bwd;
        rows.push({ provider, case: `flex ${name} bwd`, shape, ms: bwd, tflops: tfb, pct: 100 * tfb / peak, note: `bwd/fwd ${(bwd / ms).toFixed(2)}` });
      } catch (e) {
        rows.push({ provider, case: `flex ${name} bwd`, shape, ms: NaN, tflops: NaN, pct: NaN, note: `n/a: ${(e as Error).message.slice(0, 80)}` });
      }
    }
    rows.push({
      provider, case: "causal/noop time", shape, ms: NaN, tflops: NaN, pct: NaN,
      note: `fwd ratio ${(times["causal"] / times["noop"]).toFixed(3)}` +
        (times["causal bwd"] ? `, bwd ratio ${(times["causal bwd"] / times["noop bwd"]).toFixed(3)}` : ""),
    });
    // The materialized-mask baseline: needs B·H·S² floats of scores; report honestly when it does not fit.
    try {
      const dense = denseAttention(q, k, v, { mask: createMask(causalMask, 1, 1, S, S) });
      const ms = await run(dense, Math.max(1, Math.floor(iters / 2)));
      const tf = 4 * B * H * S * S * D * 0.5 / (ms * 1e-3) / 1e12;
      rows.push({ provider, case: "materialized causal", shape, ms, tflops: tf, pct: 100 * tf / peak, note: "useful FLOPs (½)" });
    } catch (e) {
      rows.push({ provider, case: "materialized causal", shape, ms: NaN, tflops: NaN, pct: NaN, note: `n/a: ${(e as Error).message.slice(0, 80)}` });
    }
  }
}

// Decoding (few query rows over a long cache): the grid alone cannot fill the GPU; split-KV off vs auto.
async function decodeRows(provider: string, peak: number, run: (t: Tensor, n?: number) => Promise<number>) {
  for (const [B, H, Sq, Skv, D] of decodeShapes) {
    const shape = `B${B} H${H} Sq${Sq} Skv${Skv} D${D}`;
    const q = randn([B, H, Sq, D], { seed: 5 }), k = randn([B, H, Skv, D], { seed: 6 }), v = randn([B, H, Skv, D], { seed: 7 });
    const times: number[] = [];
    for (const [label, splitKv] of [["split-KV off", 1], ["split-KV auto", undefined]] as const) {
      const ms = await run(flexAttention(q, k, v, { kernelOptions: { splitKv } }));
      times.push(ms);
      const tf = 4 * B * H * Sq * Skv * D / (ms * 1e-3) / 1e12;
      const gbs = 2 * B * H * Skv * D * 4 / (ms * 1e-3) / 1e9;
      rows.push({ provider, case: `flex decode ${label}`, shape, ms, tflops: tf, pct: 100 * tf / peak, note: `K+V read ${gbs.toFixed(0)} GB/s` });
    }
    rows.push({ provider, case: "decode speed-up", shape, ms: NaN, tflops: NaN, pct: NaN, note: `${(times[0] / times[1]).toFixed(2)}× (off / auto)` });
  }
}

const header = ["provider", "case", "shape", "fwd ms", "TF/s", "% FMA peak", "note"];
const table = rows.map((r) => [r.provider, r.case, r.shape, fmt(r.ms, 3), fmt(r.tflops), fmt(r.pct, 1), r.note]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
console.log("\n" + line(header));
console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
for (const r of table) console.log(line(r));
