/**
 * The forward plan of a FlexCall: one launch of kernels/flex_forward.ts that defines both `out` and `lse`,
 * or, with split-KV (few query rows: decoding), the forward into per-split scratch slices plus
 * kernels/flex_combine.ts, which merges them into `out` and `lse`.
 *
 * Bindings (in order; 8 storage buffers, WebGPU's default limit):
 *   0 q, 1 k, 2 v           input tensors, read as vec4<f32>
 *   3 tables                data: kvNumBlocks ‖ kvIndices ‖ fullKvNumBlocks ‖ fullKvIndices (i32, packed once per
 *                           BlockMask and uploaded once per executor: `persistent`)
 *   4 caps                  data: the score mod's captures then the mask mod's, u32 words (packed once per tuple)
 *   5 err                   scratch u32 flag: a captured tensor was indexed out of range
 *   6 out, 7 lse            outputs [B, Hq, Sq, Dv] and [B, Hq, Sq] (split-KV: scratch [splits, …] of each)
 *                           returnAux (a maxScore node): always the scratch path, lse scratch [2][splits][rows]
 *                           (lse slices, then max-score slices), merged by the combine kernel (no 9th binding)
 *   8 params                uniform, FLEX_FORWARD_UNIFORMS (lengths, counts, table offsets, q_scale)
 * Grid: (nQ · m_tiles, Hq, B · splits) with m_tiles = ceil(QB / BLOCK_M).
 */
import { knownValue } from "../tensor/host_values.ts";
import { f16SourceOf, f32Call, type FlexCall, flexNodes } from "../attention/flex_attention.ts";
import { convertLaunch } from "./plan_pointwise.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "./plan.ts";
import { FLEX_FORWARD_UNIFORMS, flexForwardWgsl } from "../../kernels/flex_forward.ts";
import { DROPOUT_UNIFORMS } from "../../kernels/dropout_hash.ts";
import { FLEX_COMBINE_THREADS, FLEX_COMBINE_UNIFORMS, flexCombineWgsl } from "../../kernels/flex_combine.ts";
import { chooseFlexConfig, type FlexProblem, flexTuneCandidates } from "./flex_config.ts";
import { flexTuneKey } from "./flex_tune_key.ts";
import { chooseFlexTensorConfig, familyFor, type FamilyProblem, isX3, type TensorMode } from "./flex_tensor_config.ts";
import { absMaxLaunch, X3_ERR } from "./abs_max.ts";
import { type FlexTensorConfig, flexForwardTensorWgsl } from "../../kernels/flex_forward_tensor.ts";
import { kTransposeFits, kTransposeLaunch } from "./k_transpose.ts";
import type { FlexForwardConfig } from "../../kernels/flex_forward.ts";
import { packCaptureData, packCaptureLayout, WgslModEmitter } from "./wgsl_expr.ts";
import { IDENTITY_SCORE, type TracedMod } from "../mods/trace.ts";
import { readsArg } from "../ir/expr.ts";
import { CaptureOutOfRange, InvalidArgument, NoConfigFits } from "../errors.ts";
import { pinnedSplits } from "./split_kv.ts";
import type { BlockMaskFields } from "../blockmask/block_mask.ts";
import { chooseFlexDecode } from "./flex_decode_config.ts";
import { planFlexDecode } from "./plan_flex_decode.ts";
import { testTensorTier, tierTesting, tiersFor } from "./tiers.ts";

interface PackedTables {
  readonly data: Int32Array;
  readonly offKvNum: number;
  readonly offKvIdx: number;
  readonly offFullNum: number;
  readonly offFullIdx: number;
}

const tableCache = new WeakMap<BlockMaskFields, PackedTables>();

/** A value a plan packs on the host (`who` names the kernel in the error: "flexAttention", "… backward"). */
export function hostData(t: Tensor, what: string, who = "flexAttention"): ArrayLike<number> {
  const d = knownValue(t);
  if (!d) throw new InvalidArgument({ message: `${who} on the GPU: ${what} has no value at planning time (the executor realizes it first)` });
  return d;
}

/** The bit pattern of an f32, for f32 fields of an all-u32 uniform block. */
export const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];

