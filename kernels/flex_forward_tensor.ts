/**
 * The fused FlexAttention forward kernel, tensor family: Q·Kᵀ and P·V as 16×16×16 subgroup-matrix products
 * (f16 operands, f32 accumulate) through Dawn's `chromium_experimental_subgroup_matrix`, or, with
 * `emulate`, the same template with every matrix operation done by plain WGSL (kernels/subgroup_matrix.ts),
 * which runs on any adapter with shader-f16 (CI: lavapipe).
 *
 * Same bindings, uniforms (FLEX_FORWARD_UNIFORMS), grid (nQ·m_tiles, Hq, B·splits), block-table walk and
 * output semantics as kernels/flex_forward.ts, except dtypes: q, k, v are f16; out is f16 (`outF16`) or
 * f32 (split-KV scratch); lse f32.
 *
 * The H200 defect (NVIDIA 580 driver through Dawn; bench/tensor_variants.ts, two device runs on 2026-12-01):
 * with the block walk's bounds read from the `tables` storage buffer, K / V staged in workgroup memory came out
 * wrong (rel. L2 ≈ 1.4 — stale tiles), in every layout, with one subgroup, with separate arrays or extra
 * barriers; the direct path too once Dawn's robustness was off. Reading the bounds through
 * workgroupUniformLoad (BLOCK_WALK_UNIFORM_OPEN) made every variant exact, with and without robustness; a
 * guard branch around the workgroup-memory matrix accesses alone did not, and on top of the uniform walk it
 * only cost time (third device call: 32/32/1 direct 7.89 → 6.01 ms noop, 4.52 → 3.36 ms causal without it,
 * exact both ways): native kernels use the uniform walk alone. A single
 * staging loop without the walk was exact, so the trigger is the walk's storage-read loop bounds around the
 * matrix loads (mechanism unknown: the driver's code is closed). Session 11: block indices read from a window of
 * the list in workgroup memory (plainly, or through subgroupBroadcastFirst) bring the defect back (rel. L2 1.4–2.6).
 *
 * Where the time goes (H200, GPU-timed with warm clocks, B4 H16 S4096 D64, 32/32/1 direct + prefetchV; RESULTS.md,
 * session 5): 5.99 ms noop; with the scalar softmax pass left out (probe.softmax "none") 4.77 ms — the matrix chain
 * itself (K / V loads, Q·Kᵀ, S through workgroup memory, P·V) runs at 57.6 TF/s, so the feeding, not the softmax
 * (1.22 ms), bounds this design. Timings that follow a compile need ≥ 200 ms of warm launches: the H200 idles at
 * 345 MHz within a second, which made identical kernels time 3.0 vs 15 ms. Layouts (session 5 H6): Kᵀ loaded as
 * row_major right matrices from a transposed copy (`kTransposed`) 4.96 ms noop (−17 %; Q·Kᵀ was 3.07 of the
 * chain's 4.78 ms); P stored transposed and loaded col_major (`pTransposed`) changed nothing.
 * Session 6 (H4): `kvPipe` configs generate kernels/flex_forward_tensor_pipe.ts instead — K / V staged once per
 * workgroup in a padded double buffer with the next tile's loads in flight, S and P through workgroup memory
 * transposed: 128/32/8 3.71 / 1.98 / 3.04 ms noop / causal / softcap + causal vs 4.98 / 2.73 / 4.38 direct.
 */
import { BLOCK_WALK_OPEN, BLOCK_WALK_UNIFORM_DECL, BLOCK_WALK_UNIFORM_OPEN, workgroupCoords } from "./block_walk.ts";
import { ERROR_BITS_DECL } from "./error_bits.ts";
import type { FlexForwardHooks } from "./flex_forward.ts";
import { matrixNaming, SubgroupMatrixOps } from "./subgroup_matrix.ts";
import { tensorForwardBindings, tensorForwardParts } from "./flex_forward_tensor_parts.ts";
import { checkPipeConfig, flexForwardTensorPipeWgsl, pipeSmemBytes } from "./flex_forward_tensor_pipe.ts";

