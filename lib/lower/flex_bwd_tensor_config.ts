/**
 * The tensor-family backward (kernels/flex_backward_tensor.ts): when it runs, and its config space.
 *
 *   native     f16 inputs, an adapter with 16×16×16 f16→f32 subgroup matrices and 32-lane subgroups
 *              (hasNativeMatrices). D, Dv multiples of 16 and whole tiles: the pipelined template, one register
 *              stage (kernels/flex_backward_tensor_pipe.ts), in the shapes checked against float64 on the H200
 *              (PIPE_NATIVE_DEFAULT); else the direct-load template on whole streamed tiles (owner matrices from
 *              global memory, staged for a partial owner tile; streamed ones from global memory)
 *   emulated   `kernelOptions.family: "tensor"` elsewhere (needs shader-f16): the same template with plain-WGSL
 *              matrices, every edge case staged (exact, slow: CI runs the family's tiling and masking with it)
 *   portable   everything else, and any score mod with captured f32 tensors (their gradients are summed by the
 *              portable dQ kernel's deterministic partials only)
 */
import type { Capabilities } from "./capabilities.ts";
import type { KernelOptions } from "../attention/kernel_options.ts";
import { hasNativeMatrices, type TensorMode } from "./flex_tensor_config.ts";
import {
  checkFlexBwdTensorConfig, type FlexBwdTensorConfig, flexBwdTensorSmemBytes, flexBwdTensorThreads,
} from "../../kernels/flex_backward_tensor.ts";
import type { FlexBwdMode } from "../../kernels/flex_backward.ts";
import { NoConfigFits } from "../errors.ts";
import { readEnv } from "../runtime/env.ts";
import {
  checkDqFromDsTensorConfig, type DqFromDsTensorConfig, dqFromDsTensorSmemBytes, dqFromDsTensorThreads,
} from "../../kernels/flex_bwd_dq_from_ds_tensor.ts";

/** What the backward's family choice reads of a call. */
export interface BwdTensorProblem {
  readonly dtype: string;
  readonly D: number;
  readonly Dv: number;
  readonly QB: number;
  readonly KB: number;
  readonly Sq: number;
  readonly Skv: number;
  /** Captured f32 tensors of the score mod (their gradients need the portable dQ kernel). */
  readonly captureGrads: number;
  /** The call uses a feature the tensor kernels lack (dropout): portable. */
  readonly unsupported?: boolean;
}

/** Owner rows, subgroups, streamed columns and template, in preference order. The pipelined template first (every
 * operand staged in padded workgroup memory, kernels/flex_backward_tensor_pipe.ts; its quad scalar pass also compiles
 * 14× faster on lavapipe in dq mode: 1.3 vs 18 s); the direct-load template after
 * (R = 16 rows per subgroup keeps the register set of its dK/dV kernel at ~128 per lane with D = 64). */
export interface BwdTensorShape {
  readonly BA: number; readonly subgroups: number; readonly BB: number; readonly pipeline?: boolean; readonly quadPass?: boolean;
  readonly matrixStage?: boolean; readonly oneStage?: boolean;
  /** The pipelined template's subgroup-private scalar pass (one barrier a tile natively). */
  readonly ownRows?: boolean;
  /** With ownRows: S and dP through one f32 region. */
  readonly oneFs?: boolean;
  /** With ownRows: the owner operands in workgroup memory. */
  readonly ownerSmem?: boolean;
  /** dkdv: two subgroup roles over the same rows (K / dK and V / dV; FlexBwdTensorConfig.roleSplit). */
  readonly roleSplit?: boolean;
  /** One stage, no ownRows: the next tile's loads after barrier A (FlexBwdTensorConfig.lateLoads). */
  readonly lateLoads?: boolean;
  /** Only for this mode's kernel. */
  readonly mode?: FlexBwdMode;
  /** Only for native kernels (a shape the H200 chose whose plain form the emulated list should not gain). */
  readonly nativeOnly?: boolean;
}
const SHAPES: readonly BwdTensorShape[] = [
  // pipelined, one register stage (the two-stage pipeline was miscompiled on the H200, see PIPE_NATIVE_DEFAULT);
  // natively each of these ran against float64 on the H200 as listed (matrixStage applies natively only)
  // the dK/dV kernel with the next streamed tile's loads after barrier A (session 16, H200, bench/tensor_bwd_breakdown.ts:
  // dK/dV 2.097 → 2.032–2.097 ms a noop chunk, 1.638 → 1.573 causal; backward 10.715 → 10.573 noop, 6.510 → 6.439 causal);
  // the fused dQ kernel keeps the plain form (its lateLoads is untimed)
  { BA: 128, subgroups: 8, BB: 16, pipeline: true, quadPass: true, oneStage: true, lateLoads: true, mode: "dkdv" },
  { BA: 128, subgroups: 8, BB: 16, pipeline: true, quadPass: true, oneStage: true },
  { BA: 64, subgroups: 4, BB: 32, pipeline: true, quadPass: true, oneStage: true, matrixStage: true },
  { BA: 32, subgroups: 2, BB: 32, pipeline: true, quadPass: true, oneStage: true, matrixStage: true },
  { BA: 32, subgroups: 2, BB: 16, pipeline: true, quadPass: true, oneStage: true, matrixStage: true },
  // the direct-load template
  { BA: 64, subgroups: 4, BB: 32 },
  { BA: 64, subgroups: 2, BB: 32 },
  { BA: 128, subgroups: 8, BB: 32 },
  { BA: 32, subgroups: 2, BB: 32 },
  { BA: 64, subgroups: 4, BB: 64 },
  { BA: 32, subgroups: 2, BB: 16 },
  { BA: 16, subgroups: 1, BB: 16 },
];

