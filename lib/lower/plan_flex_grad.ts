/**
 * The backward plan of a FlexAttention call (op "flexGrad").
 *
 * Design: lib/passes/pack_flex_grads.ts has made every gradient node of one `FlexBwd` (dq, dk, dv, dcap:s) a
 * cheap copy (`flexGradPart`, planned below) out of ONE "packed" flexGrad node per bwd, whose plan runs the whole
 * backward once:
 *   1 preprocess   ld[row] = (lse·log2 e, Δ − dLse)                       kernels/flex_bwd_aux.ts
 *   2 dK/dV        one workgroup per (BLOCK_A kv rows, kv head, batch)    kernels/flex_backward.ts "dkdv"
 *   3 dQ           one workgroup per (BLOCK_A q rows, q head, batch)      kernels/flex_backward.ts "dq"
 *                  + captured-tensor gradients (only when the score mod has f32 captures), see below
 *   4 reduce       Σ of the dQ workgroups' partial slices → the packed buffer   kernels/flex_bwd_aux.ts reduceWgsl
 *     (finalize    the atomic fallback's accumulators → the packed buffer       kernels/flex_bwd_aux.ts finalizeWgsl)
 *   or, by default where it applies (f32 score captures only with partial slices, ≥ 9 storage buffers, one kv
 *   head's dS' within the scratch bound; FLEX_BWD_DQ_FROM_DS=0 / setFlexBwdProbe({ dqFromDs: false }) turn it off),
 *   per chunk of kv heads: dK/dV storing dS' (and summing the capture gradients into its workgroups' slices), then
 *   dQ = scale·dS'·K (lib/lower/plan_flex_grad_ds.ts); the reduce after the last chunk
 *
 * Captured-tensor gradients (`capGradPlan`), `words` = Σ sizes of the f32 score captures, `wg` = dQ workgroups:
 *   deterministic (default): each dQ workgroup sums its elements' contributions in a fixed order inside the
 *     workgroup (thread-private runs, then one owner thread per word, kernels/flex_backward.ts) into its own
 *     slice of the `err` scratch, err[1 + g·words + w] for g < wg, w < words (plain stores, no atomics; the
 *     scratch is zero-initialized). The reduce pass then sums word w over g in a fixed order (one workgroup
 *     per word: strided per-thread sums, then a pairwise tree of 64). Bit-identical across runs.
 *   atomic fallback: when 4·(1 + wg·words) bytes exceeds min(64 MiB, maxStorageBufferBindingSize,
 *     maxBufferSize) (a capture as large as a full [S, S] bias), or no dQ config fits with the merge's workgroup
 *     memory, the dQ kernel adds into err[1 + w] with f32 compare-exchange loops. Results then depend on the
 *     order of the adds: NOT bit-reproducible (and slow when many threads hit the same few words).
 *   `err` = [flags | partial slices or accumulators]; it is one binding either way.
 * Packed layout (f32): dq ‖ dk ‖ dv ‖ dcap of each f32 capture slot. The executor plans the packed node once
 * per realize however many of the gradients are asked for (its plan cache is per node), so asking for
 * dq, dk and dv runs one backward, not three; each asked node costs one copy launch.
 *
 * Bindings of the fused kernels (8 storage buffers, WebGPU's default limit): q, k, v, dOut, ld, caps
 * (block tables ‖ captured data, packed once per (mask, captures) and kept uploaded), err (flags and
 * capture accumulators), packed gradients; plus the uniform.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { KernelLaunch, NodePlan } from "./plan.ts";
import { capGradLayout, type FlexBwd, packedLayout, type PackedLayout, requestedCapGradWords } from "../passes/flex_grad.ts";
import { type FlexBwdCapGrad, type FlexBwdConfig, type FlexBwdMode, flexBackwardWgsl, flexBwdSmemBytes } from "../../kernels/flex_backward.ts";
import { auxGrid, copyF16Wgsl, copyWgsl, finalizeWgsl, MOVE_UNIFORMS, REDUCE_UNIFORMS, reduceGrid, reduceWgsl } from "../../kernels/flex_bwd_aux.ts";
import { captureLaunch, fusedBindings, fusedGrid, fusedUniforms, preprocessLaunch } from "./flex_bwd_launch.ts";
import { chooseFlexBwdConfig } from "./flex_bwd_config.ts";
import { planFlexGradTensor } from "./plan_flex_grad_tensor.ts";
import { flexBwdHooks } from "./flex_bwd_hooks.ts";
import { packCaptureData } from "./wgsl_expr.ts";
import { captureOutOfRange, dropoutUniforms, hostData } from "./plan_flex.ts";
import { InvalidArgument, NoConfigFits, UndefinedDerivative } from "../errors.ts";
import { dqFromDsApplies, dqFromDsConfig, dqFromDsWanted, dsChunks, dsCompactChunks, dsCompactTables, withHead0 } from "./plan_flex_grad_ds.ts";
import { type DqFromDsConfig, dqFromDsKey, dqFromDsWgsl } from "../../kernels/flex_bwd_dq_from_ds.ts";
import { type BlockMask, blockMaskTables } from "../blockmask/block_mask.ts";

import { ERR_UNDEFINED_DERIVATIVE } from "../../kernels/error_bits.ts";
export { ERR_UNDEFINED_DERIVATIVE };

interface Packed {
  readonly node: Tensor;
  readonly bwd: FlexBwd;
  readonly layout: PackedLayout;
}

// ------------------------------------------------------------------ packed tables and captures

interface TabCaps {
  readonly data: Uint32Array;
  /** Word offsets of kvNum, kvIdx, fullKvNum, fullKvIdx, qNum, qIdx, fullQNum, fullQIdx. */
  readonly off: readonly number[];
  readonly tableWords: number;
}

