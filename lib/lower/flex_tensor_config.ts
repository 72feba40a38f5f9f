/**
 * The tensor family (kernels/flex_forward_tensor.ts): when it runs, and its config space.
 *
 *   native     the adapter lists a 16×16×16 f16→f32 subgroup-matrix config, has shader-f16 and subgroups of
 *              exactly 32 invocations (the kernel's lane layout assumes it; NVIDIA)
 *   emulated   only `kernelOptions.family: "tensor"` forces it on an adapter without matrices: the same
 *              template with plain-WGSL matrix operations (needs shader-f16; slow — it exists so CI runs the
 *              family's tiling, staging, masking and softmax)
 * Automatic choice: f16 inputs on a native adapter → tensor; f32 inputs there too, as `x3` (each operand an f16
 * hi + lo pair, three products per matrix product: f32 accuracy from the f16 matrices) unless
 * `kernelOptions.f32Precision: "ieee"`; everything else → portable.
 */
import type { Capabilities } from "./capabilities.ts";
import type { KernelOptions } from "../attention/kernel_options.ts";
import type { FlexProblem } from "./flex_config.ts";
import { checkFlexTensorConfig, type FlexTensorConfig, flexTensorSmemBytes, flexTensorThreads } from "../../kernels/flex_forward_tensor.ts";
import { DTypeError, NoConfigFits } from "../errors.ts";
import { readEnv } from "../runtime/env.ts";

export type TensorMode = "native" | "emulated";

export function hasNativeMatrices(caps: Capabilities): boolean {
  return caps.features.has("shader-f16") && caps.features.has("subgroups") &&
    caps.subgroupMinSize === 32 && caps.subgroupMaxSize === 32 &&
    caps.subgroupMatrixConfigs.some((m) => m.M === 16 && m.N === 16 && m.K === 16 && m.componentType === "f16" && m.resultComponentType === "f32");
}

/** What the family choice depends on: the call's dtype, head dims, kv block size and kv length. */
export interface FamilyProblem { readonly dtype: string; readonly D: number; readonly Dv: number; readonly QB: number; readonly KB: number; readonly Skv: number }

/**
 * Which family runs a call on `caps`: "portable", or the tensor family's mode. Native wherever a tensor config
 * fits (any head dim the kernel takes, ragged lengths: edge tiles and padded head dims go through workgroup
 * memory, whose block walk reads its bounds through workgroupUniformLoad against the H200's stale-load defect);
 * a forced `family: "tensor"` without matrices runs emulated (exact, slow).
 */
export function familyFor(p: FamilyProblem, caps: Capabilities, opts: KernelOptions): "portable" | TensorMode {
  if (opts.family === "portable") return "portable";
  const x3 = isX3(p, opts);
  const nativeOk = (p.dtype === "f16" || x3) && hasNativeMatrices(caps) && nativeSafe(p, caps, opts, x3);
  if (opts.family === "tensor") {
    if (p.dtype !== "f16" && !x3) {
      throw new DTypeError({
        message: `kernelOptions.family "tensor" needs f16 q, k, v, or f32 with f32Precision "f16x3" (subgroup matrices take f16 operands); ` +
          `got ${p.dtype}${opts.f32Precision === "ieee" ? " with f32Precision \"ieee\"" : ""}: convert with cast(t, "f16"), or drop f32Precision "ieee"`,
      });
    }
    if (nativeOk) return "native";
    if (caps.features.has("shader-f16")) return "emulated";
    throw new NoConfigFits({ message: "kernelOptions.family \"tensor\": this adapter has neither subgroup matrices nor shader-f16 (for the emulated family); use \"portable\"" });
  }
  return nativeOk ? "native" : "portable";
}

/** f32 inputs through the tensor family's x3 configs (f16 hi + lo pairs): the default for f32 unless "ieee". */
export function isX3(p: Pick<FamilyProblem, "dtype">, opts: KernelOptions): boolean {
  return p.dtype === "f32" && opts.f32Precision !== "ieee";
}

function nativeSafe(p: FamilyProblem, caps: Capabilities, opts: KernelOptions, x3: boolean): boolean {
  return flexTensorCandidates({ D: p.D, Dv: p.Dv, QB: p.QB, KB: p.KB, identityScore: true }, caps, opts, "native", !x3, p.Skv, x3).length > 0;
}