/** The four kv tables in one i32 array (the kernel has 8 storage bindings to spend), cached per mask. */
export function packTables(m: BlockMaskFields): PackedTables {
  const hit = tableCache.get(m);
  if (hit) return hit;
  const parts = [
    hostData(m.kvNumBlocks, "BlockMask.kvNumBlocks"),
    hostData(m.kvIndices, "BlockMask.kvIndices"),
    m.fullKvNumBlocks ? hostData(m.fullKvNumBlocks, "BlockMask.fullKvNumBlocks") : [],
    m.fullKvIndices ? hostData(m.fullKvIndices, "BlockMask.fullKvIndices") : [],
  ];
  const offs: number[] = [];
  let n = 0;
  for (const p of parts) { offs.push(n); n += p.length; }
  const data = new Int32Array(Math.max(1, n));
  parts.forEach((p, i) => data.set(p as ArrayLike<number>, offs[i]));
  const packed = { data, offKvNum: offs[0], offKvIdx: offs[1], offFullNum: offs[2], offFullIdx: offs[3] };
  tableCache.set(m, packed);
  return packed;
}

// Packed captures, cached by the identity of the captured tensors (weakly, through the first one).
const captureCache = new WeakMap<object, Map<string, Uint32Array>>();
const NO_CAPTURES = new Uint32Array(1);

export function packCaptures(mods: readonly TracedMod[]): Uint32Array {
  const tensors = mods.flatMap((m) => m.captures) as unknown as Tensor[];
  if (tensors.length === 0) return NO_CAPTURES;
  const key = mods.map((m) => m.captures.map((c) => c.id).join(",")).join("|");
  let inner = captureCache.get(tensors[0]);
  const hit = inner?.get(key);
  if (hit) return hit;
  const data = mods.map((m) => (m.captures as unknown as Tensor[]).map((t) => hostData(t, "a captured tensor")));
  const packed = packCaptureData(mods, data);
  if (!inner) { inner = new Map(); captureCache.set(tensors[0], inner); }
  inner.set(key, packed);
  return packed;
}

export function captureOutOfRange(): Error {
  return new CaptureOutOfRange({
    message: "a captured tensor was read (t.at(...)) with an index outside its shape inside a mod on the GPU; " +
      "check the index expressions (the CPU reference names the tensor and index)",
  });
}

/** What the family choice reads of a call. */
export function familyProblemOf(call: FlexCall): FamilyProblem {
  const [QB, KB] = call.blockMask.blockSize;
  return { dtype: call.q.dtype, D: call.dims.D, Dv: call.dims.Dv, QB, KB, Skv: call.dims.Skv };
}

/** The config-relevant facts of a call (what the heuristic and the tuner key on). */
export function flexProblemOf(call: FlexCall): FlexProblem {
  const { D, Dv } = call.dims;
  const [QB, KB] = call.blockMask.blockSize;
  const identityScore = call.scoreMod.hash === IDENTITY_SCORE.hash;
  // a score mod that reads the query or key position (directly or through an index): FlexProblem.positionalScore
  return { D, Dv, QB, KB, identityScore, ...(identityScore || !readsArg(call.scoreMod.expr, "q", "kv") ? {} : { positionalScore: true }) };
}

/** The config of the call's portable kernel: pinned (tuning), the tuned winner (autotune "max"), or the heuristic's. */
function configFor(call: FlexCall, caps: Capabilities, pinned?: FlexForwardConfig): FlexForwardConfig {
  if (pinned) return pinned;
  const p = flexProblemOf(call);
  if (call.kernelOptions.autotune === "max") {
    const tuned = caps.tuned?.get(flexTuneKey("portable", "f32", p, call.kernelOptions)) as FlexForwardConfig | undefined;
    if (tuned) return { ...tuned, identityScore: p.identityScore };
  }
  return chooseFlexConfig(p, caps, call.kernelOptions);
}

/** The call's kernel-option and feature flags of the portable forward (not part of the tuned shape). */
function featureFlags(call: FlexCall): Pick<FlexForwardConfig, "prescaleQk" | "rowsSafe" | "dropout" | "aux"> {
  return {
    prescaleQk: call.kernelOptions.prescaleQk === true, rowsSafe: call.kernelOptions.rowsGuaranteedSafe === true,
    dropout: call.dropout !== undefined, aux: call.aux === true,
  };
}

