/**
 * The config space of the portable forward kernel and the heuristic that picks one from the device's
 * limits (no timing here; an autotuner can rank `flexConfigCandidates` later). The user's
 * `kernelOptions.blockM / blockN` win when valid (PyTorch's setdefault rule).
 */
import type { Capabilities } from "./capabilities.ts";
import type { KernelOptions } from "../attention/flex_attention.ts";
import { type FlexForwardConfig, flexForwardSmemBytes, flexForwardThreads } from "../../kernels/flex_forward.ts";
import { flexForwardWideProblem } from "../../kernels/flex_forward_wide.ts";
import { InvalidArgument, NoConfigFits } from "../errors.ts";

export interface FlexProblem {
  readonly D: number;
  readonly Dv: number;
  /** The BlockMask's block sizes. */
  readonly QB: number;
  readonly KB: number;
  readonly identityScore: boolean;
  /** The score mod reads q or kv (a bias that changes along a row, e.g. ALiBi): a row's max may keep growing long
   * after its first tiles, so the tensor forward's optimisticMax shapes (a second walk where it does) are left out. */
  readonly positionalScore?: boolean;
}

const TILE_SIZES = [128, 64, 32, 16, 8, 4];

function divisorsUpTo(n: number, max: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(n, max); d++) if (n % d === 0) out.push(d);
  return out;
}

/** Every config that is valid for the problem and fits the device. */
export function flexConfigCandidates(p: FlexProblem, caps: Capabilities, opts: KernelOptions = {}): FlexForwardConfig[] {
  const lim = caps.limits;
  const maxThreads = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const bms = opts.blockM !== undefined ? [opts.blockM] : [...new Set([...TILE_SIZES, ...divisorsUpTo(p.QB, 128)])];
  const bns = opts.blockN !== undefined
    ? [opts.blockN]
    : [...new Set([...TILE_SIZES, ...divisorsUpTo(p.KB, 128)])].filter((n) => n % 4 === 0);
  const out: FlexForwardConfig[] = [];
  for (const BM of bms) for (const TM of [4, 2, 1] as const) {
    if (BM % TM !== 0) continue;
    for (const BN of bns) for (const G of [16, 8, 4, 2, 1]) {
      if (BN % (4 * G) !== 0 || p.Dv % (4 * G) !== 0) continue;
      const threads = flexForwardThreads({ BM, TM, G });
      if (threads > maxThreads) continue;
      // registers per thread: scores TM·BN/G and accumulators TM·Dv/G
      if (TM * (BN / G) > 64 || TM * (p.Dv / G) > 128) continue;
      // subgroup shuffles for the row reductions when every subgroup spans whole row groups
      const subgroups = caps.features.has("subgroups") && (caps.subgroupMinSize ?? 0) >= G && (caps.subgroupMinSize ?? 0) % G === 0;
      for (const DK of [p.D, 32, 16, 8, 4]) {
        if (p.D % DK !== 0 || (DK !== p.D && DK > 32)) continue;
        const nvs = [128, 64, 32, 16, 8, 4, 2, 1].filter((nv) => nv <= BN && BN % nv === 0);
        const fits = (nv: number) =>
          flexForwardSmemBytes({ D: p.D, Dv: p.Dv, BM, BN, TM, G, DK, NV: nv, subgroups }) <= lim.maxComputeWorkgroupStorageSize;
        const NV = nvs.find(fits);
        if (NV === undefined) continue;
        out.push({ family: "portable", D: p.D, Dv: p.Dv, BM, BN, TM, G, DK, NV, identityScore: p.identityScore, subgroups });
      }
    }
  }
  // software adapters compile the wide tiles' unrolled registers for tens of seconds: narrow shapes only there
  return caps.software ? out : [...out, ...wideCandidates(p, caps, bms, bns, maxThreads)];
}

/** The wide register tiles (kernels/flex_forward.ts flexForwardWideWgsl): 4 or 8 rows by BLOCK_N / G columns a thread,
 * at most 64 scores and 64 accumulators a thread; per (shape, DK) the widest V chunk that fits. */
