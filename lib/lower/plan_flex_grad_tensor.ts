/**
 * The packed flex backward in the tensor family (lib/lower/flex_bwd_tensor_config.ts says when): the same three
 * launches as the portable plan (lib/lower/plan_flex_grad.ts) with f16 operands:
 *   1 preprocess  ld = (lse·log2 e, Δ − dLse) from the f16 call's own out (f16) and lse
 *   2 dK/dV, 3 dQ  kernels/flex_backward_tensor.ts, reading the f16 q, k, v and an f16 dO
 * and the same packed f32 gradient buffer (the graph's casts return dq, dk, dv in f16).
 * With the stored-dS' path (tensorDqFromDsWanted, where tensorDqFromDsApplies): per chunk of kv heads, dK/dV also
 * storing its f16 dS' into a scratch, then dQ = scale·dS'·K (kernels/flex_bwd_dq_from_ds_tensor.ts) instead of 3.
 *
 * The backward node's call is the f16 call's f32 twin (lib/passes/vjp_rules.ts); this plan binds the twin's f16
 * sources instead (`f16SourceOf`), so neither the twin's f32 forward nor the f32 copies of q, k, v are computed.
 */
import { f16SourceOf, flexNodes } from "../attention/flex_attention.ts";
import { cast } from "../tensor/ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { KernelLaunch, NodePlan } from "./plan.ts";
import type { FlexBwd, PackedLayout } from "../passes/flex_grad.ts";
import type { FlexBwdMode } from "../../kernels/flex_backward.ts";
import { FLEX_BWD_TENSOR_UNIFORMS, type FlexBwdTensorConfig, flexBackwardTensorWgsl } from "../../kernels/flex_backward_tensor.ts";
import type { FLEX_BWD_UNIFORMS } from "../../kernels/flex_backward.ts";
import { fusedBindings, fusedGrid, fusedUniforms, preprocessLaunch } from "./flex_bwd_launch.ts";
import {
  type BwdTensorProblem, bwdFamilyFor, bwdTensorOverride, chooseDqFromDsTensorConfig, chooseFlexBwdTensorConfig,
  tensorDqFromDsApplies, tensorDqFromDsWanted,
} from "./flex_bwd_tensor_config.ts";
import { dqFromDsTensorKey, dqFromDsTensorWgsl, dsTRowStride } from "../../kernels/flex_bwd_dq_from_ds_tensor.ts";
import { dsCompactChunks, dsCompactTables, dsScratchBytes } from "./plan_flex_grad_ds.ts";
import type { TensorMode } from "./flex_tensor_config.ts";
import { flexBwdHooks } from "./flex_bwd_hooks.ts";

// the tensor kernels read the portable kernels' uniform struct (fusedUniforms fills it): a type error if they diverge
const _sameUniforms: typeof FLEX_BWD_UNIFORMS = FLEX_BWD_TENSOR_UNIFORMS;
import { requestedCapGradWords } from "../passes/flex_grad.ts";

/** The packed block tables and captured data of the call (plan_flex_grad.ts packs them). */
export interface TensorBwdShared {
  readonly tabCaps: { readonly data: Uint32Array; readonly off: readonly number[]; readonly tableWords: number };
  readonly fail: (v: number) => Error;
}

const f16Casts = new WeakMap<Tensor, Tensor>();

/** dO as f16: the f16 cotangent under the vjp's f32 cast, else one memoized cast node. */
function dOutF16(dOut: Tensor): Tensor {
  if (dOut.op === "cast" && dOut.inputs[0].dtype === "f16") return dOut.inputs[0];
  let hit = f16Casts.get(dOut);
  if (!hit) { hit = cast(dOut, "f16"); f16Casts.set(dOut, hit); }
  return hit;
}

export function bwdTensorProblemOf(bwd: FlexBwd): BwdTensorProblem {
  const call = bwd.call;
  const [QB, KB] = call.blockMask.blockSize;
  const src = f16SourceOf(call);
  const { D, Dv, Sq, Skv } = call.dims;
  // features the tensor kernels do not implement (dropout, when a call has it) run the portable backward
  const unsupported = (call as { dropout?: unknown }).dropout !== undefined;
  return { dtype: src ? "f16" : call.q.dtype, D, Dv, QB, KB, Sq, Skv, captureGrads: requestedCapGradWords(bwd), unsupported };
}