/** WGSL of the call's portable kernel (exported for tests and `explain`); `splits` > 1 keeps the empty-row checks. */
export function flexForwardSource(call: FlexCall, caps: Capabilities, pinned?: FlexForwardConfig, splits = 1): { code: string; config: FlexForwardConfig } {
  const flags = featureFlags(call);
  const config = { ...configFor(call, caps, pinned), ...flags, rowsSafe: flags.rowsSafe && splits === 1 };
  return { code: flexForwardWgsl(config, forwardHooks(call, config.identityScore)), config };
}

/** Dropout and returnAux run on the portable family only (the tensor family has neither). */
export function forwardFamilyOf(call: FlexCall, caps: Capabilities): ReturnType<typeof familyFor> {
  if (call.dropout || call.aux) return "portable";
  return familyFor(familyProblemOf(call), caps, call.kernelOptions);
}

export function planFlex(call: FlexCall, caps: Capabilities): NodePlan {
  // few query rows (decoding): the decode tile, GQA heads packed into one workgroup's rows
  const decode = chooseFlexDecode(call, caps);
  if (decode) {
    const inputs = { captures: packCaptures([call.scoreMod, call.blockMask.tracedMask]), hooks: forwardHooks(call, decode.identityScore) };
    return planFlexDecode(call, caps, decode, { ...inputs, tables: packTables(call.blockMask), captureOutOfRange });
  }
  const family = forwardFamilyOf(call, caps);
  const tensor = family !== "portable" ? family : testTensorTier(call, caps);
  if (tensor) {
    // an f16 call's f32 twin (an internal call: its backward's Δ) under a forced tensor family whose pinned tile no
    // x3 shape has (kernelOptions blockM 16, say): the portable kernel, as the twin of an automatic choice runs
    if (f16SourceOf(call) && call.kernelOptions.family === "tensor" && !twinTensorFits(call, caps, tensor)) return planFlexF32(call, caps);
    const plan = planFlexTensor(call, caps, tensor);
    // an automatic choice carries the portable plan (f16 through its f32 twin; f32 as it is), fast to compile: the
    // executor may answer from it while the tensor kernel compiles (lib/lower/tiers.ts)
    return tiersFor(call) ? { ...plan, quick: () => call.q.dtype === "f16" ? planF16ThroughF32(call, caps) : planFlexF32(call, caps) } : plan;
  }
  if (call.q.dtype === "f16") return planF16ThroughF32(call, caps);
  if (tierTesting.portablePair && tiersFor(call)) {
    // the tests' stand-in pair (lib/lower/tiers.ts): another portable config, the default one as its quick tier
    const chosen = configFor(call, caps);
    const other = flexTuneCandidates(flexProblemOf(call), caps, call.kernelOptions).find((c) => c.BM !== chosen.BM || c.BN !== chosen.BN);
    if (other) return { ...planFlexF32(call, caps, { ...other, identityScore: chosen.identityScore }), quick: () => planFlexF32(call, caps) };
  }
  return planFlexF32(call, caps);
}

/**
 * f16 storage, f32 math (the portable family): the call's f32 twin (q, k, v cast to f32 by their own nodes)
 * runs the f32 kernel; out is converted to f16, lse copied.
 */
function planF16ThroughF32(call: FlexCall, caps: Capabilities): NodePlan {
  const { out, lse, maxScore } = flexNodes(call);
  const twin = flexNodes(f32Call(call));
  const launches = [convertLaunch(twin.out, out, caps), convertLaunch(twin.lse, lse, caps)];
  if (maxScore) launches.push(convertLaunch(twin.maxScore!, maxScore, caps));
  return { launches, defines: maxScore ? [out, lse, maxScore] : [out, lse], checks: [] };
}

/** The portable f32 plan of a call; `pinned` forces a config (the autotuner's candidates). */
export function planFlexF32(call: FlexCall, caps: Capabilities, pinned?: FlexForwardConfig): NodePlan {
  const { code, config } = flexForwardSource(call, caps, pinned);
  const extras = [config.dropout ? " dropout" : "", config.aux ? " aux" : "", config.prescaleQk ? " prescale" : "", config.rowsSafe ? " safe" : ""].join("");
  const label = `flex_forward ${call.scoreMod.name}/${call.blockMask.tracedMask.name} BM${config.BM} BN${config.BN} TM${config.TM} G${config.G}${extras}`;
  return forwardPlan(call, caps, {
    BM: config.BM, identityScore: config.identityScore, label,
    code: (splits) => splits === 1 || !config.rowsSafe ? code : flexForwardSource(call, caps, pinned, splits).code,
  });
}

