/**
 * The config space of the portable backward kernels and a heuristic pick from the device's limits
 * (workgroup storage 16 KiB minimum, 32 KiB lavapipe, 48 KiB H100). `kernelOptions.blockM / blockN` are the
 * forward's tiles; the backward chooses its own (its owner / streamed roles swap between dq and dk/dv).
 */
import type { Capabilities } from "./capabilities.ts";
import { type FlexBwdConfig, type FlexBwdMode, flexBwdSmemBytes, flexBwdThreads } from "../../kernels/flex_backward.ts";
import { NoConfigFits } from "../errors.ts";

export interface FlexBwdProblem {
  readonly D: number;
  readonly Dv: number;
  /** Block size of the owner rows (q for dq, kv for dk/dv) and of the streamed ones. */
  readonly ownerBlock: number;
  readonly streamBlock: number;
  /** Captured-tensor reads with a gradient (dq mode, or dkdv storing dS'): their emitted pairs take workgroup memory. */
  readonly capReads?: number;
  /** dkdv with a capture index free of q and score: one owner row's pairs per merge round (flexBwdSmemBytes capRowRounds). */
  readonly capRowRounds?: boolean;
  /**
   * dkdv: the owner blocks' streamed lists differ in length (the longest > 1.5 × the mean: causal, documents), so
   * a launch ends on its longest workgroups and smaller owner tiles (more, shorter workgroups) balance it better.
   */
  readonly unevenOwners?: boolean;
}

const TILES = [64, 32, 16, 8, 4];

function divisorsUpTo(n: number, max: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(n, max); d++) if (n % d === 0) out.push(d);
  return out;
}

export function flexBwdCandidates(mode: FlexBwdMode, p: FlexBwdProblem, caps: Capabilities): FlexBwdConfig[] {
  const lim = caps.limits;
  const maxThreads = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const bas = [...new Set([...TILES, ...divisorsUpTo(p.ownerBlock, 64)])];
  const bbs = [...new Set([...TILES, ...divisorsUpTo(p.streamBlock, 64)])].filter((n) => n % 4 === 0);
  const accWidth = mode === "dq" ? p.D : p.D + p.Dv;
  // a software adapter compiles the loop form several times faster (kernels/flex_backward.ts FlexBwdConfig.loops); GPUs run unrolled
  const loops = caps.software ? { loops: true } : {};
  const out: FlexBwdConfig[] = [];
  for (const BA of bas) for (const TA of [4, 2, 1] as const) {
    if (BA % TA !== 0) continue;
    for (const G of [16, 8, 4, 2, 1]) {
      if (p.D % (4 * G) !== 0 || p.Dv % (4 * G) !== 0) continue;
      if (flexBwdThreads({ BA, TA, G }) > maxThreads) continue;
      if (TA * accWidth / G > 128) continue; // accumulator registers per thread
      for (const BB of bbs) {
        if (BB % (4 * G) !== 0 || 2 * TA * (BB / G) > 64) continue;
        const dks = [32, 16, 8, 4].filter((dk) => p.D % dk === 0 && p.Dv % dk === 0);
        const nvs = [32, 16, 8, 4, 2, 1].filter((nv) => BB % nv === 0);
        let found: FlexBwdConfig | undefined;
        for (const DK of dks) {
          const NV = nvs.find((nv) => flexBwdSmemBytes({ D: p.D, Dv: p.Dv, BA, TA, G, BB, DK, NV: nv }, mode, p.capReads ?? 0, p.capRowRounds) <= lim.maxComputeWorkgroupStorageSize);
          if (NV !== undefined) { found = { family: "portable", D: p.D, Dv: p.Dv, BA, TA, G, BB, DK, NV, ...loops }; break; }
        }
        if (found) out.push(found);
      }
    }
  }
  return out;
}

