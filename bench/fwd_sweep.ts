/**
 * Times forward-kernel configs on the device (B=4 H=16 S=4096 by default, noop and causal) and checks each
 * config against the float64 oracle on a small odd-length causal case first. Prints one line per run and
 * the best config per (D, mask). Each time is the minimum of 3 profiles of ITERS launches: the device's clocks
 * and Dawn's completion callbacks make single samples swing by 2-10× (the "causal slower than noop" reports).
 *
 *   deno run -A bench/fwd_sweep.ts                 sweep (FWD_SWEEP_D=64,128  FWD_SWEEP_S=4096  FWD_SWEEP_ITERS=5)
 *   FWD_SWEEP_ONLY=heuristic deno run -A ...       only the heuristic's choice
 *   FWD_SWEEP_CONFIG='{"64":{"BM":128,"BN":64,"TM":4,"G":8,"DK":8,"NV":16}}'   exactly this config per D
 *   FWD_SWEEP_PICK="BM64 BN64 TM4 G16,BM128 BN32"   only grid configs whose key contains one of these
 * The grid is of narrow tiles; the wide register tiles have their own bench (bench/portable_fwd_tiles.ts).
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, flexAttention, randn } from "../mod.ts";
import { chooseFlexConfig, flexConfigOverride, type FlexProblem } from "../lib/lower/flex_config.ts";
import { type FlexForwardConfig, flexForwardSmemBytes, flexForwardThreads } from "../kernels/flex_forward.ts";
import { gpu } from "../tests/kernels/device.ts";
import { blockMaskOf, makeCall, runAgainstOracle } from "../tests/kernels/helpers.ts";
import type { Capabilities } from "../lib/lower/capabilities.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const Ds = env("FWD_SWEEP_D", "64,128").split(",").map(Number);
const S = Number(env("FWD_SWEEP_S", "4096"));
const iters = Number(env("FWD_SWEEP_ITERS", "5"));
const only = env("FWD_SWEEP_ONLY", "");
const [B, H] = [4, 16];
if (typeof gpu === "string" || !gpu) throw new Error(`no GPU: ${gpu}`);
const caps: Capabilities = gpu.caps;
console.log("limits", JSON.stringify(caps.limits), "subgroups", caps.subgroupMinSize, caps.subgroupMaxSize);

/** Hand-picked grid around the register-tiled designs; every entry is checked for fit. */
function grid(D: number): FlexForwardConfig[] {
  const out: FlexForwardConfig[] = [];
  const lim = caps.limits;
  for (const BM of [64, 128]) for (const TM of [4] as const) for (const G of [4, 8, 16]) for (const BN of [32, 64, 128]) {
    if (BN % (4 * G) || D % (4 * G)) continue;
    if (TM * (BN / G) > 64 || TM * (D / G) > 128) continue;
    if (flexForwardThreads({ BM, TM, G }) > lim.maxComputeInvocationsPerWorkgroup) continue;
    const subgroups = (caps.subgroupMinSize ?? 0) >= G && caps.features.has("subgroups");
    for (const DK of [D, 32, 16]) {
      if (D % DK || (DK === 16 && D > 64)) continue;
      const NV = [128, 64, 32, 16, 8].filter((n) => n <= BN && BN % n === 0)
        .find((nv) => flexForwardSmemBytes({ D, Dv: D, BM, BN, TM, G, DK, NV: nv, subgroups }) <= lim.maxComputeWorkgroupStorageSize);
      if (NV === undefined) continue;
      out.push({ family: "portable", D, Dv: D, BM, BN, TM, G, DK, NV, identityScore: true, subgroups });
    }
  }
  return out;
}

const key = (c: FlexForwardConfig) =>
  `${c.wide ? "wide " : ""}BM${c.BM} BN${c.BN} TM${c.TM} G${c.G} DK${c.DK} NV${c.NV}${c.unroll ? ` U${c.unroll}` : ""}${c.subgroups ? " sg" : ""}`;
const best: Record<string, [number, string]> = {};

for (const D of Ds) {
  const heur = chooseFlexConfig({ D, Dv: D, QB: 128, KB: 128, identityScore: true }, caps);
  const picks = env("FWD_SWEEP_PICK", "").split(",").filter(Boolean);
  const picked = grid(D).filter((c) => key(c) !== key(heur) && (picks.length === 0 || picks.some((k) => key(c).includes(k))));
  const fixed = JSON.parse(env("FWD_SWEEP_CONFIG", "{}"))[String(D)];
  const configs = fixed ? [{ family: "portable", D, Dv: D, identityScore: true, ...fixed } as FlexForwardConfig]
    : only === "heuristic" ? [heur] : [heur, ...picked];
  const q = randn([B, H, S, D], { seed: 1 }), k = randn([B, H, S, D], { seed: 2 }), v = randn([B, H, S, D], { seed: 3 });
  const causal = await createBlockMask(causalMask, null, null, S, S);
  const density = 1 - causal.sparsity() / 100;
  for (const cfg of configs) {
    flexConfigOverride.pick = (p: FlexProblem) => (p.D === cfg.D && p.Dv === cfg.Dv ? { ...cfg, identityScore: p.identityScore } : undefined);
    try {
      const small = makeCall({ Sq: 300, D, options: { blockMask: blockMaskOf((_b, _h, qi, kv) => qi.ge(kv), 1, 1, 300, 300) } });
      const r = await runAgainstOracle(small);
      const ok = r.errOut <= 1e-4 && r.errLse <= 1e-4;
      if (!ok) { console.log(`D${D} ${key(cfg)} WRONG errOut ${r.errOut} errLse ${r.errLse}`); continue; }
      for (const [name, blockMask, dens] of [["noop", undefined, 1], ["causal", causal, density]] as const) {
        const fwd = flexAttention(q, k, v, { blockMask });
        // min of 3: the first runs after a compile pause find the clocks low
        let ms = Infinity;
        for (let rep = 0; rep < 3; rep++) ms = Math.min(ms, await Effect.runPromise(gpu.executor.profile([fwd], iters)));
        const tf = (4 * B * H * S * S * D * dens) / (ms * 1e-3) / 1e12;
        const tag = `D${D} ${name}`;
        console.log(`${tag.padEnd(12)} ${key(cfg).padEnd(34)} ${ms.toFixed(2).padStart(8)} ms ${tf.toFixed(2).padStart(6)} TF/s` +
          `${cfg === heur ? "  (heuristic)" : ""} smem ${flexForwardSmemBytes(cfg)} thr ${flexForwardThreads(cfg)}`);
        if (!best[tag] || ms < best[tag][0]) best[tag] = [ms, `${key(cfg)} ${tf.toFixed(2)} TF/s`];
      }
    } catch (e) {
      console.log(`D${D} ${key(cfg)} FAILED ${(e as Error).message.slice(0, 200)}`);
    }
  }
}
flexConfigOverride.pick = undefined;
console.log("\nbest:");
for (const [tag, [ms, what]] of Object.entries(best)) console.log(`${tag.padEnd(12)} ${ms.toFixed(2)} ms  ${what}`);