const tabCapsCache = new WeakMap<BlockMask, Map<string, TabCaps>>();

function constData(t: Tensor | null, what: string): ArrayLike<number> {
  return t === null ? [] : hostData(t, what, "flexAttention backward");
}

function packTabCaps(call: FlexCall): TabCaps {
  const m = call.blockMask;
  const mods = [call.scoreMod, m.tracedMask];
  const key = mods.map((mod) => mod.captures.map((c) => c.id).join(",")).join("|");
  let inner = tabCapsCache.get(m);
  const hit = inner?.get(key);
  if (hit) return hit;
  // captures FIRST: their offsets are baked into the WGSL and must not move with the tables' size (which
  // grows with the lengths: a new length must rebuild nothing); the table offsets travel in the uniforms
  const caps = packCaptureData(mods, mods.map((mod) => (mod.captures as unknown as Tensor[]).map((t) => constData(t, "a captured tensor"))));
  const tables = blockMaskTables(m).map((t, i) => constData(t, `BlockMask table #${i}`));
  const off: number[] = [];
  let n = caps.length;
  for (const t of tables) { off.push(n); n += t.length; }
  const data = new Uint32Array(n);
  data.set(caps, 0);
  tables.forEach((t, i) => data.set(Uint32Array.from(t as ArrayLike<number>, (x) => x >>> 0), off[i]));
  const packed = { data, off, tableWords: 0 };
  if (!inner) { inner = new Map(); tabCapsCache.set(m, inner); }
  inner.set(key, packed);
  return packed;
}

// ------------------------------------------------------------------ launches

function undefinedDerivativeOrRange(call: FlexCall) {
  return (v: number): Error => {
    if (v & 1) return captureOutOfRange();
    return new UndefinedDerivative({
      message: `the derivative of score mod "${call.scoreMod.name}" is undefined (NaN) at an attended entry on the GPU; ` +
        `rewrite the mod so it is differentiable where it is evaluated (e.g. avoid sqrt/log at 0); the CPU reference names the entry`,
    });
  };
}