/** Native calls plan the pipelined template by default, one register stage only, on whole tiles with D, Dv multiples
 * of 16 (what ran against float64 on the H200, session 6 H5 calls 1–2: noop, causal, softcap + causal, sliding
 * window, GQA 8:2, D 32 / 64 / 128 — all exact, rel. L2 ≈ 3e-4). The two-stage pipeline (tile t + 2's loads in
 * registers across the loop's back edge) came out wrong there in 3 of 4 variants (vec4-staged dQ, or dQ, dK, dV;
 * matrix-staged BA 128: everything; rel. L2 1.3–3.6) while its emulation is exact: the driver's stale
 * workgroup-memory loads again (kernels/flex_forward_tensor.ts), mechanism unknown; ragged and cross lengths
 * were not yet checked with the one-stage kernels natively, so they keep the direct-load template's rule. */
const PIPE_NATIVE_DEFAULT = true;

/** The operand sources proven right on the H200 (see the file comment); other choices are for device probes. */
export const NATIVE_SOURCES = { ownerDirect: true, streamDirect: true } as const;
/** Emulated: everything staged (one code path per product: half the WGSL, so Mesa compiles it in CI time; the
 * direct loads' addressing is proven with the intrinsics on the device). */
export const EMULATED_SOURCES = { ownerDirect: false, streamDirect: false } as const;

/**
 * Probe / test override (null: none): forces the operand sources and, optionally, the tile shape of every tensor
 * backward planned while set (bench/tensor_bwd_probe.ts times and checks each variant on the device with it).
 */
export let bwdTensorOverride: {
  ownerDirect: boolean; streamDirect: boolean; shape?: BwdTensorShape;
  /** Plan every backward portable (the probe's "before" timing). */
  disabled?: boolean;
  /** Only shapes of this template (true: pipelined, false: direct-load). */
  pipeline?: boolean;
  /** Timing only (wrong gradients): leave this mode's launch out of the plan, to time the other mode alone. */
  skip?: FlexBwdMode;
  /** Timing only (wrong gradients): the pipelined template's diagnostic knob (FlexBwdTensorConfig.probe). */
  probe?: "noScalar" | "noStage";
  /** Pipelined shapes with (true) or without (false) the quad scalar pass, the matrix staging. */
  quadPass?: boolean;
  matrixStage?: boolean;
  oneStage?: boolean;
  ownRows?: boolean;
  oneFs?: boolean;
  ownerSmem?: boolean;
  /** dkdv shapes with (true) or without (false) the role split. */
  roleSplit?: boolean;
  /** One-stage shapes with (true) or without (false) the loads after barrier A. */
  lateLoads?: boolean;
  /** Owner rows staged at a time (tests: the chunked owner staging on small shapes). */
  ownerChunk?: number;
  /** A pinned shape per mode (before `shape`). */
  shapeFor?: Partial<Record<FlexBwdMode, BwdTensorShape>>;
  /** dQ from the dK/dV kernel's stored dS' (lib/lower/plan_flex_grad_tensor.ts) on / off, before the env knob. */
  dqFromDs?: boolean;
  /** Its scratch bound in bytes (tests force several head chunks), its layout, its GEMM's shape. */
  dsChunkBytes?: number;
  dsLayout?: "dense" | "compact";
  /** The dense scratch's row stride padded by this many f16 (a multiple of 4): both kernels read it. */
  dsPad?: number;
  dqDs?: { BA: number; subgroups: number; BB: number; qMajor?: boolean; probe?: "shiftDs" | "noLoad" | "noMma"; prefetch2?: boolean };
  /** Diagnostics of the native stored-dS' path: one of its two kernels emulated (the emulation is exact), so a
   * device check tells which native kernel is wrong. */
  dsDiag?: "emulateGemm" | "emulateDkdv";
} | null = null;