/** The family of the packed backward of `bwd` on `caps`. */
export function bwdFamilyOf(bwd: FlexBwd, caps: Capabilities): "portable" | TensorMode {
  return bwdFamilyFor(bwdTensorProblemOf(bwd), caps, bwd.call.kernelOptions);
}

/** WGSL and config of one tensor backward kernel (exported for tests, probes and `explain`); `pinned` forces a config. */
export function flexBackwardTensorSource(
  bwd: FlexBwd,
  mode: FlexBwdMode,
  caps: Capabilities,
  tensorMode: TensorMode,
  tableWords: number,
  pinned?: FlexBwdTensorConfig,
): { code: string; config: FlexBwdTensorConfig } {
  const config = pinned ?? chooseFlexBwdTensorConfig(mode, bwdTensorProblemOf(bwd), caps, tensorMode);
  const hooks = flexBwdHooks(bwd.call, tableWords);
  return { code: flexBackwardTensorWgsl(mode, config, hooks), config };
}

/**
 * The tensor plan of a packed backward node, or null when the portable plan runs it. `pinned` forces the
 * configs of the two kernels (device probes).
 */
export function planFlexGradTensor(
  node: Tensor,
  bwd: FlexBwd,
  layout: PackedLayout,
  caps: Capabilities,
  shared: TensorBwdShared,
  pinned?: { dq?: FlexBwdTensorConfig; dkdv?: FlexBwdTensorConfig },
): NodePlan | null {
  const tensorMode = pinned?.dq ? (pinned.dq.emulate ? "emulated" : "native") : bwdFamilyOf(bwd, caps);
  const src = f16SourceOf(bwd.call);
  if (tensorMode === "portable" || !src) return null;
  const call = bwd.call;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const fwd = flexNodes(src);
  const dO = dOutF16(bwd.dOut);
  const tc = shared.tabCaps;
  // Δ from the f16 call's own out and dO (PyTorch's backward also takes Δ from its f16 out)
  const preprocess = preprocessLaunch(call, { out: fwd.out, dOut: dO, lse: fwd.lse, dLse: bwd.dLse }, "f16", maxGrid);

  const fused = (mode: FlexBwdMode): KernelLaunch => {
    const { code, config } = flexBackwardTensorSource(bwd, mode, caps, tensorMode, tc.tableWords, pinned?.[mode]);
    const { grid, aTiles } = fusedGrid(call, mode, config.BA, maxGrid);
    return {
      label: `flex_bwd_${mode}_tensor${config.emulate ? " (emulated)" : ""} ${call.scoreMod.name}/${call.blockMask.tracedMask.name} ` +
        `BA${config.BA} SG${config.subgroups} BB${config.BB}${config.pipeline ? " pipelined" : ""}${config.quadPass ? " quad" : ""}${config.matrixStage ? " matrix-staged" : ""}${config.oneStage ? " one-stage" : ""}${config.ownRows ? " own-rows" : ""}${config.oneFs ? " one-fs" : ""}${config.ownerSmem ? " owner-smem" : ""}${config.roleSplit ? " role-split" : ""}${config.lateLoads ? " late-loads" : ""}${config.probe ? ` DIAGNOSTIC ${config.probe}` : ""}${config.ownerDirect ? " owner-direct" : ""}${config.streamDirect ? " stream-direct" : ""}`,
      code,
      entryPoint: "main",
      // no captured-tensor gradients in this family: err holds the flags word only
      bindings: fusedBindings(call, { q: src.q, k: src.k, v: src.v, dOut: dO, node }, tc.data, 4, fusedUniforms(call, mode, aTiles, layout, tc.off)),
      workgroups: grid,
    };
  };

  // dQ from the dK/dV kernel's stored dS' where it applies (per chunk of heads: dK/dV + store, then the dQ GEMM)
  const fromDs = tensorDqFromDsWanted(tensorMode) ? dsLaunches(node, bwd, layout, caps, shared, tensorMode, { q: src.q, k: src.k, v: src.v, dO }, pinned?.dkdv) : null;
  // bwdTensorOverride.skip (device probes): one mode's launch left out, to time the other alone
  const skip = bwdTensorOverride?.skip;
  if (fromDs) {
    const kept = fromDs.filter((l) => !skip || !l.label.startsWith(`flex_bwd_${skip}_tensor`));
    return { launches: [preprocess, ...kept], defines: [node], checks: [{ scratch: "err", fail: shared.fail }] };
  }
  const modes = (["dkdv", "dq"] as const).filter((m) => m !== skip);
  return { launches: [preprocess, ...modes.map(fused)], defines: [node], checks: [{ scratch: "err", fail: shared.fail }] };
}