/** The mod hooks of a call's forward kernels (both families splice the same functions). */
function forwardHooks(call: FlexCall, identityScore: boolean) {
  const mask = call.blockMask.tracedMask;
  const layout = packCaptureLayout([call.scoreMod, mask]);
  const emit = new WgslModEmitter();
  const scoreMod = identityScore
    ? "fn score_mod(score: f32, b: i32, h: i32, q: i32, kv: i32) -> f32 { return score; }"
    : emit.scoreMod(call.scoreMod, layout.offsets[0]);
  const maskMod = emit.maskMod(mask, layout.offsets[1]);
  return { preamble: emit.preamble(), scoreMod, maskMod };
}

/** Whether the tensor family has a config for a twin call (the heuristic's candidates; NoConfigFits otherwise). */
function twinTensorFits(call: FlexCall, caps: Capabilities, mode: TensorMode): boolean {
  try {
    tensorConfigFor(call, caps, mode);
    return true;
  } catch (e) {
    if (e instanceof NoConfigFits) return false;
    throw e;
  }
}

/** The tensor-family config: pinned (tuning), the tuned winner (autotune "max"), or the heuristic's. */
function tensorConfigFor(call: FlexCall, caps: Capabilities, mode: TensorMode, pinned?: FlexTensorConfig): FlexTensorConfig {
  if (pinned) return pinned;
  const p = flexProblemOf(call);
  const x3 = isX3(call.q, call.kernelOptions);
  if (call.kernelOptions.autotune === "max") {
    const tuned = caps.tuned?.get(flexTuneKey(`tensor-${mode}`, tensorTuneDtype(call), p, call.kernelOptions)) as FlexTensorConfig | undefined;
    // a winner tuned at another length is reused only where its key tiles stay whole (native: see familyFor)
    if (tuned && (mode === "emulated" || call.dims.Skv % tuned.BN === 0)) return { ...tuned, identityScore: p.identityScore };
  }
  return chooseFlexTensorConfig(p, caps, call.kernelOptions, mode, !x3, mode === "native" ? call.dims.Skv : undefined, x3);
}

/** The dtype part of a tensor-family tuning key: "f16", or "f32x3" for f32 inputs as f16 pairs. */
export function tensorTuneDtype(call: FlexCall): string {
  return isX3(call.q, call.kernelOptions) ? "f32x3" : "f16";
}

/**
 * The tensor family (f16 q/k/v, subgroup matrices; `emulated`: plain-WGSL matrices): the same bindings,
 * uniforms, grid and block walk as the portable kernel; out is written as f16 (split-KV: f32 per-split
 * slices, merged by the combine kernel into the f16 out).
 */
export function planFlexTensor(call: FlexCall, caps: Capabilities, mode: TensorMode, pinned?: FlexTensorConfig): NodePlan {
  const chosen = tensorConfigFor(call, caps, mode, pinned);
  // kTransposed: a transpose launch writes Kᵀ per head first (lib/lower/k_transpose.ts); where its grid does not
  // fit, the same shape reads row-major K
  const kT = chosen.kTransposed && kTransposeFits(call, caps.limits.maxComputeWorkgroupsPerDimension) ? kTransposeLaunch(call) : undefined;
  const config = chosen.kTransposed && !kT ? { ...chosen, kTransposed: false } : chosen;
  const hooks = forwardHooks(call, config.identityScore);
  // x3 (f32 inputs as f16 pairs): out is f32, and a launch before fills err[1..3] with the max |q|, |k|, |v|
  const x3 = !!config.x3;
  if (x3 !== (call.q.dtype === "f32")) throw new Error(`internal: tensor config x3 = ${x3} for ${call.q.dtype} inputs`);
  const label = `flex_forward_tensor${mode === "emulated" ? " (emulated)" : ""} ${call.scoreMod.name}/${call.blockMask.tracedMask.name} ` +
    `BM${config.BM} BN${config.BN} SG${config.subgroups}${config.kvDirect ? " direct" : ""}${kT ? " kT" : ""}${x3 ? " f32x3" : ""}`;
  const outF16 = (splits: number) => !x3 && splits === 1;
  return forwardPlan(call, caps, {
    BM: config.BM, identityScore: config.identityScore, label,
    code: (splits) => flexForwardTensorWgsl({ ...config, outF16: outF16(splits) }, hooks),
    // optimisticMax: the plain kernel of the same shape walks again the workgroups the first launch marked
    ...(config.optimisticMax ? { secondWalk: (splits: number) => flexForwardTensorWgsl({ ...config, optimisticMax: false, outF16: outF16(splits) }, hooks) } : {}),
    ...(kT ? { k: kT.k, before: [kT.launch] } : {}),
    ...(x3 ? { err: X3_ERR, before: [absMaxLaunch(call, caps.limits.maxComputeWorkgroupsPerDimension)] } : {}),
  });
}