/** A point of the config space: tile shape, where K / V come from on whole tiles, and the two native options. */
export interface TensorShape {
  readonly BM: number; readonly subgroups: number; readonly BN: number;
  /** K / V matrices straight from global memory on whole tiles (needs D, Dv multiples of 16), else staged once
   * per workgroup in workgroup memory and shared by its subgroups. */
  readonly kvDirect: boolean;
  readonly prefetchV?: boolean;
  readonly shuffleReduce?: boolean;
  /** With prefetchV: the next whole tile's K matrices load behind this tile's softmax. */
  readonly kAhead?: boolean;
  /** P through workgroup memory transposed, loaded as col_major left matrices. */
  readonly pTransposed?: boolean;
  /** Whole tiles load Kᵀ as row_major right matrices from a per-head transposed copy of K (a transpose launch
   * before the forward: lib/lower/k_transpose.ts). Needs kvDirect. */
  readonly kTransposed?: boolean;
  /** K / V staged once per workgroup in a double buffer of workgroup memory, the next tile's loads in flight in
   * registers during this one (kernels/flex_forward_tensor_pipe.ts). With kvDirect false; any head dim. */
  readonly kvPipe?: boolean;
  /** With kvPipe: S through workgroup memory transposed (the softmax thread of a row reads a column: no bank conflicts). */
  readonly sTransposed?: boolean;
  /** With kvPipe: one K / V buffer instead of the double buffer (less workgroup memory, the same barriers). */
  readonly kvSingle?: boolean;
  /** With kvPipe, sTransposed and pTransposed: Q staged in chunks, the O trips through fs in the Sᵀ layout (less
   * workgroup memory at the same work: kernels/flex_forward_tensor.ts). */
  readonly compactSmem?: boolean;
  /** With kvPipe: the first walk without the lazy rescale, a second one with it only for workgroups where a
   * row's max outgrew its first reference by more than 15 (log2 units): one plain barrier a tile instead of the rescale
   * decision's workgroupUniformLoad (kernels/flex_forward_tensor.ts). */
  readonly optimisticMax?: boolean;
  /** Only for x3 (f32 inputs as f16 pairs): the f16 search never sees it (not measured or checked for f16). */
  readonly x3Only?: boolean;
}

/** Preference order. Measured on the H200 (bench/tensor_variants.ts, B4 H16 S4096 D64, noop / causal, Dawn
 * robustness on, before the uniform walk: bench/RESULTS.md): direct 32/32/1 + prefetchV 42.5 / 46.7 TF/s, direct
 * 64/32/2 + prefetchV 39.8 / 40.2, direct 128/32/4 37.0 / 35.2, shuffles with 2 lanes per row 24–29, BN 64 22–25.
 * Session 5 (GPU-timed, clocks warm): 32/32/1 direct + prefetchV 5.99 / 3.02 ms (45.9 / 47.0 TF/s), the same with
 * kAhead 6.25 / 3.38 (slower: not a candidate). Session 5 H6 (noop / causal / softcap + causal ms): K as row_major
 * right matrices from a per-head Kᵀ (kTransposed) 4.955 / 2.726 / 4.391 vs 5.977 / 3.002 / 4.522 for the old
 * default; P transposed (pTransposed) 5.990 / 2.988 / 4.640, with kTransposed 5.099 / 2.818 / 4.509.
 * Session 6 H4, call 1 (GPU-timed; some rows clock-bound, see bench/RESULTS.md): the pipelined staged shapes
 * (kvPipe: K / V once per workgroup, double-buffered, next tile in registers) — 128/32/8 + shuffles with S and P
 * transposed 3.709 / 1.979 / 3.041 vs the direct kTransposed default 4.981 / 2.726 / 4.378 in the same run;
 * 128/32/8 + shuffles 4.286 / 2.268 / 3.355; 128/32/4 4.771 / 2.464 / 3.945; the BM 64 pipelined shapes were
 * no faster than the direct default (64/16/4 + shuffles 5.295 / 2.700 / 3.290), 32/32/1 pipelined 31 ms (one
 * subgroup carries a whole tile's loads). Call 2 (same day): the first shape again 3.696 ms noop, every candidate
 * shape exact on the intrinsics (raw candidate tests; the library's 17 oracle cases with this order). Its other rows in
 * call 2 were clock-bound (the warm-up stalled; bench/tensor_variants.ts FLEX_VARIANTS_WARM_MS). BM 128 needs 128-row
 * query blocks and ≤ 48 KiB (D ≤ 64 with BN 32); the direct shapes follow for the rest (D 80, 128, 64-blocks).
 * Session 7 HF (bench/tensor_variants.ts part S: compiled and checked first, then timed round-robin, two calls): the
 * first shape 3.74 / 3.71 ms noop, 1.97 causal, softcap 20 + causal 2.86 / 2.84 (exp2 tanh; 3.11 with the old clamped
 * builtin); the same with one K / V buffer (kvSingle, last below) 3.50 / 3.47 noop, 1.82 / 1.84 causal but 3.33 softcap
 * (clamped tanh) and a slower compile (kernel ready 1884 vs 1349 ms): the default of mask-only problems (identity
 * score: noop, causal, windows, documents — `shapeOrder`), the last shape otherwise.
 * Session 8 HF (one call, part S cut by its cap after the defaults: 3.749 / 1.953 / 2.857 ms, kvSingle 3.500 / 1.835):
 * the driver's compile of kvSingle's causal kernel took 18.8 s (its softcap kernel alone 18.0 s; noop 0.6 s), the
 * double-buffered default's 0.5–0.7 s; compactSmem kvSingle 8.6 s, the 128/16/8 shapes 1.8–2.0 s. The compactSmem
 * shapes (kernels/flex_forward_tensor.ts) are exact on the intrinsics (22/22 with 128/16/8 kvSingle compactSmem first).
 * Session 8, integrator's call B (part S, every shape compiled and checked first, GPU-timed warm; noop / causal /
 * softcap 20 + causal ms): **128/16/8 kvSingle compactSmem (17.5 KB) 2.687 / 1.455 / 1.796**, 128/16/8 compactSmem
 * (22.1 KB) 2.753 / 1.520 / 1.835, 128/32/8 kvSingle compactSmem 3.500 / 1.822 / 2.517, 128/32/8 compactSmem 3.736 /
 * 1.953 / 2.766, the old defaults 3.709 / 1.953 / 2.831 and (kvSingle) 3.487 / 1.822: the small-memory shapes first,
 * for mask-only problems and score mods alike (occupancy: 2.7× more workgroups fit an SM). */
