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
import { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { KernelLaunch, NodePlan } from "./plan.ts";
import { capGradLayout, type FlexBwd, packedLayout, type PackedLayout } from "../passes/flex_grad.ts";
import { FLEX_BWD_UNIFORMS, type FlexBwdCapGrad, type FlexBwdConfig, type FlexBwdMode, flexBackwardWgsl } from "../../kernels/flex_backward.ts";
import {
  auxGrid, copyWgsl, finalizeWgsl, MOVE_UNIFORMS, PREPROCESS_UNIFORMS, preprocessWgsl, REDUCE_UNIFORMS, reduceGrid, reduceWgsl,
} from "../../kernels/flex_bwd_aux.ts";
import { chooseFlexBwdConfig } from "./flex_bwd_config.ts";
import { planFlexGradTensor } from "./plan_flex_grad_tensor.ts";
import { flexBwdHooks } from "./flex_bwd_hooks.ts";
import { packCaptureData } from "./wgsl_expr.ts";
import { captureOutOfRange, dropoutUniforms, f32Bits, hostData } from "./plan_flex.ts";
import { InvalidArgument, NoConfigFits, UndefinedDerivative } from "../errors.ts";
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

/** dQ workgroups of a config: (q blocks · a_tiles, q heads, batch). */
function dqGrid(call: FlexCall, config: FlexBwdConfig): [number, number, number] {
  const nQ = call.blockMask.kvIndices.shape[2];
  return [nQ * Math.ceil(call.blockMask.blockSize[0] / config.BA), call.dims.Hq, call.dims.B];
}

function capGradPlan(call: FlexCall, config: FlexBwdConfig, reads: number, caps: Capabilities, fits: boolean): CapGradPlan {
  const words = capGradLayout(call.scoreMod).words;
  const [x, y, z] = dqGrid(call, config);
  const slices = x * y * z;
  const limit = Math.min(CAP_PARTIALS_MAX_BYTES, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize);
  const partialBytes = 4 * (1 + slices * words);
  if (words === 0 || reads === 0) return { mode: "atomic", words, slices, errBytes: 4 * (1 + words) };
  if (fits && partialBytes <= limit) return { mode: "partials", words, slices, errBytes: partialBytes };
  return { mode: "atomic", words, slices, errBytes: 4 * (1 + words) };
}

/** WGSL and config of one fused backward kernel, and how it sums capture gradients (exported for tests and `explain`). */
export function flexBackwardSource(
  call: FlexCall,
  mode: FlexBwdMode,
  caps: Capabilities,
): { code: string; config: FlexBwdConfig; capGrad: CapGradPlan } {
  const { D, Dv } = call.dims;
  const [QB, KB] = call.blockMask.blockSize;
  const hooks = flexBwdHooks(call, packTabCaps(call).tableWords);
  const problem = { D, Dv, ownerBlock: mode === "dq" ? QB : KB, streamBlock: mode === "dq" ? KB : QB };
  // dQ with capture gradients: a config with room for the merge's workgroup memory, checked against the size
  // of the partial slices; either failing falls back to the atomic path (and the plain config)
  const reads = mode === "dq" ? hooks.capReads : 0;
  let config: FlexBwdConfig | null = null;
  let capGrad: CapGradPlan | null = null;
  if (reads > 0) {
    try {
      config = chooseFlexBwdConfig(mode, { ...problem, capReads: reads }, caps);
    } catch (e) {
      if (!(e instanceof NoConfigFits)) throw e;
    }
    if (config) capGrad = capGradPlan(call, config, reads, caps, true);
  }
  if (!capGrad || capGrad.mode === "atomic") {
    config = chooseFlexBwdConfig(mode, problem, caps);
    capGrad = capGradPlan(call, config, reads, caps, false);
  }
  const features = {
    dropout: call.dropout !== undefined, prescaleQk: call.kernelOptions.prescaleQk === true, rowsSafe: call.kernelOptions.rowsGuaranteedSafe === true,
  };
  return { code: flexBackwardWgsl(mode, config!, hooks, capGrad, features), config: config!, capGrad };
}

function planPacked(p: Packed, caps: Capabilities): NodePlan {
  const { bwd, layout } = p;
  const call = bwd.call;
  const { B, Hq, Hkv, Sq, Skv } = call.dims;
  const m = call.blockMask;
  const [QB, KB] = m.blockSize;
  const [mB, mH, nQ, nKV] = m.kvIndices.shape;
  const tc = packTabCaps(call);
  // f16 calls on the tensor family (lib/lower/flex_bwd_tensor_config.ts says when)
  // (dropout: the portable backward only, which regenerates the forward's mask)
  const tensorPlan = call.dropout ? undefined : planFlexGradTensor(p.node, bwd, layout, caps, { tabCaps: tc, fail: undefinedDerivativeOrRange(call) });
  if (tensorPlan) return tensorPlan;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const rows = B * Hq * Sq;
  const hasFull = m.fullKvNumBlocks && m.fullQNumBlocks ? 1 : 0;

  const pre = auxGrid(rows, maxGrid);
  const preprocess: KernelLaunch = {
    label: "flex_bwd_preprocess",
    code: preprocessWgsl(call.dims.Dv, bwd.dLse !== null),
    entryPoint: "main",
    bindings: [
      { kind: "input", tensor: bwd.out },
      { kind: "input", tensor: bwd.dOut },
      { kind: "input", tensor: bwd.lse },
      ...(bwd.dLse ? [{ kind: "input" as const, tensor: bwd.dLse }] : []),
      { kind: "scratch", name: "ld", bytes: rows * 8 },
      { kind: "uniform", data: Uint32Array.from(PREPROCESS_UNIFORMS, (k) => ({ rows, grid_x: pre.gridX, pad0: 0, pad1: 0 })[k]) },
    ],
    workgroups: pre.grid,
  };

  const dqSource = flexBackwardSource(call, "dq", caps);
  const capGrad = dqSource.capGrad;
  const accWords = capGrad.words;

  const fused = (mode: FlexBwdMode): KernelLaunch => {
    const { code, config } = mode === "dq" ? dqSource : flexBackwardSource(call, mode, caps);
    const dq = mode === "dq";
    const ownerBlock = dq ? QB : KB;
    const aTiles = Math.ceil(ownerBlock / config.BA);
    const gridX = (dq ? nQ : nKV) * aTiles;
    const gridY = dq ? Hq : Hkv;
    if (gridX > maxGrid || gridY > maxGrid || B > maxGrid) {
      throw new NoConfigFits({ message: `flexAttention backward: grid (${gridX}, ${gridY}, ${B}) exceeds ${maxGrid} workgroups per dimension` });
    }
    const o = tc.off;
    const u: Record<(typeof FLEX_BWD_UNIFORMS)[number], number> = {
      B, Hq, Hkv, Sq, Skv, QB, KB, a_tiles: aTiles,
      row_width: dq ? nKV : nQ,
      tb_stride_b: mB === 1 ? 0 : mH * (dq ? nQ : nKV),
      tb_stride_h: mH === 1 ? 0 : (dq ? nQ : nKV),
      off_num: dq ? o[0] : o[4], off_idx: dq ? o[1] : o[5], off_full_num: dq ? o[2] : o[6], off_full_idx: dq ? o[3] : o[7],
      has_full: hasFull, scale: f32Bits(call.scale), off_dk: layout.dk / 4, off_dv: layout.dv / 4, pad0: 0,
    };
    return {
      label: `flex_bwd_${mode} ${call.scoreMod.name}/${m.tracedMask.name} BA${config.BA} TA${config.TA} G${config.G} BB${config.BB}${call.dropout ? " dropout" : ""}`,
      code,
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: call.q },
        { kind: "input", tensor: call.k },
        { kind: "input", tensor: call.v },
        { kind: "input", tensor: bwd.dOut },
        { kind: "scratch", name: "ld", bytes: rows * 8 },
        { kind: "data", data: tc.data, persistent: true },
        { kind: "scratch", name: "err", bytes: capGrad.errBytes },
        { kind: "output", tensor: p.node },
        { kind: "uniform", data: Uint32Array.from([...FLEX_BWD_UNIFORMS.map((k) => u[k]), ...dropoutUniforms(call)]) },
      ],
      workgroups: [gridX, gridY, B],
    };
  };

  const launches: KernelLaunch[] = [preprocess, fused("dkdv"), fused("dq")];
  if (accWords > 0 && capGrad.mode === "partials") {
    const capStart = layout.caps.find((x) => x !== null)!;
    const g = reduceGrid(accWords, maxGrid);
    const u: Record<(typeof REDUCE_UNIFORMS)[number], number> = {
      count: accWords, slices: capGrad.slices, src_off: 1, dst_off: capStart, grid_x: g.gridX, pad0: 0, pad1: 0, pad2: 0,
    };
    launches.push({
      label: "flex_bwd_reduce_captures",
      code: reduceWgsl(),
      entryPoint: "main",
      bindings: [
        { kind: "scratch", name: "err", bytes: capGrad.errBytes },
        { kind: "output", tensor: p.node },
        { kind: "uniform", data: Uint32Array.from(REDUCE_UNIFORMS, (k) => u[k]) },
      ],
      workgroups: g.grid,
    });
  } else if (accWords > 0) {
    const capStart = layout.caps.find((x) => x !== null)!;
    const g = auxGrid(accWords, maxGrid);
    launches.push({
      label: "flex_bwd_finalize_captures",
      code: finalizeWgsl(),
      entryPoint: "main",
      bindings: [
        { kind: "scratch", name: "err", bytes: capGrad.errBytes },
        { kind: "output", tensor: p.node },
        { kind: "uniform", data: Uint32Array.from(MOVE_UNIFORMS, (k) => ({ count: accWords, src_off: 1, dst_off: capStart, grid_x: g.gridX })[k]) },
      ],
      workgroups: g.grid,
    });
  }
  // Padding words of the packed buffer are never read; the copies below read only real gradients.
  return { launches, defines: [p.node], checks: [{ scratch: "err", fail: undefinedDerivativeOrRange(call) }] };
}

/** Lowering of a "flexGradPart" node: one gradient copied out of its packed node. */
export function planFlexGradPart(node: Tensor<"flexGradPart">, caps: Capabilities): NodePlan {
  const packed = node.inputs[0];
  const { which, offset } = node.arg;
  const g = auxGrid(node.size, caps.limits.maxComputeWorkgroupsPerDimension);
  return {
    launches: [{
      label: `flex_bwd_copy ${which}`,
      code: copyWgsl(),
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: packed },
        { kind: "output", tensor: node },
        { kind: "uniform", data: Uint32Array.from(MOVE_UNIFORMS, (k) => ({ count: node.size, src_off: offset, dst_off: 0, grid_x: g.gridX })[k]) },
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
