/**
 * The portable f32 forward's tile shapes side by side on one device: the heuristic's pick, narrow (flexForwardWgsl)
 * and wide (TM 4 / 8 register tiles) candidates, each first checked against the float64 oracle (causal, odd length,
 * fresh random inputs, poisoned outputs), then timed at B4 H16 S4096 (noop and causal; GPU timestamps after a warm-up
 * submit, best of 3; softcap 20 + causal too). The FMA probe runs in the same process first. One line per (config, mask), then the best.
 *
 *   deno run -A bench/portable_fwd_tiles.ts            FWD_TILES_D=64,128  FWD_TILES_S=4096  FWD_TILES_BUDGET_S=170
 *   FWD_TILES='[{"BM":128,"BN":64,"TM":8,"G":8,"DK":32,"NV":32,"wide":true}]'   exactly these (per D, D / Dv filled in)
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, type Expr, flexAttention, randn, type Tensor } from "../mod.ts";
import { chooseFlexConfig, flexConfigOverride } from "../lib/lower/flex_config.ts";
import { type FlexForwardConfig, flexForwardSmemBytes, flexForwardThreads } from "../kernels/flex_forward.ts";
import { flexForwardWideProblem } from "../kernels/flex_forward_wide.ts";
import { fmaProbe, fmaProbeFlops } from "../lib/lower/probes.ts";
import { gpu } from "../tests/kernels/device.ts";
import { blockMaskOf, makeCall, runAgainstOracle } from "../tests/kernels/helpers.ts";
import { warmBest, warmProfilesByDefault } from "./warm_best.ts";

warmProfilesByDefault();
const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const Ds = env("FWD_TILES_D", "64,128").split(",").map(Number);
const S = Number(env("FWD_TILES_S", "4096"));
const budgetMs = Number(env("FWD_TILES_BUDGET_S", "170")) * 1000;
const [B, H] = [4, 16];
if (typeof gpu === "string" || !gpu) throw new Error(`no GPU: ${gpu}`);
const dev = gpu;
const caps = dev.caps;
const t0 = performance.now();
console.log("limits", JSON.stringify(caps.limits), "subgroups", caps.subgroupMinSize, caps.subgroupMaxSize);

const profile = (roots: Tensor[], n: number) => Effect.runPromise(dev.executor.profile(roots, n));
/** Best GPU ms per launch, and the wall ms of the first profile (it compiles the kernel: the "kernel ready" cost). */
async function best(roots: Tensor[]): Promise<[number, number]> {
  let first = -1;
  const timed = async (r: Tensor[], n: number) => {
    const t = performance.now();
    const ms = await profile(r, n);
    if (first < 0) first = performance.now() - t;
    return ms;
  };
  const ms = await warmBest(timed, roots, { warmMs: 200, maxWarm: 1000, maxN: 20, targetMs: 120, reps: 3 });
  return [ms, first];
}

type Shape = Omit<FlexForwardConfig, "family" | "D" | "Dv" | "identityScore" | "subgroups">;
const sg = (G: number) => caps.features.has("subgroups") && (caps.subgroupMinSize ?? 0) >= G && (caps.subgroupMinSize ?? 0) % G === 0;
/** Hand-picked shapes per head dim: register tiles of 4×8 and 8×8 (8×4 where D = 128 would need 128 accumulators). */
const SHAPES: Record<number, Shape[]> = {
  64: [
    { BM: 128, BN: 64, TM: 8, G: 8, DK: 32, NV: 32, wide: true },
    { BM: 128, BN: 64, TM: 8, G: 8, DK: 32, NV: 32, wide: true, unroll: 4 },
    { BM: 64, BN: 64, TM: 8, G: 8, DK: 64, NV: 32, wide: true },
    { BM: 64, BN: 64, TM: 8, G: 8, DK: 64, NV: 32, wide: true, unroll: 4 },
    { BM: 64, BN: 64, TM: 4, G: 8, DK: 64, NV: 64 },
    { BM: 128, BN: 64, TM: 4, G: 8, DK: 32, NV: 32, wide: true },
    { BM: 128, BN: 64, TM: 8, G: 8, DK: 16, NV: 32, wide: true },
    { BM: 64, BN: 64, TM: 8, G: 8, DK: 64, NV: 64, wide: true },
    { BM: 64, BN: 128, TM: 8, G: 16, DK: 32, NV: 64, wide: true },
    { BM: 128, BN: 128, TM: 8, G: 16, DK: 16, NV: 32, wide: true },
    { BM: 128, BN: 64, TM: 4, G: 8, DK: 16, NV: 16 },
  ],
  128: [
    { BM: 64, BN: 128, TM: 8, G: 16, DK: 16, NV: 32, wide: true },
    { BM: 64, BN: 128, TM: 8, G: 16, DK: 16, NV: 32, wide: true, unroll: 4 },
    { BM: 128, BN: 128, TM: 8, G: 16, DK: 16, NV: 32, wide: true },
    { BM: 128, BN: 64, TM: 4, G: 8, DK: 16, NV: 16, wide: true },
  ],
};

