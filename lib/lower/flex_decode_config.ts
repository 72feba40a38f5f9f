/**
 * When the decode tile (kernels/flex_decode.ts) runs instead of the query-tile forward, its config, and its
 * split-KV factor. Decoding is bandwidth-bound: the config maximizes K / V loads in flight per thread within a
 * register budget, and the splits give the GPU enough workgroups to keep its memory busy.
 * Lengths stay uniforms: a new Skv (every decode step) compiles nothing; the tile's row count follows the packed
 * rows Sq × (heads packed) in powers of two, so query lengths 1…16 share at most five kernels per mod and head dim.
 */
import type { Capabilities } from "./capabilities.ts";
import type { FlexCall } from "../attention/flex_attention.ts";
import { type FlexDecodeConfig, flexDecodeShape, flexDecodeSmemBytes } from "../../kernels/flex_decode.ts";
import { IDENTITY_SCORE } from "../mods/trace.ts";
import { pinnedSplits } from "./split_kv.ts";

/** Query rows at or below which the decode tile is chosen (PyTorch's flex decoding: q length ≤ 128 / GQA group). */
export const DECODE_MAX_SQ = 16;
/** Rows of one workgroup at most (the packed rows of a GQA group beyond it take further row tiles). */
const MAX_RT = 16;
/** 32-bit registers per thread for q, accumulators and the K / V in flight (beyond it NVIDIA compilers spill). */
const REG_BUDGET = 160;
/**
 * Bytes in flight per thread per step past which more buy nothing measurable: 16 vec4<f32> (f32 KPS 4 at D 128
 * read at 80 % of the copy bandwidth on the H200). f16 reaches it with KPS 8: counted in vec4 units as before,
 * f16 KPS 4 held half the bytes and read at 48 %; KPS 8 reads at 51–54 % there and at 1×16×16×1×32768×64 (KPS 4:
 * 46 %), same run (bench/RESULTS.md, session 5).
 */
const INFLIGHT_CAP_BYTES = 256;

/**
 * Bench / test switch: `enabled = false` turns the decode tile off everywhere (the query-tile forward runs);
 * `override` replaces fields of the chosen config (bench/decode.ts sweeps them; no validation beyond the kernel's).
 */
export const flexDecodeSwitch: { enabled: boolean; override?: Partial<Pick<FlexDecodeConfig, "RT" | "L" | "KPS" | "NT" | "prefetch">> } = { enabled: true };

export interface DecodeProblem {
  readonly D: number;
  readonly Dv: number;
  readonly dtype: "f32" | "f16";
  /** Query rows of one packed unit: Sq × the heads packed (hp). */
  readonly units: number;
  readonly identityScore: boolean;
  /**
   * The BlockMask's kv block size. A step (NT / L slots × KPS keys) longer than a block leaves slots without keys
   * and runs the edge path (bounds, mask) every step: the config keeps its step within a block where it can.
   */
  readonly KB: number;
}

/** Heads packed per unit: the whole GQA group when the BlockMask is the same for every head (their block lists agree). */
export function headsPacked(call: FlexCall): number {
  const mH = call.blockMask.kvIndices.shape[1];
  return mH === 1 ? call.dims.Hq / call.dims.Hkv : 1;
}

/** The decode config of a call, or undefined when the query-tile forward should run (not a decode shape, options that pin it). */
export function chooseFlexDecode(call: FlexCall, caps: Capabilities): FlexDecodeConfig | undefined {
  if (!flexDecodeSwitch.enabled) return undefined;
  const o = call.kernelOptions;
  // the user pinned the query-tile kernel's shape (blockM / blockN) or the tensor family; the decode tile itself is portable
  if (o.blockM !== undefined || o.blockN !== undefined || o.family === "tensor") return undefined;
  if (call.dropout || call.aux) return undefined; // dropout / maxScore live in the query-tile forward only
  const { Sq, D, Dv } = call.dims;
  if (Sq > DECODE_MAX_SQ || call.blockMask.kvIndices.shape[2] !== 1) return undefined; // one q block
  const dtype = call.q.dtype === "f16" ? "f16" : "f32";
  const KB = call.blockMask.blockSize[1];
  const c = decodeConfig({ D, Dv, dtype, units: Sq * headsPacked(call), identityScore: call.scoreMod.hash === IDENTITY_SCORE.hash, KB }, caps);
  return c && flexDecodeSwitch.override ? { ...c, ...flexDecodeSwitch.override } : c;
}

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

interface Rank { readonly fits: boolean; readonly inflight: number; readonly NT: number; readonly regs: number }