export function setBwdTensorOverride(o: typeof bwdTensorOverride): void {
  bwdTensorOverride = o;
}

/** The pipelined template's knobs of a shape under the override. */
function pipeKnobs(s: BwdTensorShape, p: BwdTensorProblem, tensorMode: TensorMode): Partial<FlexBwdTensorConfig> {
  const o = bwdTensorOverride;
  const quadPass = o?.quadPass ?? s.quadPass ?? false;
  // matrix staging: native with D, Dv multiples of 16 only
  const matrixStage = (o?.matrixStage ?? s.matrixStage ?? false) && tensorMode === "native" && p.D % 16 === 0 && p.Dv % 16 === 0;
  const oneStage = o?.oneStage ?? s.oneStage ?? false;
  // a shape's own-rows knobs apply natively (the H200 chose them); emulated kernels keep the shape's plain form (CI's
  // kernels unchanged; tests/kernels_bwd/flex_backward_tensor_own_rows.test.ts runs the knobs through the override)
  const nat = tensorMode === "native";
  const ownRows = o?.ownRows ?? (nat && s.ownRows) ?? false;
  const oneFs = ownRows && (o?.oneFs ?? (nat && s.oneFs) ?? false);
  const ownerSmem = ownRows && (o?.ownerSmem ?? (nat && s.ownerSmem) ?? false);
  const roleSplit = o?.roleSplit ?? s.roleSplit ?? false;
  const lateLoads = oneStage && !ownRows && (o?.lateLoads ?? s.lateLoads ?? false);
  return {
    ...(lateLoads ? { lateLoads } : {}),
    ...(roleSplit ? { roleSplit } : {}),
    pipeline: true, ...(quadPass ? { quadPass } : {}), ...(matrixStage ? { matrixStage } : {}), ...(oneStage ? { oneStage } : {}),
    ...(ownRows ? { ownRows } : {}), ...(oneFs ? { oneFs } : {}), ...(ownerSmem ? { ownerSmem } : {}),
    ...(o?.probe ? { probe: o.probe } : {}), ...(o?.ownerChunk ? { ownerChunk: o.ownerChunk } : {}),
  };
}

/** Every owner and streamed tile of both kernels whole (Sq, Skv multiples of BA and BB). */
function wholeTiles(p: BwdTensorProblem, s: BwdTensorShape): boolean {
  return [p.Sq, p.Skv].every((n) => n % s.BA === 0 && n % s.BB === 0);
}

function blocks(mode: FlexBwdMode, p: BwdTensorProblem) {
  return mode === "dq" ? { owner: p.QB, stream: p.KB, streamLen: p.Skv } : { owner: p.KB, stream: p.QB, streamLen: p.Sq };
}