export interface FlexTensorConfig {
  readonly family: "tensor";
  /** Head dims of q/k and of v: multiples of 4 in 4..256 (padded to multiples of 16 in workgroup memory). */
  readonly D: number;
  readonly Dv: number;
  /** Query rows per workgroup = subgroups · rows per subgroup (16 or 32 with 32-lane subgroups). */
  readonly BM: number;
  /** Key columns per tile (multiple of 16). */
  readonly BN: number;
  /** Matrix subgroups per workgroup; each owns BM / subgroups consecutive query rows. */
  readonly subgroups: number;
  /** Plain-WGSL matrix operations on 32-lane virtual subgroups (needs only shader-f16). */
  readonly emulate: boolean;
  /** The score mod is the identity: the uniform q_scale includes log2(e) and the hook is skipped. */
  readonly identityScore: boolean;
  /** Invocations per (real or, emulated, virtual) subgroup: 32 on NVIDIA; must be 32 when emulating. */
  readonly subgroupSize: number;
  /** out is f16 (else f32: the split-KV per-split scratch). */
  readonly outF16: boolean;
  /** Interior tiles (all BN keys in range) load the K / V matrices straight from global memory instead of
   * staging them in workgroup memory (needs D and Dv multiples of 16; edge tiles are still staged). */
  readonly kvDirect?: boolean;
  /** Lazy rescale: a row's reference max moves only when its max grows by more than this (log2 units; the
   * probabilities are then ≤ 2^threshold before normalization). 0 rescales on every increase. Default 8. */
  readonly rescaleThreshold?: number;
  /** Q keeps its own workgroup-memory region for the whole kernel (else its staging area is reused by K / V).
   * Costs BM·(D+8)·2 bytes; a guard in case a compiler re-reads the Q matrices from workgroup memory late. */
  readonly qOwnSmem?: boolean;
  /** Staged K goes to workgroup memory transposed ([D][BN]) and loads as a row-major right matrix (else
   * [BN][D], col-major load). `stageVT`: V transposed ([Dv][BN], col-major load; else [BN][Dv], row-major). */
  readonly stageKT?: boolean;
  readonly stageVT?: boolean;
  /** Staged V gets its own region instead of overwriting K within the tile. */
  readonly vOwnSmem?: boolean;
  /** Direct K/V, whole tiles: the V matrices load right after Q·Kᵀ, so their latency hides behind the
   * softmax (native only; the emulated template loads them at use: the same values, k / v are read-only). */
  readonly prefetchV?: boolean;
  /** Row max / sum across a row's G lanes by subgroup shuffles instead of workgroup memory and a barrier
   * (native only: the rows of a subgroup are its own lanes' rows; emulated keeps the workgroup-memory path). */
  readonly shuffleReduce?: boolean;
  /** With prefetchV (native only): the next whole tile's K matrices load right after this tile's V prefetch, so
   * their latency hides behind the softmax (software pipelining of the K loads within a kv block). Exact on the
   * H200 but slower there (32/32/1: 6.25 vs 5.99 ms noop, 3.38 vs 3.02 causal, 5.40 vs 4.54 softcap; 2026-12-01):
   * the loads were not what the tile waited on. Not among the searched shapes; kept for later measurements. */
  readonly kAhead?: boolean;
  /** P goes to workgroup memory transposed ([BN][BM+8]: the softmax thread of row r writes column r) and loads as
   * col_major left matrices (else [BM][BN+8], row_major). The H200 loaded left matrices ~4× faster col_major than
   * row_major straight from storage (bench/tensor_layout_probe.ts part G); part W asks the same of workgroup memory. */
  readonly pTransposed?: boolean;
  /** With kvDirect: the k binding holds Kᵀ per head ([B][Hkv][D][Skv], written by kernels/transpose_heads.ts in a
   * launch before the forward) and whole tiles load it as row_major right matrices (else col_major from row-major K).
   * Edge tiles stage from the same layout. No kAhead. H200, 32/32/1 direct + prefetchV: 4.955 vs 5.977 ms noop,
   * 2.726 vs 3.002 causal, 4.391 vs 4.522 softcap + causal (bench/RESULTS.md, session 5 H6). */
  readonly kTransposed?: boolean;
  /** K / V staged once per workgroup (shared by its subgroups) in a double buffer of workgroup memory with padded
   * rows, the next tile's K / V loaded into registers while this tile computes (kernels/flex_forward_tensor_pipe.ts).
   * Excludes kvDirect and the other staging / prefetch knobs; any head dim. */
  readonly kvPipe?: boolean;
  /** kvPipe only: S goes to workgroup memory transposed ([BN][BM+4] f32, a col_major matrix store), so the softmax
   * thread of row r reads column r (consecutive lanes, consecutive words: no bank conflicts). With pTransposed the
   * P stores are conflict-free the same way. */
  readonly sTransposed?: boolean;
  /** kvPipe only: ONE K / V buffer instead of two (−BM·(D+8)·2 bytes less the P region at D 64: 46 → 37 KB at
   * 128/32/8). Same two barriers a tile: after barrier 1 every subgroup is past this tile's Q·Kᵀ and the last
   * tile's P·V, so the next tile's K and this tile's V (both loaded into registers at the tile's start) go in then. */
  readonly kvSingle?: boolean;
  /** kvPipe only, with sTransposed (session 8 HF; P either way since session 9): less workgroup memory at the same work — Q staged
   * in chunks of whole subgroups' rows over the K / V buffers and P (when the Q block is larger than they are), and
   * the output accumulators' rescale / epilogue trips through fs in the Sᵀ layout, so fs is the Sᵀ tile alone
   * (128/32/8 at D 64: 45.6 → 44.1 KB, with kvSingle 36.9 → 34.9; 128/16/8: 33.1 → 22.1, with kvSingle 17.6). */
  readonly compactSmem?: boolean;
  /** kvPipe only (session 10): the walk WITHOUT the lazy rescale — a row's reference max is the max of
   * its first tile with a finite score, and a row whose max later grows by more than OPTIMISTIC_SPAN (15, log2 units:
   * P ≤ 2¹⁵ stays finite in f16) marks its workgroup: REDO_MARK in the lse word of the workgroup's first row. Each
   * tile has one plain barrier where the rescale decision's workgroupUniformLoad (barrier, load, barrier) was, and
   * the loop has no rescale code. The library then launches the same config without optimisticMax with uniform
   * pad1 = 1 (lib/lower/plan_flex.ts `secondWalk`): that kernel exits at once in unmarked workgroups and walks the
   * marked ones again with the rescale. H200 (bench/RESULTS.md, session 10): 128/16/8 kvSingle noop 2.49 → 1.85 ms,
   * causal 1.29 → 1.18, softcap + causal 1.65 → 1.43 (both launches); a second walk inside the same kernel (a restart
   * in the loop, a nested loop, or two loops) was slower or took the driver ≈ 15–20 s to compile. */
  readonly optimisticMax?: boolean;
  /** f32 q / k / v (kvPipe with kvSingle and compactSmem): each operand an f16 pair hi + lo under a per-tensor
   * power-of-two scale (the max |x| of q, k and v from a launch before, kernels/abs_max.ts, in err[1..3]), and every
   * matrix product three products, hi·hi + hi·lo + lo·hi, so the scores and P·V keep ≈ 22 of f32's 24 bits (the
   * dropped lo·lo is 2⁻²² of the product) — f32 results from the f16 matrices (Triton's "tf32x3" idea, in f16).
   * P splits the same way (unscaled: P ≤ 2¹⁵). out is f32. */
  readonly x3?: boolean;
  /** kvPipe, f16 (session 14 probe): how the softmax's exp2 is evaluated — "mufu" (default: f32 exp2, the special-function
   * unit), "f16" (exp2 of the f16 argument, 4-wide: the driver may issue the packed half-precision form), "split" (half of a
   * thread's columns through a degree-3 polynomial on the FMA units beside the other half's exp2: FA4's way to raise the
   * exponential's throughput). */
  readonly expForm?: "mufu" | "f16" | "split";
  /** Diagnostic variants for the staged-K/V path (bench/tensor_variants.ts); the config search never sets them. */
  readonly probe?: TensorProbeKnobs;
}