/** Full tiles first (no rows past a mask block), then reuse per load, then occupancy. */
export function flexBwdScore(c: FlexBwdConfig, p: FlexBwdProblem): number {
  const util = (block: number, tile: number) => block / (Math.ceil(block / tile) * tile);
  const threads = flexBwdThreads(c);
  const threadScore = threads >= 128 ? (threads <= 256 ? 1 : 0.9) : threads >= 64 ? 0.8 : threads >= 32 ? 0.6 : 0.4;
  const reuse = c.TA === 4 ? 1 : c.TA === 2 ? 0.75 : 0.5;
  const size = Math.sqrt(Math.min(c.BA, 64) / 64) * Math.sqrt(Math.min(c.BB, 32) / 32);
  const chunk = Math.min(c.DK, 16) / 16;
  const nv = Math.min(c.NV, 16) / 16;
  return util(p.ownerBlock, c.BA) ** 2 * util(p.streamBlock, c.BB) ** 2 * threadScore * reuse * size * (0.8 + 0.2 * chunk) *
    (0.8 + 0.2 * nv);
}

/**
 * dK/dV shapes the H200 timed fastest (B4 H16 S4096 D64 f32, the dS' path, each kernel alone, ms), the first that fits:
 *   even lists (noop):     session 8: BA128 TA4 G8 BB64 DK16 NV16 shared, one tile array 23.3 (BB32 two arrays 28.2; one
 *                          array at BB32: 28.7, DK32 27.2); session 7: BA128 TA4 G8 BB32 DK16 NV16 28.3 (the heuristic's 31.0)
 *   uneven lists (causal): session 8: BA64 TA4 G16 BB128 DK16 NV32 shared, one tile array 13.1 (BB64 two arrays 15.1; one
 *                          array at BB64: 14.7, DK32 14.3); session 7: BA64 TA4 G16 BB64 DK16 NV32 shared 15.1 (heuristic 15.4)
 * One tile array (FlexBwdConfig.oneTile) is what leaves room for the 4 × 8 register tile (twice BB) in 48 KiB.
 * Taken at D = Dv = 64 (the shapes measured) where the blocks and the device's limits admit them; else the heuristic.
 */
const DKDV_MEASURED: Record<"even" | "uneven", Omit<FlexBwdConfig, "family" | "D" | "Dv">[]> = {
  even: [{ BA: 128, TA: 4, G: 8, BB: 64, DK: 16, NV: 16, shareStage: true, oneTile: true }, { BA: 128, TA: 4, G: 8, BB: 32, DK: 16, NV: 16 }],
  uneven: [
    { BA: 64, TA: 4, G: 16, BB: 128, DK: 16, NV: 32, shareStage: true, oneTile: true },
    { BA: 64, TA: 4, G: 16, BB: 64, DK: 16, NV: 32, shareStage: true },
  ],
};

function measuredDkdv(p: FlexBwdProblem, caps: Capabilities): FlexBwdConfig | null {
  if (p.D !== 64 || p.Dv !== 64) return null;
  const lim = caps.limits;
  for (const s of DKDV_MEASURED[p.unevenOwners ? "uneven" : "even"]) {
    const c: FlexBwdConfig = { family: "portable", D: p.D, Dv: p.Dv, ...s, ...(caps.software ? { loops: true } : {}) };
    const fits = p.ownerBlock % c.BA === 0 && p.streamBlock % c.BB === 0 &&
      flexBwdThreads(c) <= Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX) &&
      flexBwdSmemBytes(c, "dkdv", p.capReads ?? 0, p.capRowRounds) <= lim.maxComputeWorkgroupStorageSize;
    if (fits) return c;
  }
  return null;
}

export function chooseFlexBwdConfig(mode: FlexBwdMode, p: FlexBwdProblem, caps: Capabilities): FlexBwdConfig {
  const measured = mode === "dkdv" ? measuredDkdv(p, caps) : null;
  if (measured) return measured;
  const cands = flexBwdCandidates(mode, p, caps);
  if (cands.length === 0) {
    throw new NoConfigFits({
      message: `no backward-kernel (${mode}) config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.ownerBlock}/${p.streamBlock}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B, ${caps.limits.maxComputeInvocationsPerWorkgroup} invocations`,
    });
  }
  let best = cands[0], bestScore = -1;
  for (const c of cands) {
    const s = flexBwdScore(c, p);
    if (s > bestScore) { best = c; bestScore = s; }
  }
  return best;
}