/** Chunks of flattened kv heads (batch × kv head) of the dense dS'ᵀ scratch (f16 [q heads][Skv][Sq rounded to 4])
 * under the bound, as few as fit and then as even as they go (lib/lower/plan_flex_grad_ds.ts dsChunks' rule). */
function denseChunksF16(bwd: FlexBwd, caps: Capabilities, capBytes: number): { chunks: { kv0: number; kvHeads: number; base: number }[]; bytes: number } | null {
  const { B, Hq, Hkv, Sq, Skv } = bwd.call.dims;
  const limit = Math.min(capBytes, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize);
  const perKvHead = (Hq / Hkv) * Skv * dsTRowStride(Sq, bwdTensorOverride?.dsPad) * 2;
  if (perKvHead > limit) return null;
  const total = B * Hkv;
  const n = Math.ceil(total / Math.min(total, Math.floor(limit / perKvHead)));
  const per = Math.ceil(total / n);
  const chunks = [];
  for (let f0 = 0; f0 < total; f0 += per) chunks.push({ kv0: f0, kvHeads: Math.min(per, total - f0), base: 0 });
  return { chunks, bytes: per * perKvHead };
}

/**
 * The stored-dS' launches (kernels/flex_bwd_dq_from_ds_tensor.ts): per chunk of kv heads, the pipelined dK/dV kernel
 * with `storeDs` then the dQ GEMM; null where it does not apply (the fused dQ kernel runs). The scratch is planned
 * as the portable dS' path's (lib/lower/plan_flex_grad_ds.ts: the byte bound FLEX_BWD_DS_SCRATCH_MIB, the compact
 * slot tables and chunks, compact where the dense scratch does not fit or needs twice its chunks), in f16.
 */