/** The largest partial-slice region of the deterministic capture gradients (the atomic path beyond it). */
export const CAP_PARTIALS_MAX_BYTES = 64 * 2 ** 20;

/** How the captured-tensor gradients of a call are summed (see the file comment), and the `err` scratch size. */
export interface CapGradPlan extends FlexBwdCapGrad {
  /** dQ workgroups (partial slices). */
  readonly slices: number;
  readonly errBytes: number;
}

function capGradPlan(call: FlexCall, config: FlexBwdConfig, reads: number, caps: Capabilities, fits: boolean, mode: FlexBwdMode = "dq", requested = true): CapGradPlan {
  // none of the captures' gradients asked for (FlexBwd.capGradSlots): no words to sum, no summing launches
  const words = requested ? capGradLayout(call.scoreMod).words : 0;
  // the summing kernel's workgroups, one slice each (dkdv on the dS' path: all chunks', B·Hkv kv heads)
  const [x, y, z] = fusedGrid(call, mode, config.BA, Infinity).grid;
  const slices = x * y * z;
  const limit = Math.min(CAP_PARTIALS_MAX_BYTES, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize);
  const partialBytes = 4 * (1 + slices * words);
  if (words === 0 || reads === 0) return { mode: "atomic", words, slices, errBytes: 4 * (1 + words) };
  if (fits && partialBytes <= limit) return { mode: "partials", words, slices, errBytes: partialBytes };
  return { mode: "atomic", words, slices, errBytes: 4 * (1 + words) };
}

const unevenCache = new WeakMap<BlockMask, boolean>();

/** Whether the kv blocks' q lists (the dK/dV walk) differ in length: the longest > 1.5 × the mean (FlexBwdProblem.unevenOwners). */
function unevenKvLists(call: FlexCall): boolean {
  const m = call.blockMask;
  const hit = unevenCache.get(m);
  if (hit !== undefined) return hit;
  const num = constData(m.qNumBlocks, "BlockMask qNumBlocks");
  const full = m.fullKvNumBlocks && m.fullQNumBlocks ? constData(m.fullQNumBlocks, "BlockMask fullQNumBlocks") : [];
  let max = 0, sum = 0;
  for (let i = 0; i < num.length; i++) {
    const n = num[i] + (full.length ? full[i] : 0);
    max = Math.max(max, n);
    sum += n;
  }
  const uneven = num.length > 0 && max > 1.5 * (sum / num.length);
  unevenCache.set(m, uneven);
  return uneven;
}