/** Every config valid for the problem on the device, in preference order. */
export function flexBwdTensorCandidates(
  mode: FlexBwdMode,
  p: BwdTensorProblem,
  caps: Capabilities,
  tensorMode: TensorMode,
  sources?: { ownerDirect: boolean; streamDirect: boolean },
): FlexBwdTensorConfig[] {
  const lim = caps.limits;
  const { owner, stream, streamLen } = blocks(mode, p);
  const by16 = p.D % 16 === 0 && p.Dv % 16 === 0;
  const out: FlexBwdTensorConfig[] = [];
  const o = bwdTensorOverride;
  // a pinned shape that does not fit this mode (e.g. too much workgroup memory for dK/dV) falls back to the list
  const pinned = o?.shapeFor?.[mode] ?? o?.shape;
  for (const s of pinned ? [pinned, ...SHAPES] : SHAPES) {
    if (owner % s.BA !== 0 || stream % s.BB !== 0 || (s.mode && s.mode !== mode) || (s.nativeOnly && tensorMode !== "native")) continue;
    if (o?.pipeline !== undefined ? !!s.pipeline !== o.pipeline : s.pipeline && tensorMode === "native" && !PIPE_NATIVE_DEFAULT) continue;
    // natively the pipelined template only as checked on the device (see PIPE_NATIVE_DEFAULT)
    if (s.pipeline && tensorMode === "native" && o?.pipeline === undefined && !(by16 && wholeTiles(p, s))) continue;
    // the pipelined template stages every operand (edge tiles and head-dim padding included)
    if (!s.pipeline && tensorMode === "native" && (!by16 || streamLen % s.BB !== 0)) continue;
    const src = s.pipeline ? { ownerDirect: false, streamDirect: false }
      : sources ?? (o ? { ownerDirect: o.ownerDirect, streamDirect: o.streamDirect } : undefined) ?? (tensorMode === "native" ? NATIVE_SOURCES : EMULATED_SOURCES);
    const c: FlexBwdTensorConfig = {
      family: "tensor", D: p.D, Dv: p.Dv, BA: s.BA, subgroups: s.subgroups, BB: s.BB,
      emulate: tensorMode === "emulated", subgroupSize: 32, ...src, ...(s.pipeline ? pipeKnobs(s, p, tensorMode) : {}),
    };
    try { checkFlexBwdTensorConfig(c); } catch { continue; }
    if (flexBwdTensorThreads(c) > Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX)) continue;
    if (flexBwdTensorSmemBytes(c, mode) > lim.maxComputeWorkgroupStorageSize) continue;
    out.push(c);
  }
  return out;
}

/**
 * The family of the backward of a call: "portable" or the tensor mode. Automatic: native where the proven path
 * applies to both kernels, else portable; `family: "tensor"` forces native there, emulated elsewhere.
 */
export function bwdFamilyFor(p: BwdTensorProblem, caps: Capabilities, opts: KernelOptions): "portable" | TensorMode {
  if (opts.family === "portable" || p.dtype !== "f16" || p.captureGrads > 0 || p.unsupported || bwdTensorOverride?.disabled) return "portable";
  const fits = (m: TensorMode) => flexBwdTensorCandidates("dq", p, caps, m).length > 0 && flexBwdTensorCandidates("dkdv", p, caps, m).length > 0;
  if (hasNativeMatrices(caps) && fits("native")) return "native";
  if (opts.family === "tensor" && caps.features.has("shader-f16") && fits("emulated")) return "emulated";
  return "portable";
}

/** The heuristic pick (the first candidate), or NoConfigFits. */
export function chooseFlexBwdTensorConfig(mode: FlexBwdMode, p: BwdTensorProblem, caps: Capabilities, tensorMode: TensorMode): FlexBwdTensorConfig {
  const c = flexBwdTensorCandidates(mode, p, caps, tensorMode)[0];
  if (!c) {
    throw new NoConfigFits({
      message: `no tensor-family backward (${mode}) config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.QB}×${p.KB}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B (the BlockMask's blocks must be multiples of 16)`,
    });
  }
  return c;
}

/**
 * dQ = scale·dS'·K from the dS' the pipelined dK/dV kernel stores (kernels/flex_bwd_dq_from_ds_tensor.ts) instead
 * of the fused dQ kernel (which recomputes S, P and dP). On by default (bwdTensorOverride.dqFromDs, else
 * FLEX_BWD_TENSOR_DQ_FROM_DS=1 / =0, turns it on / off). History: sessions 7–8 found its dq wrong natively (rel. L2
 * ≈ 1.4, dk / dv right, the emulation exact); a mapping probe showed dq[q][d] = dq[q][d − 6]: the K matrices read
 * 12 bytes early, the three lone u32 walk words in front of the K slots in the driver's workgroup layout. With every
 * workgroup variable a multiple of 16 bytes (the GEMM's walk_s) it is exact on the H200 (session 8, integrator's call
 * B: dq 3.0–3.2e-4 against float64 over noop / causal / softcap / GQA 8:2 / D 32, 64, 80, 128 / cross 256×384 / head
 * chunks) and faster at B4 H16 S4096 D64 f16, with the 8-subgroup GEMM: backward noop 15.47 → 13.19 ms, causal
 * 8.46 → 8.04, sliding window 1024 4.43 → 3.69, document 5.07 → 4.44.
 */