const key = (c: FlexForwardConfig) =>
  `${c.wide ? "wide" : "narrow"} BM${c.BM} BN${c.BN} TM${c.TM} G${c.G} DK${c.DK} NV${c.NV}${c.unroll ? ` U${c.unroll}` : ""}${c.subgroups ? " sg" : ""}`;
function configsFor(D: number): FlexForwardConfig[] {
  const heur = chooseFlexConfig({ D, Dv: D, QB: 128, KB: 128, identityScore: true }, caps);
  const fixed = Deno.env.get("FWD_TILES");
  const shapes: Shape[] = fixed ? JSON.parse(fixed) : SHAPES[D] ?? [];
  const out = [heur];
  for (const s of shapes) {
    const c: FlexForwardConfig = { family: "portable", D, Dv: D, identityScore: true, subgroups: sg(s.G), ...s };
    const why = c.wide ? flexForwardWideProblem(c) : undefined;
    const smem = flexForwardSmemBytes(c);
    if (why || smem > caps.limits.maxComputeWorkgroupStorageSize || flexForwardThreads(c) > caps.limits.maxComputeInvocationsPerWorkgroup) {
      console.log(`D${D} ${key(c)} skipped: ${why ?? `smem ${smem} / threads ${flexForwardThreads(c)}`}`);
      continue;
    }
    if (key(c) !== key(heur)) out.push(c);
  }
  return out;
}

// the FMA peak through the same provider, same process
{
  const probe = fmaProbe();
  const [ms] = await best([probe]);
  console.log(`peaks: FMA f32 ${(fmaProbeFlops(probe) / (ms * 1e-3) / 1e12).toFixed(1)} TF/s (${ms.toFixed(3)} ms)`);
}

const results: { D: number; key: string; noop?: number; causal?: number; softcap?: number; heur: boolean }[] = [];
const softcap20 = (s: Expr) => s.div(20).tanh().mul(20);
outer: for (const D of Ds) {
  const q = randn([B, H, S, D], { seed: 1 }), k = randn([B, H, S, D], { seed: 2 }), v = randn([B, H, S, D], { seed: 3 });
  const causal = await createBlockMask(causalMask, null, null, S, S);
  const density = 1 - causal.sparsity() / 100;
  const configs = configsFor(D);
  for (const cfg of configs) {
    if (performance.now() - t0 > budgetMs) { console.log(`time budget spent: stopping before D${D} ${key(cfg)}`); break outer; }
    flexConfigOverride.pick = (p) => (p.D === cfg.D && p.Dv === cfg.Dv ? { ...cfg, identityScore: p.identityScore } : undefined);
    const row: (typeof results)[number] = { D, key: key(cfg), heur: cfg === configs[0] };
    try {
      const check = makeCall({ Sq: 300, D, options: { blockMask: blockMaskOf((_b, _h, qi, kv) => qi.ge(kv), 1, 1, 300, 300) } });
      const c0 = performance.now();
      const r = await runAgainstOracle(check);
      const checkMs = performance.now() - c0;
      if (!(r.errOut <= 1e-4 && r.errLse <= 1e-4)) { console.log(`D${D} ${key(cfg)} WRONG errOut ${r.errOut} errLse ${r.errLse}`); continue; }
      for (const [name, blockMask, dens] of [["noop", undefined, 1], ["causal", causal, density], ["softcap", causal, density]] as const) {
        const fwd = flexAttention(q, k, v, { blockMask, scoreMod: name === "softcap" ? softcap20 : undefined });
        const [ms, firstMs] = await best([fwd]);
        const tf = (4 * B * H * S * S * D * dens) / (ms * 1e-3) / 1e12;
        row[name] = ms;
        console.log(`D${D} ${name.padEnd(6)} ${key(cfg).padEnd(40)} ${ms.toFixed(3).padStart(8)} ms ${tf.toFixed(2).padStart(6)} TF/s` +
          `${row.heur ? "  (heuristic)" : ""}  smem ${flexForwardSmemBytes(cfg)} thr ${flexForwardThreads(cfg)}` +
          `  oracle ${r.errOut.toExponential(1)}/${r.errLse.toExponential(1)} (check ${checkMs.toFixed(0)} ms, first launch ${firstMs.toFixed(0)} ms)`);
      }
      results.push(row);
    } catch (e) {
      console.log(`D${D} ${key(cfg)} FAILED ${(e as Error).message.slice(0, 300)}`);
    }
  }
}
flexConfigOverride.pick = undefined;
console.log("\nbest per D (by noop + causal):");
for (const D of Ds) {
  const rows = results.filter((r) => r.D === D && r.noop && r.causal).sort((a, b) => a.noop! + a.causal! - b.noop! - b.causal!);
  const h = results.find((r) => r.D === D && r.heur);
  for (const r of rows.slice(0, 3)) {
    console.log(`D${D} ${r.key.padEnd(40)} noop ${r.noop!.toFixed(3)} causal ${r.causal!.toFixed(3)} softcap ${r.softcap?.toFixed(3)} ms` +
      (h?.noop ? `  (${(h.noop / r.noop!).toFixed(2)}× / ${(h.causal! / r.causal!).toFixed(2)}× / ${(h.softcap! / r.softcap!).toFixed(2)}× the heuristic)` : ""));
  }
}
console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
Deno.exit(0);