function wideCandidates(p: FlexProblem, caps: Capabilities, bms: number[], bns: number[], maxThreads: number): FlexForwardConfig[] {
  const out: FlexForwardConfig[] = [];
  for (const BM of bms) for (const TM of [8, 4] as const) for (const BN of bns) for (const G of [16, 8, 4]) {
    if (BM % TM !== 0 || BN % (4 * G) !== 0 || p.Dv % (4 * G) !== 0) continue;
    if (TM * (BN / G) > 64 || TM * (p.Dv / G) > 64 || flexForwardThreads({ BM, TM, G }) > maxThreads) continue;
    const subgroups = caps.features.has("subgroups") && (caps.subgroupMinSize ?? 0) >= G && (caps.subgroupMinSize ?? 0) % G === 0;
    for (const DK of new Set([p.D, 32, 16])) {
      if (p.D % DK !== 0 || DK % 4 !== 0 || DK > p.D) continue;
      const NV = [128, 64, 32, 16, 8, 4].find((NV) => {
        const c = { D: p.D, Dv: p.Dv, BM, BN, TM, G, DK, NV, subgroups, wide: true };
        return flexForwardWideProblem(c) === undefined && flexForwardSmemBytes(c) <= caps.limits.maxComputeWorkgroupStorageSize;
      });
      if (NV === undefined) continue;
      out.push({ family: "portable", D: p.D, Dv: p.Dv, BM, BN, TM, G, DK, NV, identityScore: p.identityScore, subgroups, wide: true });
    }
  }
  return out;
}

/** A heuristic rank: full tiles first (no rows/columns past a mask block), then reuse per load, few staging
 * chunks (barriers), 256 threads. Narrow tiles calibrated on the H100 (bench/fwd_sweep.ts): D=64 → BM64 BN64 G16 with
 * Q resident; wide tiles on the H200 (wideScore). */
export function flexConfigScore(c: FlexForwardConfig, p: FlexProblem): number {
  if (c.wide) return wideScore(c, p);
  const util = (block: number, tile: number) => block / (Math.ceil(block / tile) * tile);
  const threads = flexForwardThreads(c);
  const threadScore = threads === 256 ? 1 : threads >= 128 ? (threads < 256 ? 0.9 : 0.85) : threads >= 64 ? 0.8 : threads >= 32 ? 0.6 : 0.4;
  const reuse = c.TM === 4 ? 1 : c.TM === 2 ? 0.7 : 0.5;
  const size = Math.sqrt(Math.min(c.BM, 64) / 64) * Math.sqrt(Math.min(c.BN, 64) / 64);
  // two barriers per staged chunk (K: D / DK, V: BLOCK_N / NV per tile); a resident Q is also never reloaded
  const resident = c.DK === c.D ? 1.1 : 1;
  const chunks = 1 / (1 + 0.04 * (c.D / c.DK + c.BN / c.NV));
  const regs = c.TM * (c.Dv / c.G) > 64 ? 0.8 : 1;
  return util(p.QB, c.BM) ** 2 * util(p.KB, c.BN) ** 2 * threadScore * reuse * size * resident * regs * chunks;
}

/**
 * Wide tiles, calibrated on the H200 (bench/portable_fwd_tiles.ts, session 9; narrow picks score ≤ ≈ 1.02): of 13 wide
 * shapes, BM128 BN128 TM8 G16 DK16 NV32 with subgroup reductions won — D 64: 10.52 / 5.87 ms noop / causal vs the
 * narrow pick's 11.49 / 6.04; D 128: 17.97 / 9.84 vs 25.69 / 13.44 — while 64- or 128-thread ones lost (to 2.2×).
 * So exactly that config is preferred, and only where it was measured: D = Dv = 64 or 128, whole 128-blocks, the
 * identity score mod (a score mod's 16 inlined copies a thread made its pipeline compile ≈ 3× slower: a new mod's
 * kernel ready ≤ 250 ms). Every other wide config ranks below the narrow ones (the tuner reaches it past them).
 */