/** WGSL and config of one fused backward kernel, and how it sums capture gradients (exported for tests and `explain`). */
export function flexBackwardSource(
  call: FlexCall,
  mode: FlexBwdMode,
  caps: Capabilities,
  extra: { writeDs?: boolean; dsVec4?: boolean; dsHeadsFastest?: boolean; dsCompact?: boolean; capGrads?: boolean } = {},
): { code: string; config: FlexBwdConfig; capGrad: CapGradPlan } {
  const { D, Dv } = call.dims;
  const [QB, KB] = call.blockMask.blockSize;
  // capGrads false (the graph asks for no capture gradient): the kernels read the captures but sum no gradient of them
  const requested = extra.capGrads !== false;
  const allHooks = flexBwdHooks(call, packTabCaps(call).tableWords);
  const hooks = requested ? allHooks : { ...allHooks, capReads: 0, capCode: "" };
  const problem = { D, Dv, ownerBlock: mode === "dq" ? QB : KB, streamBlock: mode === "dq" ? KB : QB, ...(mode === "dkdv" && unevenKvLists(call) ? { unevenOwners: true } : {}) };
  // dQ with capture gradients (or dK/dV storing dS': it sums them there): a config with room for the merge's
  // workgroup memory, checked against the size of the partial slices; either failing falls back to the atomic path
  // (and the plain config; the dS' path then is not taken)
  const reads = mode === "dq" || extra.writeDs ? hooks.capReads : 0;
  const capRowRounds = mode === "dkdv" && reads > 0 && hooks.capIndexFixedDkdv === true;
  let config: FlexBwdConfig | null = null;
  let capGrad: CapGradPlan | null = null;
  const pinned = probe[mode];
  if (pinned) {
    config = pinned;
    const fits = flexBwdSmemBytes(pinned, mode, reads, capRowRounds) <= caps.limits.maxComputeWorkgroupStorageSize;
    capGrad = capGradPlan(call, pinned, reads, caps, reads > 0 && fits, mode, requested);
  } else if (reads > 0) {
    try {
      config = chooseFlexBwdConfig(mode, { ...problem, capReads: reads, ...(capRowRounds ? { capRowRounds } : {}) }, caps);
    } catch (e) {
      if (!(e instanceof NoConfigFits)) throw e;
    }
    if (config) capGrad = capGradPlan(call, config, reads, caps, true, mode, requested);
  }
  if (!pinned && (!capGrad || capGrad.mode === "atomic")) {
    config = chooseFlexBwdConfig(mode, problem, caps);
    capGrad = capGradPlan(call, config, reads, caps, false, mode, requested);
  }
  const features = {
    dropout: call.dropout !== undefined, prescaleQk: call.kernelOptions.prescaleQk === true, rowsSafe: call.kernelOptions.rowsGuaranteedSafe === true,
    // dS' stored as vec4s of 4 kv rows where no vec4 straddles two kv blocks (the kernel also needs TA = 4)
    ...(extra.writeDs ? { writeDs: true, dsVec4: KB % 4 === 0 && extra.dsVec4 !== false, ...(extra.dsHeadsFastest ? { dsHeadsFastest: true } : {}), ...(extra.dsCompact ? { dsCompact: true } : {}) } : {}),
  };
  return { code: flexBackwardWgsl(mode, config!, hooks, capGrad!, features), config: config!, capGrad: capGrad! };
}

function planPacked(p: Packed, caps: Capabilities): NodePlan {
  const { bwd, layout } = p;
  const call = bwd.call;
  const tc = packTabCaps(call);
  // f16 calls on the tensor family (lib/lower/flex_bwd_tensor_config.ts says when)
  // (dropout: the portable backward only, which regenerates the forward's mask)
  const tensorPlan = call.dropout ? undefined : planFlexGradTensor(p.node, bwd, layout, caps, { tabCaps: tc, fail: undefinedDerivativeOrRange(call) });
  if (tensorPlan) return tensorPlan;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const preprocess = preprocessLaunch(call, bwd, "f32", maxGrid);

  const capGrads = requestedCapGradWords(bwd) > 0;
  const dqSource = flexBackwardSource(call, "dq", caps, { capGrads });
  const capGrad = dqSource.capGrad;
  const accWords = capGrad.words;

  const fused = (mode: FlexBwdMode): KernelLaunch => {
    const { code, config } = mode === "dq" ? dqSource : flexBackwardSource(call, mode, caps, { capGrads });
    const { grid, aTiles } = fusedGrid(call, mode, config.BA, maxGrid);
    const uniforms = [...fusedUniforms(call, mode, aTiles, layout, tc.off), ...dropoutUniforms(call)];
    return {
      label: `flex_bwd_${mode} ${call.scoreMod.name}/${call.blockMask.tracedMask.name} BA${config.BA} TA${config.TA} G${config.G} BB${config.BB}${call.dropout ? " dropout" : ""}`,
      code,
      entryPoint: "main",
      bindings: fusedBindings(call, { q: call.q, k: call.k, v: call.v, dOut: bwd.dOut, node: p.node }, tc.data, capGrad.errBytes, uniforms),
      workgroups: grid,
    };
  };

  const fromDs = dqFromDsWanted(probe.dqFromDs) ? dqFromDsLaunches(p, caps, tc) : null;
  if (fromDs) {
    return { launches: probeLaunches([preprocess, ...fromDs]), defines: [p.node], checks: [{ scratch: "err", fail: undefinedDerivativeOrRange(call) }] };
  }
  const launches: KernelLaunch[] = [preprocess, fused("dkdv"), fused("dq")];
  if (accWords > 0) {
    // the capture words sit after dq ‖ dk ‖ dv in the packed buffer; err[0] is the flags word
    const capStart = layout.caps.find((x) => x !== null)!;
    if (capGrad.mode === "partials") {
      const g = reduceGrid(accWords, maxGrid);
      const u = { count: accWords, slices: capGrad.slices, src_off: 1, dst_off: capStart, grid_x: g.gridX, pad0: 0, pad1: 0, pad2: 0 };
      launches.push(captureLaunch("flex_bwd_reduce_captures", reduceWgsl(), capGrad.errBytes, p.node, Uint32Array.from(REDUCE_UNIFORMS, (k) => u[k]), g.grid));
    } else {
      const g = auxGrid(accWords, maxGrid);
      const u = { count: accWords, src_off: 1, dst_off: capStart, grid_x: g.gridX };
      launches.push(captureLaunch("flex_bwd_finalize_captures", finalizeWgsl(), capGrad.errBytes, p.node, Uint32Array.from(MOVE_UNIFORMS, (k) => u[k]), g.grid));
    }
  }
  // Padding words of the packed buffer are never read; the copies below read only real gradients.
  return { launches: probeLaunches(launches), defines: [p.node], checks: [{ scratch: "err", fail: undefinedDerivativeOrRange(call) }] };
}