export interface TensorProbeKnobs {
  /** Add a run-time zero (uniform pad1) to the offsets of the K / V matrix loads from workgroup memory. */
  readonly opaqueOffsets?: boolean;
  /** Stage K / V into their own workgroup array (declared first) instead of the shared f16 region. */
  readonly separateKV?: boolean;
  /** Native: read the block table with plain storage loads (default: through workgroupUniformLoad). */
  readonly plainWalk?: boolean;
  /** Native: matrix loads / stores of workgroup memory inside an `if (mx_live)` guard (a diagnostic since
   * 2026-12-01 call 1: it did not cure the H200 defect on its own and cost 1.3× — 7.89 vs 6.01 ms noop). */
  readonly guarded?: boolean;
  /** One more barrier after each K / V matrix read from workgroup memory. */
  readonly extraBarrier?: boolean;
  /** With kvDirect: stage this one through workgroup memory on whole tiles too. */
  readonly stageOnly?: "k" | "v";
  /** Timing only (wrong results): "copy" writes P = scaled S (no mask, max, exp2, reduction); "none" also skips
   * the scalar pass (S matrix-stored, one barrier, P·V on whatever P holds): the GEMM-chain bound of the kernel. */
  readonly softmax?: "copy" | "none";
  /** Timing only, with softmax "none": leave out Q·Kᵀ (S stays 0) or P·V on whole tiles (with P·V the V loads go
   * too: nothing reads them) — which half of the GEMM chain the time is in. */
  readonly skip?: "qk" | "pv";
  /** With kvDirect: V arrives transposed per head ([B][Hkv][Dv][Skv]) and loads as a col_major right matrix. */
  readonly vTransposed?: boolean;
  /** A comment in the WGSL (a different shader hash, the same code): does a recompile change the speed? */
  readonly salt?: number;
  /** kvPipe: this many bytes of unused workgroup memory (referenced in a branch that never runs): does the
   * workgroup-memory size limit how many workgroups an SM holds? */
  readonly smemPad?: number;
}

interface Derived {
  R: number; TR: number; G: number; NT: number; Dp: number; Dvp: number;
  QST: number; KVST: number; KTST: number; PST: number; PTST: number; SST: number; POFF: number; QOFF: number; VOFF: number; HS: number; FS: number;
}

const up16 = (x: number) => Math.ceil(x / 16) * 16;

function derive(c: Omit<FlexTensorConfig, "family" | "identityScore" | "outF16">): Derived {
  const R = c.BM / c.subgroups;
  const G = c.subgroupSize / R;
  const NT = c.subgroups * c.subgroupSize;
  const Dp = up16(c.D), Dvp = up16(c.Dv);
  const QST = Dp + 8, KVST = Math.max(Dp, Dvp) + 8, PST = c.BN + 8, SST = c.BN + 4;
  const KTST = c.BN + 8; // row stride of a transposed staged K / V
  // P transposed: rows of BM + 8 f16 (a 16-byte row shift per 8 rows of a matrix load: distinct banks)
  const PTST = c.BM + 8, PSIZE = c.pTransposed ? c.BN * PTST : c.BM * PST;
  const KSIZE = c.stageKT ? Dp * KTST : c.BN * KVST, VSIZE = c.stageVT ? Dvp * KTST : c.BN * KVST;
  const VOFF = c.vOwnSmem ? KSIZE : 0;
  const POFF = c.vOwnSmem ? KSIZE + VSIZE : Math.max(KSIZE, VSIZE);
  const QOFF = c.qOwnSmem ? POFF + PSIZE : 0;
  const HS = c.qOwnSmem ? QOFF + c.BM * QST : Math.max(c.BM * QST, POFF + PSIZE);
  const FS = c.BM * SST;
  return { R, TR: R / 16, G, NT, Dp, Dvp, QST, KVST, KTST, PST, PTST, SST, POFF, QOFF, VOFF, HS, FS };
}