function wideScore(c: FlexForwardConfig, p: FlexProblem): number {
  const util = (block: number, tile: number) => block / (Math.ceil(block / tile) * tile);
  const threads = flexForwardThreads(c);
  const measured = p.identityScore && p.D === p.Dv && (p.D === 64 || p.D === 128) && c.subgroups === true &&
    c.BM === 128 && c.BN === 128 && c.TM === 8 && c.G === 16 && c.DK === 16 && c.NV === 32 && p.QB % 128 === 0 && p.KB % 128 === 0;
  if (measured) return 1.2;
  const tile = c.TM === 8 && c.BN / c.G === 8 ? 1 : c.TM === 8 ? 0.85 : 0.8;
  const threadScore = threads === 256 ? 1 : threads === 512 ? 0.85 : threads === 128 ? 0.75 : 0.5;
  return 1e-3 * util(p.QB, c.BM) ** 2 * util(p.KB, c.BN) ** 2 * tile * threadScore;
}

/**
 * The configs `autotune: "max"` times: the heuristic's best `k`, one per distinct (BM, BN, TM, G) shape so the
 * search spans tile shapes rather than staging variants of one. The heuristic's own pick is always first.
 */
export function flexTuneCandidates(p: FlexProblem, caps: Capabilities, opts: KernelOptions = {}, k = 8): FlexForwardConfig[] {
  const ranked = flexConfigCandidates(p, caps, opts)
    .map((c) => ({ c, s: flexConfigScore(c, p) }))
    .sort((a, b) => b.s - a.s);
  const seen = new Set<string>();
  const out: FlexForwardConfig[] = [];
  for (const { c } of ranked) {
    const shape = `${c.BM}/${c.BN}/${c.TM}/${c.G}${c.wide ? "/wide" : ""}`;
    if (seen.has(shape)) continue;
    seen.add(shape);
    out.push(c);
    if (out.length === k) break;
  }
  return out;
}

/** Bench / tuning hook: when `pick` returns a config, it replaces the heuristic choice (bench/fwd_sweep.ts). */
export const flexConfigOverride: { pick?: (p: FlexProblem, caps: Capabilities) => FlexForwardConfig | undefined } = {};

/** The chosen config; `NoConfigFits` when nothing fits, `InvalidArgument` for an unusable user override. */
export function chooseFlexConfig(p: FlexProblem, caps: Capabilities, opts: KernelOptions = {}): FlexForwardConfig {
  if (opts.blockM !== undefined && (!Number.isInteger(opts.blockM) || opts.blockM < 1 || p.QB % opts.blockM !== 0)) {
    throw new InvalidArgument({ message: `kernelOptions.blockM = ${opts.blockM} must be a positive divisor of the BlockMask's q block size ${p.QB}` });
  }
  if (opts.blockN !== undefined && (!Number.isInteger(opts.blockN) || opts.blockN < 4 || opts.blockN % 4 !== 0 || p.KB % opts.blockN !== 0)) {
    throw new InvalidArgument({
      message: `kernelOptions.blockN = ${opts.blockN} must be a multiple of 4 that divides the BlockMask's kv block size ${p.KB}`,
    });
  }
  const forced = flexConfigOverride.pick?.(p, caps);
  if (forced) return forced;
  const cands = flexConfigCandidates(p, caps, opts);
  if (cands.length === 0) {
    throw new NoConfigFits({
      message: `no forward-kernel config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.QB}×${p.KB}` +
        `${opts.blockM ? `, blockM=${opts.blockM}` : ""}${opts.blockN ? `, blockN=${opts.blockN}` : ""}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B, ${caps.limits.maxComputeInvocationsPerWorkgroup} invocations`,
    });
  }
  let best = cands[0], bestScore = -1;
  for (const c of cands) {
    const s = flexConfigScore(c, p);
    if (s > bestScore) { best = c; bestScore = s; }
  }
  return best;
}
