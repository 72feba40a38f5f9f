/**
 * The backward without recomputation in dQ (issue #8 item 5), the default where it applies (FLEX_BWD_DQ_FROM_DS=0
 * or setFlexBwdProbe({ dqFromDs: false }) turns it off): the dK/dV kernel stores the dS' it forms anyway
 * (kernels/flex_backward.ts `writeDs`) into a scratch [q heads of a chunk][Sq][Skv rounded up to 4], and dQ = scale·dS'·K is a plain block-sparse product over the q block's
 * kv list (kernels/flex_bwd_dq_from_ds.ts): 5 matrix products per visited tile instead of 7.
 *
 * The scratch is bounded by processing the heads in chunks of whole kv heads (flattened over batch × kv head;
 * a kv head's GQA group of q heads is contiguous in the flattened q heads), each chunk one dK/dV launch then
 * one dQ launch with the chunk's first kv head as a uniform: the same two kernels for every chunk and length.
 *
 * Taken where dQ is nothing but dS'·K: f32 score captures only where their gradients (from dS·∂mod/∂capture, not
 * from dS') fit the dK/dV kernel's per-workgroup partial slices (then it sums them, a fixed-order reduce after the
 * chunks; else the fused dQ kernel sums them), a device with ≥ 9 storage buffers per stage (the dK/dV kernel's
 * ninth binding) and one kv head's dS' within the cap. Sinks and an lse cotangent reach dS' through Δ − dLse
 * (the preprocess), dropout through z in dS' — both already inside what the dK/dV kernel stores.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Capabilities } from "./capabilities.ts";
import { dsRowStride, FLEX_BWD_UNIFORMS } from "../../kernels/flex_backward.ts";
import { type DqFromDsConfig, dqFromDsSmemBytes, dqFromDsThreads } from "../../kernels/flex_bwd_dq_from_ds.ts";
import { readEnv } from "../runtime/env.ts";
import { InvalidArgument } from "../errors.ts";

/** The default bound of the dS' scratch (further bounded by the device's binding and buffer sizes). */
export const DS_SCRATCH_MAX_BYTES = 512 * 2 ** 20;

/**
 * The scratch bound: FLEX_BWD_DS_SCRATCH_MIB (MiB, a positive number) else DS_SCRATCH_MAX_BYTES. A larger one
 * means fewer chunks, each launch fuller: on the H200 at B4 H16 S4096 D64 causal, 1408 MiB (3 chunks) ran the
 * backward in 20.4 ms against 23.4 with 512 MiB (8 chunks); noop the same (37.3 / 36.9).
 */
export function dsScratchBytes(): number {
  const raw = readEnv("FLEX_BWD_DS_SCRATCH_MIB");
  if (raw === undefined || raw.trim() === "") return DS_SCRATCH_MAX_BYTES;
  const mib = Number(raw);
  if (!(mib > 0) || !Number.isFinite(mib)) {
    throw new InvalidArgument({ message: `FLEX_BWD_DS_SCRATCH_MIB is "${raw}"; set it to a positive number of MiB (e.g. 2048) or unset it for ${DS_SCRATCH_MAX_BYTES / 2 ** 20}` });
  }
  return Math.floor(mib * 2 ** 20);
}

/**
 * Whether the dS' path is wanted where it applies: `probe` (setFlexBwdProbe) first, else on unless
 * FLEX_BWD_DQ_FROM_DS=0. On by default since the H200 timed it (session 6, B4 H16 S4096 D64 f32): noop and causal
 * backward both faster than the fused dQ kernel, results bit-identical to it.
 */
export function dqFromDsWanted(probe: boolean | undefined): boolean {
  return probe ?? readEnv("FLEX_BWD_DQ_FROM_DS") !== "0";
}

/** How the heads are chunked; null when one kv head's dS' does not fit (the fused dQ path runs instead). */
export interface DsChunks {
  /** Flattened kv heads (batch × kv head) per chunk, the last one possibly short. */
  readonly kvHeads: number;
  readonly chunks: number;
  /** Bytes of the scratch (one full chunk). */
  readonly bytes: number;
}

export function dsChunks(call: FlexCall, caps: Capabilities, capBytes = dsScratchBytes()): DsChunks | null {
  const { B, Hq, Hkv, Sq, Skv } = call.dims;
  const group = Hq / Hkv;
  const limit = Math.min(capBytes, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize);
  const perKvHead = group * Sq * dsRowStride(Skv) * 4;
  if (perKvHead > limit) return null;
  const total = B * Hkv;
  // as few chunks as fit, then as even as they go (no short last chunk running a nearly empty launch)
  const chunks = Math.ceil(total / Math.min(total, Math.floor(limit / perKvHead)));
  const kvHeads = Math.ceil(total / chunks);
  return { kvHeads, chunks, bytes: kvHeads * perKvHead };
}