export const TENSOR_SHAPES: readonly TensorShape[] = [
  // session 10 (final call on e6b8b6c, part S, GPU-timed warm, robustness off; noop / causal / softcap 20 + causal ms,
  // both launches timed): optimisticMax with one K / V buffer 1.848 / 1.180 / 1.429, with two 2.241 / 1.206 / 1.534,
  // against 2.490 / 1.285 / 1.652 for the third shape (the default before). Not for positional score mods (ALiBi
  // 1.887 against 1.422 ms with an earlier form: most workgroups walked twice): flexTensorCandidates leaves them out.
  { BM: 128, subgroups: 8, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, kvSingle: true, compactSmem: true, optimisticMax: true },
  { BM: 128, subgroups: 8, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, compactSmem: true, optimisticMax: true },
  { BM: 128, subgroups: 8, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, kvSingle: true, compactSmem: true },
  { BM: 128, subgroups: 8, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, compactSmem: true },
  { BM: 128, subgroups: 8, BN: 32, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true },
  { BM: 128, subgroups: 4, BN: 32, kvDirect: false, kvPipe: true, sTransposed: true, pTransposed: true },
  { BM: 128, subgroups: 8, BN: 32, kvDirect: false, kvPipe: true, shuffleReduce: true },
  { BM: 32, subgroups: 1, BN: 32, kvDirect: true, prefetchV: true, kTransposed: true },
  { BM: 32, subgroups: 1, BN: 32, kvDirect: true, prefetchV: true },
  { BM: 64, subgroups: 4, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true },
  { BM: 64, subgroups: 4, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true },
  { BM: 128, subgroups: 8, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true },
  { BM: 32, subgroups: 1, BN: 32, kvDirect: true, prefetchV: true, pTransposed: true },
  { BM: 64, subgroups: 2, BN: 32, kvDirect: true, prefetchV: true },
  { BM: 64, subgroups: 2, BN: 32, kvDirect: true, prefetchV: true, pTransposed: true },
  { BM: 128, subgroups: 4, BN: 32, kvDirect: false, kvPipe: true },
  { BM: 64, subgroups: 2, BN: 32, kvDirect: false },
  { BM: 128, subgroups: 4, BN: 32, kvDirect: false },
  { BM: 32, subgroups: 1, BN: 32, kvDirect: false },
  { BM: 128, subgroups: 8, BN: 32, kvDirect: false, shuffleReduce: true },
  { BM: 64, subgroups: 4, BN: 32, kvDirect: false, shuffleReduce: true },
  { BM: 16, subgroups: 1, BN: 16, kvDirect: false },
  // session 7 HF: one K / V buffer (37 instead of 46 KB at D 64): faster on mask-only problems (first for them:
  // shapeOrder), slower with a score mod (see above) and slower to compile
  { BM: 128, subgroups: 8, BN: 32, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, kvSingle: true },
  // x3 (f32 inputs) on 64-row query blocks: the first shapes' form at BM 64
  { BM: 64, subgroups: 4, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, kvSingle: true, compactSmem: true, optimisticMax: true, x3Only: true },
  { BM: 64, subgroups: 4, BN: 16, kvDirect: false, kvPipe: true, shuffleReduce: true, sTransposed: true, pTransposed: true, kvSingle: true, compactSmem: true, x3Only: true },
];