export const TENSOR_DQ_FROM_DS_DEFAULT = true;
export function tensorDqFromDsWanted(_tensorMode: TensorMode): boolean {
  const o = bwdTensorOverride?.dqFromDs;
  if (o !== undefined) return o;
  const e = readEnv("FLEX_BWD_TENSOR_DQ_FROM_DS");
  return e === "1" ? true : e === "0" ? false : TENSOR_DQ_FROM_DS_DEFAULT;
}

/** Where the stored-dS' path applies to a dK/dV config: the pipelined template's quad pass (one or two stages), whole
 * tiles, D and Dv multiples of 16, a ninth storage binding for the scratch. */
export function tensorDqFromDsApplies(dkdv: FlexBwdTensorConfig, p: BwdTensorProblem, caps: Capabilities): boolean {
  return !!dkdv.pipeline && !!dkdv.quadPass && !dkdv.probe && p.D % 16 === 0 && p.Dv % 16 === 0 &&
    p.QB % 4 === 0 && wholeTiles(p, dkdv) && caps.limits.maxStorageBuffersPerShaderStage >= 9;
}

/** The dQ GEMM's shapes in preference order: 16 rows a subgroup first (8 subgroups: noop 0.85–0.92 ms a 16-head chunk
 * against 1.25 with 4 subgroups of 32 rows, H200 session 7), then R = 32 (each K matrix used twice). Session 12 (H200,
 * B4 H16 S4096 D64): the loads bound it (BB 32: 0.786 ms a 16-head chunk; 0.262 without them, 0.655 without the
 * products), and 16-kv-row tiles load faster — 0.524 ms (half the load registers and 23 KB of workgroup memory a
 * workgroup: more of them a SM) — than BB 32 with one register set or BB 16 with two (0.590; `prefetch2`, a knob).
 * Backward ms, BB 16 against BB 32 (calls 8–9): noop 10.73 / 11.81, causal 6.44 / 6.81, prefix LM 2048 7.70 / 8.19,
 * document 3.59 / 3.79, softcap + causal 7.57 / 7.93, sliding window 1024 2.92 / 3.12, NATTEN 2.50 / 2.66. */
const DQ_DS_SHAPES = [
  { BA: 128, subgroups: 8, BB: 16 },
  { BA: 128, subgroups: 8, BB: 32 }, { BA: 128, subgroups: 4, BB: 32 }, { BA: 64, subgroups: 2, BB: 32 },
  { BA: 64, subgroups: 4, BB: 32 }, { BA: 32, subgroups: 2, BB: 16 }, { BA: 16, subgroups: 1, BB: 16 },
] as const;

export function chooseDqFromDsTensorConfig(p: BwdTensorProblem, caps: Capabilities, tensorMode: TensorMode): DqFromDsTensorConfig | null {
  const lim = caps.limits;
  const pin = bwdTensorOverride?.dqDs;
  for (const s of pin ? [pin, ...DQ_DS_SHAPES] : DQ_DS_SHAPES) {
    if (p.QB % s.BA !== 0 || p.KB % s.BB !== 0) continue;
    // the pinned shape's q-major slots and mapping probe (DqFromDsTensorConfig), those set only
    const qMajor = "qMajor" in s && s.qMajor === true ? { qMajor: true } : {};
    const probe = "probe" in s && s.probe ? { probe: s.probe } : {};
    const prefetch2 = "prefetch2" in s && s.prefetch2 === true ? { prefetch2: true } : {};
    const c: DqFromDsTensorConfig = { D: p.D, BA: s.BA, subgroups: s.subgroups, BB: s.BB, emulate: tensorMode === "emulated", ...qMajor, ...probe, ...prefetch2 };
    try { checkDqFromDsTensorConfig(c); } catch { continue; }
    if (dqFromDsTensorThreads(c) > Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX)) continue;
    if (dqFromDsTensorSmemBytes(c) > lim.maxComputeWorkgroupStorageSize) continue;
    return c;
  }
  return null;
}