/** Best config for the problem on the device (undefined when none fits its limits). */
export function decodeConfig(p: DecodeProblem, caps: Capabilities): FlexDecodeConfig | undefined {
  const lim = caps.limits;
  const maxNT = Math.min(256, lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const sgMin = caps.subgroupMinSize ?? 0;
  const subgroups = caps.features.has("subgroups") && sgMin >= 2 && maxNT % sgMin === 0;
  const SG = subgroups ? sgMin : 1;
  // without subgroups the slots merge one per round through workgroup memory: few slots (64 threads, ≥ 4 lanes);
  // with them smaller workgroups too, so that a step of 8 keys a slot fits a kv block (the splits make up the count)
  const NTs = subgroups ? [maxNT, maxNT / 2, maxNT / 4].filter((n) => Number.isInteger(n) && n >= Math.max(SG, 64) && n % SG === 0) : [Math.min(64, maxNT)];
  const [minL, maxL] = subgroups ? [1, Math.min(SG, 32)] : [4, 8];
  const better = (a: Rank, b: Rank) => a.fits !== b.fits ? a.fits : a.inflight !== b.inflight ? a.inflight > b.inflight : a.NT !== b.NT ? a.NT > b.NT : a.regs < b.regs;
  for (let RT = Math.min(pow2ceil(p.units), MAX_RT); RT >= 1; RT /= 2) {
    let best: (Rank & { c: FlexDecodeConfig }) | undefined;
    for (const NT of NTs) {
      for (let L = minL; L <= maxL; L *= 2) {
        if (NT % L !== 0) continue;
        // f16 may take 8 keys a step: its packed units hold half the bytes, so it needs twice the keys for the same bytes
        for (const KPS of p.dtype === "f16" ? [8, 4, 2, 1] : [4, 2, 1]) {
          const base = { D: p.D, Dv: p.Dv, dtype: p.dtype, RT, L, KPS };
          const s = flexDecodeShape(base);
          if (s.regs > REG_BUDGET) continue;
          const c: FlexDecodeConfig = { ...base, NT, subgroups, SG, identityScore: p.identityScore };
          if (flexDecodeSmemBytes(c) > lim.maxComputeWorkgroupStorageSize) continue;
          // a step within a block, then most loads in flight, then the larger workgroup (fewer slot merges), then
          // fewest registers (occupancy); at equal rank the fewest lanes per key (fewer shuffles) came first.
          // H200, 8×16×16×4×8192×64 f16 (session 6): L8 KPS8 at 256 threads (256-key steps over 128-key blocks)
          // 40.1 % of copy; at 128 threads, 2 splits 68.8 % (1 / 4 / 8 splits 50.7 / 66.4 / 60.2 %); L8 KPS4 at
          // 256 threads 58.4 %; L4 KPS4 17.2 %, 64 threads 14.9 %, 2 row tiles 10.8 %
          const r: Rank = { fits: (NT / L) * KPS <= p.KB, inflight: Math.min(INFLIGHT_CAP_BYTES, s.inflightBytes), NT, regs: s.regs };
          if (!best || better(r, best)) best = { ...r, c };
        }
      }
    }
    if (best) return best.c;
  }
  return undefined;
}

/**
 * Workgroups the splits aim for: about one per SM of an H100/H200-class GPU. Measured on the H200 (bench/decode.ts,
 * B1 H32/8 Sq1 Skv32768 D128): 16 splits (128 workgroups) read at 80 % (f32) / 48 % (f16) of the copy bandwidth,
 * 32 splits at 64 / 39 %, 128 splits at 34 / 19 %: each workgroup's prologue and slot merge are fixed costs, and
 * one 256-thread workgroup per SM already keeps enough loads in flight. Counted in 256-thread workgroups: a
 * config of 128 threads aims for twice as many.
 */
export const decodeFill: { workgroups: number } = { workgroups: 128 };
const MAX_SPLITS = 256;

/**
 * Split-KV factor of the decode tile: the user's `kernelOptions.splitKv`, else enough for `decodeFill` workgroups
 * (of 256 threads; `NT` threads each here), ≥ 1 kv block each.
 */
export function chooseDecodeSplits(workgroups: number, kvBlocks: number, requested?: number, NT = 256): number {
  if (requested !== undefined) return pinnedSplits(requested, kvBlocks);
  const target = Math.ceil(decodeFill.workgroups * 256 / NT);
  if (workgroups >= target) return 1;
  return Math.max(1, Math.min(MAX_SPLITS, Math.ceil(target / workgroups), kvBlocks));
}