interface ForwardKernel {
  readonly BM: number;
  readonly identityScore: boolean;
  readonly label: string;
  /** The WGSL for a split count (the tensor family writes f16 out without splits, f32 slices with them). */
  readonly code: (splits: number) => string;
  /** Where the kernel reads K (default: the input tensor) and launches that prepare it (the tensor family's Kᵀ). */
  readonly k?: Binding;
  readonly before?: readonly KernelLaunch[];
  /** The err scratch binding (default 4 bytes; x3: 16, words 1..3 filled by the abs-max launch in `before`). */
  readonly err?: Binding;
  /** optimisticMax (tensor family): the WGSL of the launch after the kernel, on the same bindings with uniform pad1 = 1,
   * that walks again the workgroups whose rows' max outgrew the first walk's reference (kernels/flex_forward_tensor_pipe.ts). */
  readonly secondWalk?: (splits: number) => string;
}

/** Bindings, uniforms, grid and the split-KV combine shared by both forward families. */
function forwardPlan(call: FlexCall, caps: Capabilities, kernel: ForwardKernel): NodePlan {
  const { out, lse, maxScore } = flexNodes(call);
  const { B, Hq, Hkv, Sq, Skv, Dv } = call.dims;
  const m = call.blockMask;
  const [QB, KB] = m.blockSize;
  const tables = packTables(m);
  const captures = packCaptures([call.scoreMod, m.tracedMask]);
  const [mB, mH, nQ, nKV] = m.kvIndices.shape;
  const mTiles = Math.ceil(QB / kernel.BM);
  const gridX = nQ * mTiles;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  if (gridX > maxGrid || Hq > maxGrid || B > maxGrid) {
    throw new NoConfigFits({ message: `flexAttention: grid (${gridX}, ${Hq}, ${B}) exceeds ${maxGrid} workgroups per dimension` });
  }
  const splits = chooseSplits(gridX * Hq * B, nKV, call.kernelOptions.splitKv);
  if (B * splits > maxGrid) {
    throw new NoConfigFits({ message: `flexAttention: grid z = B·splitKv = ${B * splits} exceeds ${maxGrid} workgroups per dimension` });
  }
  const qScale = call.scale * (kernel.identityScore ? Math.LOG2E : 1);
  const u: Record<(typeof FLEX_FORWARD_UNIFORMS)[number], number> = {
    Hq, Hkv, Sq, Skv, QB, KB, m_tiles: mTiles, n_kv_blocks: nKV,
    nq_blocks: nQ, tb_stride_b: mB === 1 ? 0 : mH * nQ, tb_stride_h: mH === 1 ? 0 : nQ,
    off_kv_num: tables.offKvNum, off_kv_idx: tables.offKvIdx, off_full_num: tables.offFullNum, off_full_idx: tables.offFullIdx,
    has_full: m.fullKvNumBlocks && m.fullKvIndices ? 1 : 0,
    q_scale: f32Bits(qScale), B, n_splits: splits, pad1: 0,
  };
  // the dropout words follow (the portable kernel reads them; the tensor family's Params stops before them)
  const uniforms = Uint32Array.from([...FLEX_FORWARD_UNIFORMS.map((k) => u[k]), ...dropoutUniforms(call)]);
  const rows = B * Hq * Sq;
  // with split-KV the forward writes per-split slices into scratch and the combine kernel writes out / lse
  // (and maxScore: with returnAux the lse scratch holds the max-score slices after the lse slices)
  const direct = splits === 1 && !maxScore;
  const lseWords = (maxScore ? 2 : 1) * splits * rows;
  const [outBinding, lseBinding]: Binding[] = direct
    ? [{ kind: "output", tensor: out }, { kind: "output", tensor: lse }]
    : [{ kind: "scratch", name: "part_out", bytes: 4 * splits * rows * Dv }, { kind: "scratch", name: "part_lse", bytes: 4 * lseWords }];
  const bindings = (words: Uint32Array): Binding[] => [
    { kind: "input", tensor: call.q },
    kernel.k ?? { kind: "input", tensor: call.k },
    { kind: "input", tensor: call.v },
    { kind: "data", data: tables.data, persistent: true },
    { kind: "data", data: captures, persistent: true },
    kernel.err ?? { kind: "scratch", name: "err", bytes: 4 },
    outBinding,
    lseBinding,
    { kind: "uniform", data: words },
  ];
  const launch: KernelLaunch = { label: kernel.label, code: kernel.code(splits), entryPoint: "main", bindings: bindings(uniforms), workgroups: [gridX, Hq, B * splits] };
  const second: KernelLaunch[] = [];
  if (kernel.secondWalk) {
    const words = Uint32Array.from(uniforms);
    words[FLEX_FORWARD_UNIFORMS.indexOf("pad1")] = 1;
    second.push({ ...launch, label: `${kernel.label} (second walk)`, code: kernel.secondWalk(splits), bindings: bindings(words) });
  }
  return {
    launches: [...(kernel.before ?? []), launch, ...second, ...(direct ? [] : [combineLaunch(out, lse, rows, Dv, splits, maxGrid, maxScore)])],
    defines: maxScore ? [out, lse, maxScore] : [out, lse],
    checks: [{ scratch: "err", fail: captureOutOfRange }],
  };
}