/**
 * Whether the call's dQ is dS'·K alone (`capturePartials`: the dK/dV kernel sums the capture gradients in partial
 * slices; the atomic fallback stays on the fused path) and the device can bind the dK/dV kernel's scratch.
 */
export function dqFromDsApplies(caps: Capabilities, captureWords: number, capturePartials: boolean): boolean {
  return (captureWords === 0 || capturePartials) && caps.limits.maxStorageBuffersPerShaderStage >= 9;
}

/** The dQ kernel's tilings that fit the device (workgroup memory, invocations), for head dim D. */
export function dqFromDsCandidates(D: number, caps: Capabilities): DqFromDsConfig[] {
  const lim = caps.limits;
  const maxThreads = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const out: DqFromDsConfig[] = [];
  for (const BA of [128, 64, 32, 16, 8]) for (const TA of [8, 4] as const) for (const TD of [8, 4] as const) for (const BB of [64, 32, 16]) {
    if (BA % TA !== 0 || D % TD !== 0) continue;
    const c: DqFromDsConfig = { D, BA, TA, TD, BB };
    if (dqFromDsThreads(c) > maxThreads || dqFromDsSmemBytes(c) > lim.maxComputeWorkgroupStorageSize) continue;
    out.push(c);
  }
  return out;
}

/**
 * The heuristic's score: full row tiles of the q block first (no idle rows), then a register tile of ≥ 32
 * (FMAs per workgroup-memory read; 4 × 8 ran as fast as 8 × 8 on the H200), then 128–256 threads, then 64-row
 * tiles (twice the workgroups of 128 rows: a chunk's launch holds few heads), then fewer barriers per FLOP (a
 * longer kv tile). H200, B4 H16 S4096 D64 (session 6): 4 × 8, BA 64, BB 32 had the best noop + causal sum.
 */
export function dqFromDsScore(c: DqFromDsConfig, QB: number): number {
  const util = QB / (Math.ceil(QB / c.BA) * c.BA);
  const threads = dqFromDsThreads(c);
  const occupancy = threads >= 128 && threads <= 256 ? 1 : threads >= 64 ? 0.85 : 0.6;
  const tile = Math.min(1, Math.sqrt((c.TA * c.TD) / 32)) * (c.TD >= c.TA ? 1 : 0.99);
  const rows = c.BA === 64 ? 1 : c.BA > 64 ? 0.95 : Math.sqrt(c.BA / 64);
  return util ** 2 * tile * occupancy * rows * (c.BB >= 32 ? 1 : 0.9) * (c.BB === 32 ? 1 : 0.99);
}

/** The dQ kernel's shape (`pinned`: setFlexBwdProbe's dqDs), null where none fits (the fused dQ path runs). */
export function dqFromDsConfig(call: FlexCall, caps: Capabilities, pinned?: DqFromDsConfig): DqFromDsConfig | null {
  if (pinned) return pinned;
  const QB = call.blockMask.blockSize[0];
  let best: DqFromDsConfig | null = null, bestScore = -1;
  for (const c of dqFromDsCandidates(call.dims.D, caps)) {
    const s = dqFromDsScore(c, QB);
    if (s > bestScore) { best = c; bestScore = s; }
  }
  return best;
}

/** FLEX_BWD_UNIFORMS with `pad0` carrying the chunk's first flattened kv head. */
export function withHead0(uniforms: readonly number[], head0: number): number[] {
  const u = [...uniforms];
  u[FLEX_BWD_UNIFORMS.indexOf("pad0")] = head0;
  return u;
}

/**
 * The compact dS' scratch (kernels/flex_backward.ts dsCompact): one QB × KB slot per block the walk visits, so a
 * causal mask needs about half the dense scratch and a sliding window a fraction (fewer chunks, fuller launches).
 * Slots of a mask head run over its q blocks in order, each q block's in its kv list's order (partial then full),
 * so dQ's walk reads slot start[q block] + blk; the dK/dV kernel, walking a kv block's q list, reads each entry's
 * slot from `slot` (laid out as the q-major index tables). `head[fq]` is the first slot of flattened q head fq
 * (b·Hq + h; a broadcast mask repeats its slots per head), `head[B·Hq]` the total.
 */
export interface DsCompact {
  /** The tables ‖ captures array with the three slot tables appended (the kernels' `caps` binding). */
  readonly data: Uint32Array;
  /** Word offsets in `data` of start, slot and head (DS_COMPACT_UNIFORMS). */
  readonly offStart: number;
  readonly offSlot: number;
  readonly offHead: number;
  readonly head: Uint32Array;
  /** Floats of one slot (QB·KB). */
  readonly slotFloats: number;
}

const compactCache = new WeakMap<Uint32Array, Map<string, DsCompact | null>>();

/**
 * The slot tables of a call from its packed block tables (`tabData` at word offsets `off`: kvNum, kvIdx, fullKvNum,
 * fullKvIdx, qNum, qIdx, fullQNum, fullQIdx); null where the q-major tables list a block the kv-major ones do not
 * (then the dense scratch runs). Cached per packed array and (B, Hq).
 */