/**
 * The dS' path (lib/lower/plan_flex_grad_ds.ts): per chunk of kv heads, the dK/dV kernel storing dS' into the
 * "ds" scratch, then dQ = scale·dS'·K; null where the chunk or the dQ kernel does not fit (the fused path runs).
 */
function dqFromDsLaunches(p: Packed, caps: Capabilities, tc: TabCaps): KernelLaunch[] | null {
  const call = p.bwd.call;
  const dqc = dqFromDsConfig(call, caps, probe.dqDs);
  if (!dqc) return null;
  const { B, Hq, Hkv } = call.dims;
  const group = Hq / Hkv;
  // the compact scratch where the dense one does not fit or needs at least twice its chunks (H200, session 7: causal,
  // 5 compact chunks against 8 dense ones, ran 0.2 ms slower; noop, 8 each, 0.4 ms); FlexBwdProbe dsDense / dsCompact
  const dense = dsChunks(call, caps, probe.dsChunkBytes);
  const ct = probe.dsDense ? null : dsCompactTables(call, tc.data, tc.off);
  const cc = ct ? dsCompactChunks(call, caps, ct, probe.dsChunkBytes) : null;
  const compact = ct && cc && (!dense || probe.dsCompact || 2 * cc.chunks.length <= dense.chunks) ? { t: ct, ...cc } : null;
  if (!compact && !dense) return null;
  const chunks: { kv0: number; kvHeads: number; base: number }[] = compact ? compact.chunks : [];
  if (!compact) for (let f0 = 0; f0 < B * Hkv; f0 += dense!.kvHeads) chunks.push({ kv0: f0, kvHeads: Math.min(dense!.kvHeads, B * Hkv - f0), base: 0 });
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  if (Math.max(...chunks.map((x) => x.kvHeads)) * group > maxGrid) return null;
  // heads fastest in both grids (every head's longest workgroups first) unless the probe asks for the old order
  const hf = !probe.dsBlocksFastest;
  const dkdv = flexBackwardSource(call, "dkdv", caps, {
    writeDs: true, dsVec4: !probe.dsScalarStore, dsHeadsFastest: hf, dsCompact: compact !== null, capGrads: requestedCapGradWords(p.bwd) > 0,
  });
  // f32 score captures: the dK/dV kernel sums their gradients in partial slices, or the fused path runs
  const capGrad = dkdv.capGrad;
  if (!dqFromDsApplies(caps, capGrad.words, capGrad.mode === "partials")) return null;
  const kv = fusedGrid(call, "dkdv", dkdv.config.BA, maxGrid);
  const q = fusedGrid(call, "dq", dqc.BA, maxGrid);
  const kvUniforms = [...fusedUniforms(call, "dkdv", kv.aTiles, p.layout, tc.off), ...dropoutUniforms(call)];
  const qUniforms = fusedUniforms(call, "dq", q.aTiles, p.layout, tc.off);
  const dqCode = dqFromDsWgsl(dqc, { headsFastest: hf, compact: compact !== null });
  const data = compact ? compact.t.data : tc.data;
  // the compact scratch's uniforms (DS_COMPACT_UNIFORMS) after the others, per chunk
  const tail = (base: number) => (compact ? [compact.t.offStart, compact.t.offSlot, compact.t.offHead, base] : []);
  const ds = { kind: "scratch" as const, name: "ds", bytes: compact ? compact.bytes : dense!.bytes };
  const errBytes = capGrad.errBytes; // the flags word ‖ the dK/dV workgroups' capture-gradient slices
  const out: KernelLaunch[] = [];
  const c = dkdv.config;
  const store = c.TA === 4 && call.blockMask.blockSize[1] % 4 === 0 && !probe.dsScalarStore ? "vec4" : "scalar"; // as flexBackwardWgsl decides
  const layoutName = compact ? "compact" : "dense";
  for (const { kv0: f0, kvHeads: n, base } of chunks) {
    out.push({
      label: `flex_bwd_dkdv_ds ${call.scoreMod.name}/${call.blockMask.tracedMask.name} BA${c.BA} TA${c.TA} G${c.G} BB${c.BB} ds ${store} ${layoutName} heads ${f0}+${n}`,
      code: dkdv.code,
      entryPoint: "main",
      bindings: [
        ...fusedBindings(call, { q: call.q, k: call.k, v: call.v, dOut: p.bwd.dOut, node: p.node }, data, errBytes, [...withHead0(kvUniforms, f0), ...tail(base)]),
        ds,
      ],
      workgroups: hf ? [n, kv.grid[0], 1] : [kv.grid[0], n, 1],
    });
    out.push({
      label: `flex_bwd_dq_ds ${dqFromDsKey(dqc)} ${layoutName} heads ${f0 * group}+${n * group}`,
      code: dqCode,
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: call.k },
        { kind: "data", data, persistent: true },
        { ...ds, readOnly: true },
        { kind: "output", tensor: p.node },
        { kind: "uniform", data: Uint32Array.from([...withHead0(qUniforms, f0), ...tail(base)]) },
      ],
      workgroups: hf ? [n * group, q.grid[0], 1] : [q.grid[0], n * group, 1],
    });
  }
  if (capGrad.words > 0) {
    // Σ of the slices of every chunk's dK/dV workgroups, in a fixed order, into the packed capture gradients
    const g = reduceGrid(capGrad.words, maxGrid);
    const u = { count: capGrad.words, slices: capGrad.slices, src_off: 1, dst_off: p.layout.caps.find((x) => x !== null)!, grid_x: g.gridX, pad0: 0, pad1: 0, pad2: 0 };
    out.push(captureLaunch("flex_bwd_reduce_captures", reduceWgsl(), errBytes, p.node, Uint32Array.from(REDUCE_UNIFORMS, (k) => u[k]), g.grid));
  }
  return out;
}