/** The DROPOUT_UNIFORMS words of a call (zeros, scale 1, without dropout). */
export function dropoutUniforms(call: FlexCall): number[] {
  const d = call.dropout;
  const w: Record<(typeof DROPOUT_UNIFORMS)[number], number> = {
    drop_seed: d?.seed ?? 0, drop_threshold: d?.threshold ?? 0, drop_scale: f32Bits(d?.keepScale ?? 1), drop_pad: 0,
  };
  return DROPOUT_UNIFORMS.map((k) => w[k]);
}

/** Workgroups below which a grid leaves much of a GPU idle (an H100 has 132 SMs; a few workgroups each). */
const FILL_WORKGROUPS = 256;
const MAX_SPLITS = 16;

/**
 * Split-KV factor: the user's `kernelOptions.splitKv`, else enough splits to bring the grid to
 * FILL_WORKGROUPS, keeping at least two kv blocks per split (1 when the grid is already large).
 */
export function chooseSplits(workgroups: number, kvBlocks: number, requested?: number): number {
  if (requested !== undefined) return pinnedSplits(requested, kvBlocks);
  if (workgroups >= FILL_WORKGROUPS) return 1;
  return Math.max(1, Math.min(MAX_SPLITS, Math.ceil(FILL_WORKGROUPS / workgroups), Math.floor(kvBlocks / 2)));
}

function combineLaunch(out: Tensor, lse: Tensor, rows: number, Dv: number, splits: number, maxGrid: number, maxScore?: Tensor): KernelLaunch {
  const groups = Math.ceil((rows * Dv / 4) / FLEX_COMBINE_THREADS);
  const x = Math.min(groups, maxGrid);
  const u: Record<(typeof FLEX_COMBINE_UNIFORMS)[number], number> = { rows, n_splits: splits, pad0: 0, pad1: 0 };
  return {
    label: `flex_combine Dv${Dv}${maxScore ? " aux" : ""}`,
    code: flexCombineWgsl(Dv, out.dtype === "f16", maxScore !== undefined),
    entryPoint: "main",
    bindings: [
      { kind: "scratch", name: "part_out", bytes: 4 * splits * rows * Dv },
      { kind: "scratch", name: "part_lse", bytes: 4 * (maxScore ? 2 : 1) * splits * rows },
      { kind: "output", tensor: out },
      { kind: "output", tensor: lse },
      ...(maxScore ? [{ kind: "output" as const, tensor: maxScore }] : []),
      { kind: "uniform", data: Uint32Array.from(FLEX_COMBINE_UNIFORMS, (k) => u[k]) },
    ],
    workgroups: [x, Math.ceil(groups / x), 1],
  };
}