const sameShape = (a: TensorShape, b: Partial<TensorShape>) =>
  (Object.keys(b) as (keyof TensorShape)[]).every((k) => (a[k] ?? false) === (b[k] ?? false));

const front = (want: Partial<TensorShape>) => [...TENSOR_SHAPES.filter((s) => sameShape(s, want)), ...TENSOR_SHAPES.filter((s) => !sameShape(s, want))];
// mask-only problems (identity score) and score mods take the same order since session 8 (the compactSmem shapes
// lead for both); session 7's split (the one-buffer 128/32/8 shape first for mask-only problems) is gone
const MASK_ONLY_ORDER = TENSOR_SHAPES;

/** FLEX_TENSOR_FIRST='{"BM":64,"subgroups":2,"BN":32,"kvDirect":false}' moves the matching shapes to the front
 * (benchmarking a candidate through the whole library; the autotuner's "max" search times them all anyway); a
 * complete shape (BM, subgroups, BN, kvDirect given) that is not in the list goes in front of it. */
function shapeOrder(identityScore: boolean): readonly TensorShape[] {
  const first = readEnv("FLEX_TENSOR_FIRST");
  if (!first) return identityScore ? MASK_ONLY_ORDER : TENSOR_SHAPES;
  const want = JSON.parse(first) as Partial<TensorShape>;
  const whole = want.BM !== undefined && want.subgroups !== undefined && want.BN !== undefined && want.kvDirect !== undefined;
  return whole && !TENSOR_SHAPES.some((s) => sameShape(s, want)) ? [want as TensorShape, ...TENSOR_SHAPES] : front(want);
}

/** The shapes an x3 config takes (kernels/flex_forward_tensor_pipe.ts: the one-buffer compact pipelined form). */
const x3Shape = (s: TensorShape) => !!(s.kvPipe && s.kvSingle && s.compactSmem && s.sTransposed && s.pTransposed);

/** Every tensor config valid for the problem on the device, in preference order (`x3`: f32 inputs as f16 pairs). */
export function flexTensorCandidates(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean, Skv?: number, x3 = false): FlexTensorConfig[] {
  const lim = caps.limits;
  const out: FlexTensorConfig[] = [];
  void Skv; // every length runs natively (edge tiles are staged)
  for (const s of shapeOrder(p.identityScore)) {
    if (opts.blockM !== undefined && s.BM !== opts.blockM) continue;
    if (opts.blockN !== undefined && s.BN !== opts.blockN) continue;
    if (p.QB % s.BM !== 0 || p.KB % s.BN !== 0) continue;
    if (s.optimisticMax && p.positionalScore) continue; // its second walk would run in most workgroups
    if (s.kvDirect && (p.D % 16 !== 0 || p.Dv % 16 !== 0)) continue;
    if (x3 ? !x3Shape(s) : s.x3Only) continue;
    const c: FlexTensorConfig = {
      family: "tensor", D: p.D, Dv: p.Dv, BM: s.BM, BN: s.BN, subgroups: s.subgroups, emulate: mode === "emulated",
      identityScore: p.identityScore, subgroupSize: 32, outF16, kvDirect: s.kvDirect,
      ...(s.prefetchV ? { prefetchV: true } : {}), ...(s.shuffleReduce ? { shuffleReduce: true } : {}), ...(s.kAhead ? { kAhead: true } : {}),
      ...(s.pTransposed ? { pTransposed: true } : {}), ...(s.kTransposed ? { kTransposed: true } : {}),
      ...(s.kvPipe ? { kvPipe: true } : {}), ...(s.sTransposed ? { sTransposed: true } : {}),
      ...(s.kvSingle ? { kvSingle: true } : {}),
      ...(s.compactSmem ? { compactSmem: true } : {}), ...(s.optimisticMax ? { optimisticMax: true } : {}),
      ...(x3 ? { x3: true, outF16: false } : {}),
    };
    try { checkFlexTensorConfig(c); } catch { continue; }
    if (flexTensorThreads(c) > Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX)) continue;
    if (flexTensorSmemBytes(c) > lim.maxComputeWorkgroupStorageSize) continue;
    out.push(c);
  }
  return out;
}

/** The heuristic pick (the first candidate), or NoConfigFits. */
export function chooseFlexTensorConfig(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean, Skv?: number, x3 = false): FlexTensorConfig {
  const c = flexTensorCandidates(p, caps, opts, mode, outF16, Skv, x3)[0];
  if (!c) {
    throw new NoConfigFits({
      message: `no tensor-family forward config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.QB}×${p.KB}` +
        `${opts.blockM ? `, blockM=${opts.blockM}` : ""}${opts.blockN ? `, blockN=${opts.blockN}` : ""}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B (the BlockMask's blocks must be multiples of 16)`,
    });
  }
  return c;
}