/** Knobs of the pipelined template removed in session 16; a config built from JSON (bench shapes) that still names one is
 * rejected rather than silently run as the default. */
const RETIRED_KNOBS = ["skew", "pvDefer", "kvLate", "kvLead", "pingPong", "qSmem"];

/** Throws when a config cannot be generated (the config search filters with it). */
export function checkFlexTensorConfig(c: Omit<FlexTensorConfig, "family" | "identityScore" | "outF16">): void {
  const bad = (why: string) => { throw new Error(`flex tensor config ${JSON.stringify(c)}: ${why}`); };
  for (const [k, v] of [["D", c.D], ["Dv", c.Dv]] as const) {
    if (!Number.isInteger(v) || v % 4 !== 0 || v < 4 || v > 256) bad(`${k} must be a multiple of 4 in 4..256`);
  }
  if (c.BN % 16 !== 0 || c.BN < 16) bad("BN must be a positive multiple of 16");
  if (c.emulate && c.subgroupSize !== 32) bad("emulation uses 32-lane virtual subgroups (subgroupSize 32)");
  const R = c.BM / c.subgroups;
  if (!Number.isInteger(R) || R % 16 !== 0) bad("BM / subgroups must be a multiple of 16");
  if (!Number.isInteger(c.subgroupSize / R) || c.subgroupSize / R < 1) bad("rows per subgroup must divide the subgroup size");
  const G = c.subgroupSize / R;
  if ((G & (G - 1)) !== 0 || c.BN % (4 * G) !== 0) bad("lanes per row must be a power of two dividing BN / 4");
  if (c.kvDirect && (c.D % 16 !== 0 || c.Dv % 16 !== 0)) bad("kvDirect needs D and Dv multiples of 16");
  if (c.x3 && !c.kvPipe) bad("x3 (f32 inputs as f16 pairs) needs kvPipe");
  if (c.expForm !== undefined && c.expForm !== "mufu" && (!c.kvPipe || c.x3)) bad("expForm f16 / split: kvPipe, f16 inputs");
  const retired = RETIRED_KNOBS.filter((k) => !!(c as Record<string, unknown>)[k]);
  if (retired.length) bad(`${retired.join(", ")}: retired in session 16 (slower on the H200; kernels/flex_forward_tensor_pipe.ts)`);
  if (c.kvPipe) checkPipeConfig(c, bad);
  else if (c.sTransposed || c.kvSingle || c.compactSmem || c.optimisticMax) bad("sTransposed, kvSingle, compactSmem and optimisticMax need kvPipe");
  if (c.probe?.vTransposed && !c.kvDirect) bad("probe.vTransposed needs kvDirect");
  if (c.kTransposed && (!c.kvDirect || c.kAhead)) bad("kTransposed needs kvDirect and no kAhead");
  if (c.probe?.skip && (c.probe.softmax !== "none" || !c.kvDirect || c.kAhead)) bad("probe.skip needs softmax \"none\" and kvDirect, no kAhead");
}

/** Workgroup memory in bytes (compare with maxComputeWorkgroupStorageSize). */
export function flexTensorSmemBytes(c: Omit<FlexTensorConfig, "family" | "identityScore" | "outF16">): number {
  if (c.kvPipe) return pipeSmemBytes(c);
  const d = derive(c);
  const shuffle = !!c.shuffleReduce && !c.emulate;
  // + 64: the compiler aligns each workgroup variable (Dawn counted 48 bytes more than the sum on the H200)
  return 2 * d.HS + (c.probe?.separateKV ? 2 * d.POFF : 0) + 4 * d.FS + (d.G > 1 && !shuffle ? 4 * d.NT : 0) + 4 + (!c.emulate && !c.probe?.plainWalk ? 12 : 0) + 64;
}