export function dsCompactTables(call: FlexCall, tabData: Uint32Array, off: readonly number[]): DsCompact | null {
  const { B, Hq } = call.dims;
  const m = call.blockMask;
  const key = `${B},${Hq}`;
  let inner = compactCache.get(tabData);
  if (inner?.has(key)) return inner.get(key)!;
  const [mB, mH, nQ, nKV] = m.kvIndices.shape;
  const hasFull = m.fullKvNumBlocks && m.fullQNumBlocks ? 1 : 0;
  const heads = mB * mH;
  const start = new Uint32Array(heads * nQ);
  const slot = new Uint32Array(heads * nKV * nQ);
  const total = new Uint32Array(heads);
  let ok = true;
  const at = (t: number, i: number) => tabData[off[t] + i];
  for (let mh = 0; mh < heads && ok; mh++) {
    // position of kv block j in q block i's list, -1 where absent
    const pos = new Int32Array(nQ * nKV).fill(-1);
    let n = 0;
    for (let i = 0; i < nQ; i++) {
      const row = mh * nQ + i;
      start[row] = n;
      const np = at(0, row), nf = hasFull ? at(2, row) : 0;
      for (let e = 0; e < np; e++) pos[i * nKV + at(1, row * nKV + e)] = e;
      for (let e = 0; e < nf; e++) pos[i * nKV + at(3, row * nKV + e)] = np + e;
      n += np + nf;
    }
    total[mh] = n;
    for (let j = 0; j < nKV && ok; j++) {
      const row = mh * nKV + j;
      const np = at(4, row), nf = hasFull ? at(6, row) : 0;
      for (let e = 0; e < np + nf; e++) {
        const i = e < np ? at(5, row * nQ + e) : at(7, row * nQ + e - np);
        const p = i < nQ ? pos[i * nKV + j] : -1;
        if (p < 0) { ok = false; break; }
        slot[row * nQ + e] = start[mh * nQ + i] + p;
      }
    }
  }
  let out: DsCompact | null = null;
  if (ok) {
    const head = new Uint32Array(B * Hq + 1);
    for (let fq = 0; fq < B * Hq; fq++) {
      const b = Math.floor(fq / Hq), h = fq % Hq;
      head[fq + 1] = head[fq] + total[(mB === 1 ? 0 : b) * mH + (mH === 1 ? 0 : h)];
    }
    const data = new Uint32Array(tabData.length + start.length + slot.length + head.length);
    data.set(tabData, 0);
    const offStart = tabData.length, offSlot = offStart + start.length, offHead = offSlot + slot.length;
    data.set(start, offStart);
    data.set(slot, offSlot);
    data.set(head, offHead);
    const [QB, KB] = m.blockSize;
    out = { data, offStart, offSlot, offHead, head, slotFloats: QB * KB };
  }
  if (!inner) { inner = new Map(); compactCache.set(tabData, inner); }
  inner.set(key, out);
  return out;
}

/** One chunk of kv heads (flattened over batch × kv head) of the compact scratch. */
export interface DsCompactChunk {
  readonly kv0: number;
  readonly kvHeads: number;
  /** The chunk's first slot (its first q head's). */
  readonly base: number;
}

/**
 * The compact scratch's chunks: as few as fit the bound, as even in kv heads as they go; null where one kv head's
 * slots do not fit (or a slot index would pass 2³² floats).
 */
export function dsCompactChunks(call: FlexCall, caps: Capabilities, t: DsCompact, capBytes = dsScratchBytes()): { chunks: DsCompactChunk[]; bytes: number } | null {
  const { B, Hq, Hkv } = call.dims;
  const group = Hq / Hkv;
  const limit = Math.min(capBytes, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize, 2 ** 32);
  const bytesOf = (f0: number, f1: number) => (t.head[f1 * group] - t.head[f0 * group]) * t.slotFloats * 4;
  const total = B * Hkv;
  for (let f = 0; f < total; f++) if (bytesOf(f, f + 1) > limit) return null;
  // greedy count, then the even split of that many chunks if each fits (else the greedy one)
  const greedy: [number, number][] = [];
  for (let f0 = 0; f0 < total;) {
    let f1 = f0 + 1;
    while (f1 < total && bytesOf(f0, f1 + 1) <= limit) f1++;
    greedy.push([f0, f1]);
    f0 = f1;
  }
  const per = Math.ceil(total / greedy.length);
  const even: [number, number][] = [];
  for (let f0 = 0; f0 < total; f0 += per) even.push([f0, Math.min(total, f0 + per)]);
  const pick = even.length === greedy.length && even.every(([a, b]) => bytesOf(a, b) <= limit) ? even : greedy;
  const chunks = pick.map(([a, b]) => ({ kv0: a, kvHeads: b - a, base: t.head[a * group] }));
  return { chunks, bytes: Math.max(...pick.map(([a, b]) => bytesOf(a, b))) };
}