function dsLaunches(
  node: Tensor,
  bwd: FlexBwd,
  layout: PackedLayout,
  caps: Capabilities,
  shared: TensorBwdShared,
  tensorMode: TensorMode,
  t: { q: Tensor; k: Tensor; v: Tensor; dO: Tensor },
  pinnedDkdv?: FlexBwdTensorConfig,
): KernelLaunch[] | null {
  const call = bwd.call;
  const p = bwdTensorProblemOf(bwd);
  const o = bwdTensorOverride;
  const base = pinnedDkdv ?? chooseFlexBwdTensorConfig("dkdv", p, caps, o?.dsDiag === "emulateDkdv" ? "emulated" : tensorMode);
  if (!tensorDqFromDsApplies(base, p, caps)) return null;
  const cap = o?.dsChunkBytes ?? dsScratchBytes();
  const tc = shared.tabCaps;
  const dense = o?.dsLayout === "compact" ? null : denseChunksF16(bwd, caps, cap);
  const ct = o?.dsLayout === "dense" ? null : dsCompactTables(call, tc.data, tc.off);
  // dsCompactChunks counts f32 slots: twice the bound is the same count of f16 slots (the device limits halved: safe)
  const cc = ct ? dsCompactChunks(call, caps, ct, 2 * cap) : null;
  // compact where it needs fewer head chunks than dense (session 12, H200, B4 H16 S4096 D64, GEMM BB 32: causal 3 chunks
  // against 4, backward 7.15 → 6.77 ms, prefix LM 8.77 → 8.13, document 4.23 → 3.78; noop: the same chunks and times)
  const compact = ct && cc && (!dense || o?.dsLayout === "compact" || cc.chunks.length < dense.chunks.length)
    ? { t: ct, chunks: cc.chunks, bytes: cc.bytes / 2 } : null;
  if (!compact && !dense) return null;
  const chunks = compact ? compact.chunks : dense!.chunks;
  const { Hq, Hkv } = call.dims;
  const group = Hq / Hkv;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  if (Math.max(...chunks.map((x) => x.kvHeads)) * group > maxGrid) return null;
  const lay = compact ? "compact" as const : "dense" as const;
  const pad = lay === "dense" && o?.dsPad ? { dsPad: o.dsPad } : {};
  const dkdvC: FlexBwdTensorConfig = { ...base, storeDs: lay, ...pad };
  const dqc0 = chooseDqFromDsTensorConfig(p, caps, o?.dsDiag === "emulateGemm" ? "emulated" : tensorMode);
  if (!dqc0) return null;
  const dqc = { ...dqc0, ...pad };
  const hooks = flexBwdHooks(call, tc.tableWords);
  const dkdvCode = flexBackwardTensorWgsl("dkdv", dkdvC, hooks);
  const dqCode = dqFromDsTensorWgsl(dqc, { compact: compact !== null });
  const kv = fusedGrid(call, "dkdv", dkdvC.BA, maxGrid);
  const q = fusedGrid(call, "dq", dqc.BA, maxGrid);
  const data = compact ? compact.t.data : tc.data;
  const dsU = (f0: number, slot0: number) => compact
    ? [f0, compact.t.offStart, compact.t.offSlot, compact.t.offHead, slot0, 0, 0, 0]
    : [f0, 0, 0, 0, 0, 0, 0, 0];
  const kvU = fusedUniforms(call, "dkdv", kv.aTiles, layout, tc.off);
  const qU = fusedUniforms(call, "dq", q.aTiles, layout, tc.off);
  const ds = { kind: "scratch" as const, name: "ds16", bytes: compact ? compact.bytes : dense!.bytes };
  const c = dkdvC;
  const out: KernelLaunch[] = [];
  for (const { kv0: f0, kvHeads: n, base: slot0 } of chunks) {
    out.push({
      label: `flex_bwd_dkdv_tensor${c.emulate ? " (emulated)" : ""} ${call.scoreMod.name}/${call.blockMask.tracedMask.name} BA${c.BA} SG${c.subgroups} BB${c.BB} pipelined quad` +
        `${c.matrixStage ? " matrix-staged" : ""}${c.oneStage ? " one-stage" : " two-stage"}${c.ownRows ? " own-rows" : ""}${c.oneFs ? " one-fs" : ""}${c.ownerSmem ? " owner-smem" : ""}${c.roleSplit ? " role-split" : ""}${c.lateLoads ? " late-loads" : ""} ds ${lay}${c.dsPad ? ` pad${c.dsPad}` : ""} heads ${f0}+${n}`,
      code: dkdvCode,
      entryPoint: "main",
      bindings: [
        ...fusedBindings(call, { q: t.q, k: t.k, v: t.v, dOut: t.dO, node }, data, 4, [...kvU, ...dsU(f0, slot0)]),
        ds,
      ],
      workgroups: [kv.grid[0], n, 1],
    });
    out.push({
      label: `flex_bwd_dq_tensor${dqc.emulate ? " (emulated)" : ""} from dS' ${dqFromDsTensorKey(dqc)} ${lay} heads ${f0 * group}+${n * group}`,
      code: dqCode,
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: t.k },
        { kind: "data", data, persistent: true },
        { ...ds, readOnly: true },
        { kind: "output", tensor: node },
        { kind: "uniform", data: Uint32Array.from([...qU, ...dsU(f0, slot0)]) },
      ],
      workgroups: [q.grid[0], n * group, 1],
    });
  }
  return out;
}