// ------------------------------------------------------------------ device-probe knobs (bench/bwd_probe.ts)

/**
 * Diagnostics only: `dq` / `dkdv` pin a portable kernel's config; `only` keeps the launches whose label starts
 * with one of its prefixes and turns the others into zero-workgroup launches (never dispatched: the gradients
 * are then wrong, the timing of what is left is right). Reset with `setFlexBwdProbe({})`.
 */
export interface FlexBwdProbe {
  readonly dq?: FlexBwdConfig;
  readonly dkdv?: FlexBwdConfig;
  readonly only?: readonly string[];
  /** The dS' path (lib/lower/plan_flex_grad_ds.ts); unset: on where it applies unless FLEX_BWD_DQ_FROM_DS=0. */
  readonly dqFromDs?: boolean;
  /** Bound of its scratch in bytes (tests force several chunks with a small one). */
  readonly dsChunkBytes?: number;
  /** Pins the tiling of its dQ = scale·dS'·K kernel (kernels/flex_bwd_dq_from_ds.ts). */
  readonly dqDs?: DqFromDsConfig;
  /** Its dK/dV kernel stores dS' as scalars even where vec4 stores apply (the probe compares them). */
  readonly dsScalarStore?: boolean;
  /** Its two grids run the owner tiles fastest (the order before the heads-fastest grids; the probe compares them). */
  readonly dsBlocksFastest?: boolean;
  /** Its scratch dense ([q heads of a chunk][Sq][Skv]) even where the compact one (visited blocks only) applies. */
  readonly dsDense?: boolean;
  /** Its scratch compact wherever the slot tables exist (the default takes it where it saves half the chunks). */
  readonly dsCompact?: boolean;
}
let probe: FlexBwdProbe = {};
export function setFlexBwdProbe(p: FlexBwdProbe): void {
  probe = p;
}
function probeLaunches(launches: KernelLaunch[]): KernelLaunch[] {
  const only = probe.only;
  if (!only) return launches;
  return launches.map((l) => (only.some((k) => l.label.startsWith(k)) ? l : { ...l, workgroups: [0, 0, 0] }));
}