export function flexTensorThreads(c: Pick<FlexTensorConfig, "subgroups" | "subgroupSize">): number {
  return c.subgroups * c.subgroupSize;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export function flexForwardTensorWgsl(c: FlexTensorConfig, hooks: FlexForwardHooks): string {
  checkFlexTensorConfig(c);
  if (c.kvPipe) return flexForwardTensorPipeWgsl(c, hooks);
  const d = derive(c);
  const { R, TR, G, NT, Dp, Dvp, QST, KVST, KTST, PST, PTST, SST, POFF, QOFF, VOFF } = d;
  const DK16 = Dp / 16, DV16 = Dvp / 16, BN16 = c.BN / 16;
  const pr0: TensorProbeKnobs = c.probe ?? {};
  // native: the block walk broadcasts its bounds through workgroupUniformLoad (the cure of the H200's stale
  // workgroup-memory matrix loads, exact alone in both device calls); the guard branch is a diagnostic only
  const guard = !c.emulate && !!pr0.guarded, uniformWalk = !c.emulate && !pr0.plainWalk;
  const mx = new SubgroupMatrixOps(c.emulate, guard ? { guard: "mx_live", guardArrays: ["hs", "fs", "kvs"] } : {});
  const direct = !!c.kvDirect;
  const pr = pr0;
  // whole tiles read K (resp. V) straight from global memory; edge tiles (and all tiles without kvDirect) stage
  const kFull = direct && pr.stageOnly !== "k", vFull = direct && pr.stageOnly !== "v";
  const kvArr = pr.separateKV ? "kvs" : "hs"; // where staged K / V live
  const zo = pr.opaqueOffsets ? " + zoff" : "";
  const prefetch = !!c.prefetchV && !c.emulate && kFull && vFull;
  const shuffle = !!c.shuffleReduce && !c.emulate;
  const tau = c.rescaleThreshold ?? 8;
  const pT = !!c.pTransposed;
  const OT = c.outF16 ? "f16" : "f32";
  const KVT = direct ? "f16" : "vec4<f16>";
  // vec4 of k / v at vec4 index `i` (binding of f16 scalars when the matrices load from it directly)
  const kv4 = (arr: string, i: string) => direct
    ? `vec4<f16>(${arr}[4u * (${i})], ${arr}[4u * (${i}) + 1u], ${arr}[4u * (${i}) + 2u], ${arr}[4u * (${i}) + 3u])`
    : `${arr}[${i}]`;
  // V of (key n, column dv): row-major [Skv][Dv] per head, or (probe.vTransposed) [Dv][Skv], read col_major
  const vT = !!pr0.vTransposed;
  const vMat = (n: string, dv: string) => vT
    ? { layout: "col_major" as const, off: `(vt_head + ${dv}) * P.Skv + ${n}`, stride: "P.Skv" }
    : { layout: "row_major" as const, off: `(kv_base + ${n}) * ${c.Dv}u + ${dv}`, stride: `${c.Dv}u` };
  const vT4 = (n: string, d4: string, arr = "vg", head = "vt_head") =>
    `vec4<f16>(${arr}[(${head} + 4u * ${d4}) * P.Skv + ${n}], ${arr}[(${head} + 4u * ${d4} + 1u) * P.Skv + ${n}], ${arr}[(${head} + 4u * ${d4} + 2u) * P.Skv + ${n}], ${arr}[(${head} + 4u * ${d4} + 3u) * P.Skv + ${n}])`;
  // Kᵀ of (key n, column d) as a right matrix (k = d, n): col_major from row-major K, or (kTransposed) row_major
  // from Kᵀ [Dk][Skv] per head
  const kT = !!c.kTransposed;
  const kMat = (n: string, dk: string) => kT
    ? { layout: "row_major" as const, off: `(kt_head + ${dk}) * P.Skv + ${n}`, stride: "P.Skv" }
    : { layout: "col_major" as const, off: `(kv_base + ${n}) * ${c.D}u + ${dk}`, stride: `${c.D}u` };
  // a staged vec4 of K / V (key n, columns 4·d4 ..) from the layout its binding has
  const kvIn4 = (arr: string, dim: number) => arr === "vg" && vT ? vT4("tile + n", "d4")
    : arr === "kg" && kT ? vT4("tile + n", "d4", "kg", "kt_head") : kv4(arr, `(kv_base + tile + n) * ${dim / 4}u + d4`);
  const put4 = (o: string, x: string, arr = "hs") => `${arr}[${o}] = ${x}.x; ${arr}[${o} + 1u] = ${x}.y; ${arr}[${o} + 2u] = ${x}.z; ${arr}[${o} + 3u] = ${x}.w;`;

  // ---- staging K / V of the tile into hs[0 ..] (zero past the sequence and in the padding)
  const stage = (arr: string, dim: number, dimP: number, transposed: boolean, base: number) => transposed ? `
        for (var idx = tid; idx < ${c.BN * (dimP / 4)}u; idx += ${NT}u) {
          let n = idx % ${c.BN}u; // key fastest across threads: the transposing stores hit distinct banks
          let d4 = idx / ${c.BN}u;
          var x = vec4<f16>(0.0h);
          if (tile + n < col_limit${dim === dimP ? "" : ` && d4 < ${dim / 4}u`}) { x = ${kvIn4(arr, dim)}; }
          let o = ${base}u + 4u * d4 * ${KTST}u + n;
          ${kvArr}[o] = x.x; ${kvArr}[o + ${KTST}u] = x.y; ${kvArr}[o + ${2 * KTST}u] = x.z; ${kvArr}[o + ${3 * KTST}u] = x.w;
        }` : `
        for (var idx = tid; idx < ${c.BN * (dimP / 4)}u; idx += ${NT}u) {
          let n = idx / ${dimP / 4}u;
          let d4 = idx % ${dimP / 4}u;
          var x = vec4<f16>(0.0h);
          if (tile + n < col_limit${dim === dimP ? "" : ` && d4 < ${dim / 4}u`}) { x = ${kvIn4(arr, dim)}; }
          let o = ${base}u + n * ${KVST}u + 4u * d4;
          ${put4("o", "x", kvArr)}
        }`;

  // ---- matrix-op sequences: unrolled into named matrix variables (q0_1, s1_0, o0_3, …) for the intrinsics; for
  // the emulation, WGSL loops over fragment arrays (qf, sf, of) with the same offsets (keeps Mesa's compile small)
  const E = c.emulate;
  const { lit, each, fr, decl } = matrixNaming(E);
  const Q = (i: string, k: string) => fr("q", DK16, i, k);
  const S = (i: string, j: string) => fr("s", BN16, i, j);
  const O = (i: string, j: string) => fr("o", DV16, i, j);

  // ---- S = Q Kᵀ for the subgroup's TR × BN16 tiles (K as a right matrix: Kᵀ read col-major from row-major K)
  const qk = (src: "hs" | "kg") => each([["tk", 0, DK16], ["tj", 0, BN16]], (k, j) => {
    const kt = src === "hs" && !!c.stageKT; // Kᵀ[d][n] staged: (k = d, n) at d·KTST + n, row-major
    const km = kMat(`tile + 16u * (${j})`, `16u * (${k})`);
    const off = src === "hs" ? (kt ? `16u * (${k}) * ${KTST}u + 16u * (${j})` : `16u * (${j}) * ${KVST}u + 16u * (${k})`) + zo : km.off;
    const stride = src === "hs" ? `${kt ? KTST : KVST}u` : km.stride;
    const layout = src === "hs" ? (kt ? "row_major" : "col_major") : km.layout;
    return `        {
          ${mx.loadTo("kr", true, "right", src === "hs" ? kvArr : src, layout, off, stride)}
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, k), "kr", S(i, j))};`)}
        }`;
  });
  // ---- O += P V (P from hs as left matrices, V as right matrices)
  const pv = (src: "hs" | "vg") => each([["tk", 0, BN16]], (k) => `        {
${E ? `var pf: array<LM, ${TR}>;` : ""}
${each([["ti", 0, TR]], (i) => `          ${pT
    ? mx.loadTo(E ? `pf[${i}]` : `p${lit(i)}`, !E, "left", "hs", "col_major", `${POFF}u + 16u * (${k}) * ${PTST}u + sg * ${R}u + 16u * (${i})`, `${PTST}u`)
    : mx.loadTo(E ? `pf[${i}]` : `p${lit(i)}`, !E, "left", "hs", "row_major", `${POFF}u + (sg * ${R}u + 16u * (${i})) * ${PST}u + 16u * (${k})`, `${PST}u`)}`)}
${each([["tj", 0, DV16]], (j) => {
    const vt = src === "hs" && !!c.stageVT; // Vᵀ[dv][n] staged: (k = n, dv) at dv·KTST + n, col-major
    const vg = vMat(`tile + 16u * (${k})`, `16u * (${j})`);
    const off = src === "hs" ? `${VOFF}u + ` + (vt ? `16u * (${j}) * ${KTST}u + 16u * (${k})` : `16u * (${k}) * ${KVST}u + 16u * (${j})`) + zo : vg.off;
    const stride = src === "hs" ? `${vt ? KTST : KVST}u` : vg.stride;
    const layout = src === "hs" ? (vt ? "col_major" : "row_major") : vg.layout;
    const vr = src === "vg" && prefetch ? `let vr = vp${lit(k)}_${lit(j)};` : mx.loadTo("vr", true, "right", src === "hs" ? kvArr : src, layout, off, stride);
    return `          {
            ${vr}
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(E ? `pf[${i}]` : `p${lit(i)}`, "vr", O(i, j))};`)}
          }`;
  })}
        }`);

  // V of a whole tile into named right matrices (prefetchV), consumed by pv("vg")
  const prefetchDecl = () => each([["tk", 0, BN16], ["tj", 0, DV16]], (k, j) => `      var vp${lit(k)}_${lit(j)}: RM;`);
  const prefetchLoads = () => each([["tk", 0, BN16], ["tj", 0, DV16]], (k, j) => {
    const m = vMat(`tile + 16u * (${k})`, `16u * (${j})`);
    return `        vp${lit(k)}_${lit(j)} = ${mx.load("right", "vg", m.layout, m.off, m.stride)};`;
  });
  // K of the next whole tile into named right matrices (probe.kAhead), consumed by the next iteration's Q · Kᵀ
  const kAhead = prefetch && !!c.kAhead;
  const kpName = (k: string, j: string) => `kp${lit(k)}_${lit(j)}`;
  const kAheadDecl = () => `${each([["tk", 0, DK16], ["tj", 0, BN16]], (k, j) => `    var ${kpName(k, j)}: RM;`)}
    var have_kp = false;
`;
  const kAheadLoads = (t: string) => each([["tk", 0, DK16], ["tj", 0, BN16]], (k, j) =>
    `          ${kpName(k, j)} = ${mx.load("right", "kg", "col_major", `(kv_base + ${t} + 16u * (${j})) * ${c.D}u + 16u * (${k})`, `${c.D}u`)};`);
  const qkAhead = () => `        if (!have_kp) {
${kAheadLoads("tile")}
        }
${each([["tk", 0, DK16], ["tj", 0, BN16], ["ti", 0, TR]], (k, j, i) => `        ${S(i, j)} = ${mx.mma(Q(i, k), kpName(k, j), S(i, j))};`)}
${prefetchLoads()}
        have_kp = tile + ${2 * c.BN}u <= col_limit;
        if (have_kp) {
${kAheadLoads(`tile + ${c.BN}u`)}
        }`;

  const { rowReduce, modEntry, rescale, epilogue } = tensorForwardParts({
    mx, each, O, R, TR, DV16, BN16, G, SST, shuffle, identityScore: c.identityScore, Dv: c.Dv, OT,
  });

  const NC4 = c.BN / (4 * G); // vec4 score groups per thread
  // P of the thread's row, columns 4·(part + G·q) + {0..3}, as f16: along the row of P [BM][PST], or down column r of
  // Pᵀ [BN][PTST] (pTransposed: prow = POFF + r)
  const pAt = (q: number) => pT ? `prow + (${4 * G * q}u + 4u * part) * ${PTST}u` : `prow + ${4 * G * q}u + 4u * part`;
  const putP = () => pT ? `hs[o] = ph.x; hs[o + ${PTST}u] = ph.y; hs[o + ${2 * PTST}u] = ph.z; hs[o + ${3 * PTST}u] = ph.w;` : put4("o", "ph");

  // a function: its matrix ops must register their emulation helpers in template order (byte-identical WGSL)
  const softmaxSection = () => pr.softmax === undefined ? `      // ---- scores of row r: scale, bounds / mask / score mod, online softmax (base 2), P as f16
      let edge = partial || rows_short || !full_tile;
${lines(NC4, (q) => `      var x${q} = vec4<f32>(fs[srow + ${4 * G * q}u + 4u * part], fs[srow + ${4 * G * q + 1}u + 4u * part], fs[srow + ${4 * G * q + 2}u + 4u * part], fs[srow + ${4 * G * q + 3}u + 4u * part]) * P.q_scale;`)}
      if (edge) {
${lines(NC4, (q) => `        {
          let cc = ${4 * G * q}u + 4u * part;
          var x = x${q};${modEntry(true)}
          x${q} = x;
        }`)}
      }${c.identityScore ? "" : ` else {
${lines(NC4, (q) => `        {
          let cc = ${4 * G * q}u + 4u * part;
          var x = x${q};${modEntry(false)}
          x${q} = x;
        }`)}
      }`}
      var mx4 = x0;
${lines(NC4 - 1, (q) => `      mx4 = max(mx4, x${q + 1});`)}
      var mxv = max(max(mx4.x, mx4.y), max(mx4.z, mx4.w));
${rowReduce("mxv", "max")}
      let m_new = max(m, mxv);
      var alpha = 1.0;
      if (m == NEG_INF) {
        m = m_new;
      } else if (m_new > m + ${tau.toFixed(1)}) {
        alpha = exp2(m - m_new);
        m = m_new;
        flag_s = iter + 1u;
      }
      // a row whose max is still −∞ uses 0 as reference; select, not exp2(−∞) (some exp2 clamp)
      let m_ref = select(m, 0.0, m == NEG_INF);
      var lsum = vec4<f32>(0.0);
${lines(NC4, (q) => `      {
        let p = select(exp2(x${q} - m_ref), vec4<f32>(0.0), x${q} == vec4<f32>(NEG_INF));
        lsum += p;
        let o = ${pAt(q)};
        let ph = vec4<f16>(p);
        ${putP()}
      }`)}
      l = l * alpha + (lsum.x + lsum.y) + (lsum.z + lsum.w);
      // one barrier: P and V visible, and whether any row of the workgroup moved its reference max
${rescale()}
` : pr.softmax === "copy" ? `      // ---- DIAGNOSTIC (probe.softmax "copy"): P = scaled S, no mask / max / exp2 / reduction
${lines(NC4, (q) => `      {
        let p = vec4<f32>(fs[srow + ${4 * G * q}u + 4u * part], fs[srow + ${4 * G * q + 1}u + 4u * part], fs[srow + ${4 * G * q + 2}u + 4u * part], fs[srow + ${4 * G * q + 3}u + 4u * part]) * P.q_scale;
        l += p.x;
        let o = ${pAt(q)};
        let ph = vec4<f16>(p);
        ${putP()}
      }`)}
      workgroupBarrier();
` : `      // ---- DIAGNOSTIC (probe.softmax "none"): no scalar pass; P·V reads whatever P holds
      l += fs[srow + part];
      workgroupBarrier();
`;
  const body = `
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32${c.emulate ? "" : ", @builtin(subgroup_id) sgid: u32"}${shuffle ? ", @builtin(subgroup_invocation_id) sg_lane: u32" : ""}) {
  ${mx.entry("tid")}
  let sg = ${c.emulate ? "tid / 32u" : "sgid"};${guard ? "\n  let mx_live = P.Hq != 0u; // always true; the compiler cannot know it" : ""}
  let NEG_INF = neg_inf();
${workgroupCoords(c.BM)}  let q_base = (b * P.Hq + h) * P.Sq;
  let kv_base = (b * P.Hkv + hk) * P.Skv;${vT ? `\n  let vt_head = (b * P.Hkv + hk) * ${c.Dv}u; // V transposed: row dv of this head at (vt_head + dv) · Skv` : ""}${kT ? `\n  let kt_head = (b * P.Hkv + hk) * ${c.D}u; // K transposed: row d of this head at (kt_head + d) · Skv` : ""}
  let trow = b * P.tb_stride_b + h * P.tb_stride_h + qblk;
  // softmax / epilogue ownership: thread tid owns workgroup row r, columns 4·(part + G·q) + {0..3}
  // (subgroup sg's lanes own its rows sg·R ..; with shuffles the lane id says which, not the linear index)
  let r = ${shuffle ? `sg * ${R}u + sg_lane / ${G}u` : `tid / ${G}u`};
  let part = ${shuffle ? "sg_lane" : "tid"} % ${G}u;${pr.opaqueOffsets ? "\n  let zoff = P.pad1; // 0, unknown to the compiler" : ""}
  let row = row0 + r;
  let srow = r * ${SST}u;
  let prow = ${pT ? `${POFF}u + r; // Pᵀ: column r` : `${POFF}u + r * ${PST}u;`}

  // ---- Q: staged once (zero past the block / sequence and in the padding), kept as left matrices
  for (var idx = tid; idx < ${c.BM * (Dp / 4)}u; idx += ${NT}u) {
    let rr = idx / ${Dp / 4}u;
    let d4 = idx % ${Dp / 4}u;
    var x = vec4<f16>(0.0h);
    if (row0 + rr < row_limit${c.D === Dp ? "" : ` && d4 < ${c.D / 4}u`}) { x = qg[(q_base + row0 + rr) * ${c.D / 4}u + d4]; }
    let o = ${QOFF}u + rr * ${QST}u + 4u * d4;
    ${put4("o", "x")}
  }
  workgroupBarrier();
${E ? `  var q_f: array<LM, ${TR * DK16}>;` : ""}
${each([["ti", 0, TR], ["tk", 0, DK16]], (i, k) => `  ${mx.loadTo(Q(i, k), !E, "left", "hs", "row_major", `${QOFF}u + (sg * ${R}u + 16u * (${i})) * ${QST}u + 16u * (${k})`, `${QST}u`)}`)}
  ${decl("o", TR, DV16, "CM")}
  var m = NEG_INF;
  var l = 0.0;
  var iter = 0u;

${uniformWalk ? BLOCK_WALK_UNIFORM_OPEN : BLOCK_WALK_OPEN}${kAhead ? kAheadDecl() : ""}    for (var tile = kb * P.KB; tile < col_limit; tile += ${c.BN}u) {
      workgroupBarrier(); // the previous tile's P · V is done with hs
      let full_tile = tile + ${c.BN}u <= col_limit;
      ${decl("s", TR, BN16, "CM")}
${prefetch ? prefetchDecl() : ""}
      ${kFull ? `if (full_tile) {
${kAhead ? qkAhead() : `${pr.skip === "qk" ? "" : qk("kg")}
${prefetch && pr.skip !== "pv" ? prefetchLoads() : ""}`}
      } else ` : ""}{
${stage("kg", c.D, Dp, !!c.stageKT, 0)}
        workgroupBarrier();
${qk("hs")}${pr.extraBarrier ? "\n        workgroupBarrier();" : ""}
      }
${each([["ti", 0, TR], ["tj", 0, BN16]], (i, j) => `      ${mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j})`, S(i, j), `${SST}u`)}`)}
      workgroupBarrier();
      // V of an edge tile goes where K was (every subgroup is past its Q · Kᵀ)
      ${vFull ? "if (!full_tile) " : ""}{
${stage("vg", c.Dv, Dvp, !!c.stageVT, VOFF)}
      }
${softmaxSection()}      ${vFull ? `if (full_tile) {
${pr.skip === "pv" ? "" : pv("vg")}
      } else ` : ""}{
${pv("hs")}${pr.extraBarrier ? "\n        workgroupBarrier();" : ""}
      }
      iter += 1u;
    }
  }

${epilogue()}`;

  return `${mx.directives()}
// FlexAttention forward, tensor family (${c.emulate ? "EMULATED subgroup matrices" : "subgroup matrices"}, f16 operands, f32 accumulate).
// Generated by kernels/flex_forward_tensor.ts.${pr0.salt !== undefined ? ` (salt ${pr0.salt})` : ""}
//
//   D = ${c.D} (padded ${Dp}), Dv = ${c.Dv} (padded ${Dvp})   head dims; padding is zero in workgroup memory
//   BLOCK_M = ${c.BM} = ${c.subgroups} subgroups × ${R} rows (TR = ${TR} row tiles of 16 each); BLOCK_N = ${c.BN}
//   threads = ${NT}; softmax: G = ${G} thread(s) per row
//   hs (f16)   Q staging [BM][${QST}] at ${QOFF}${c.qOwnSmem ? " (own region)" : " at start"}; per tile: K, then V (edge tiles${direct ? "" : " and all tiles"}) [BN][${KVST}] at 0,
//              ${pT ? `Pᵀ [BN][${PTST}] at ${POFF} (P transposed: col_major left loads)` : `P [BM][${PST}] at ${POFF}`}
//   fs (f32)   S [BM][${SST}]; also the output accumulators' chunks for rescaling / the epilogue
//   kv direct = ${direct}: interior tiles load K / V matrices straight from global memory
//   lazy rescale: a row's reference max moves only when the max grows by > ${tau} (log2 units); the
//   accumulators are rescaled (through fs) only in tiles where some row of the workgroup moved.
//   q_scale (uniform) multiplies S in f32 (× log2 e already folded in when the score mod is the identity).
//   Fully masked rows: out = 0, lse = −∞. Split-KV: grid z = B · n_splits, as in kernels/flex_forward.ts.

${tensorForwardBindings(KVT, OT)}

${mx.prelude()}

${pr.separateKV ? `var<workgroup> kvs: array<f16, ${POFF}>;\n` : ""}var<workgroup> hs: array<f16, ${d.HS}>;
var<workgroup> fs: array<f32, ${d.FS}>;
var<workgroup> flag_s: u32;
${G > 1 && !shuffle ? `var<workgroup> red: array<f32, ${NT}>;` : ""}${uniformWalk ? `\n${BLOCK_WALK_UNIFORM_DECL}` : ""}

fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }
${ERROR_BITS_DECL}

${mx.helpers()}

${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}
${body}`;
}