/** Lowering of a "flexGradPart" node: one gradient copied out of its packed node (an f16 part: rounded, a word per thread). */
export function planFlexGradPart(node: Tensor<"flexGradPart">, caps: Capabilities): NodePlan {
  const packed = node.inputs[0];
  const { which, offset } = node.arg;
  const f16 = node.dtype === "f16";
  // 4 elements a thread where the part is vec4-aligned (dq, dk, dv always are: head dims are multiples of 4)
  const v4 = offset % 4 === 0 && node.size % 4 === 0;
  const count = v4 ? node.size / 4 : f16 ? Math.ceil(node.size / 2) : node.size;
  const g = auxGrid(count, caps.limits.maxComputeWorkgroupsPerDimension);
  return {
    launches: [{
      label: `flex_bwd_copy ${which}${f16 ? " f16" : ""}`,
      code: f16 ? copyF16Wgsl(v4) : copyWgsl(v4),
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: packed },
        { kind: "output", tensor: node },
        { kind: "uniform", data: Uint32Array.from(MOVE_UNIFORMS, (k) => ({ count: v4 ? count : node.size, src_off: v4 ? offset / 4 : offset, dst_off: 0, grid_x: g.gridX })[k]) },
      ],
      workgroups: g.grid,
    }],
    defines: [node],
    checks: [],
  };
}

/** Lowering of a packed "flexGrad" node (lib/passes/pack_flex_grads.ts turns every gradient node into a read of one). */
export function planFlexGrad(node: Tensor<"flexGrad">, caps: Capabilities): NodePlan {
  if (node.arg.which !== "packed") {
    throw new InvalidArgument({ message: `internal: gradient node "${node.arg.which}" reached the lowering unpacked (lib/passes/pack_flex_grads.ts runs first)` });
  }
  return planPacked({ node, bwd: node.arg.bwd, layout: packedLayout(node.arg.bwd.call) }, caps);
}
