/**
 * The tensor-family forward's pipelined staged path (`kvPipe` configs of kernels/flex_forward_tensor.ts): several
 * subgroups share each K / V tile, staged once per workgroup in a double buffer of workgroup memory with padded
 * rows, and the NEXT tile's K / V travel from global memory into registers while the current tile computes
 * (FA2-style software pipelining). Same bindings (k / v as vec4<f16>), uniforms, grid, block walk (bounds through
 * workgroupUniformLoad: the H200's stale-load cure), mods, masks, ragged edges, split-KV, padded head dims and GQA
 * as the direct path; `emulate` runs the same template with plain-WGSL matrices (CI).
 *
 * Why (bench/RESULTS.md, session 6 call 1, layout probe part W): matrix loads from workgroup memory run at the MMA
 * peak (614 of 616 TF/s) when rows are padded by 16 bytes, 3.2× slower unpadded (bank conflicts); loads straight
 * from storage top out near 100 TF/s. Earlier staged shapes exposed the global latency on every tile (barrier →
 * loads → stores → barrier); here the loads are in flight across the Q·Kᵀ and the softmax.
 *
 * One tile, two barriers (cur = the tile's buffer, the other one receives the next tile):
 *   next position (the next BN keys of this block, else the next block's first: its index through
 *   workgroupUniformLoad) → next K / V: global → registers → S = Q·Kᵀ (K of buffer cur) → S to fs
 *   → barrier 1 (S visible; every subgroup is past the previous tile's P·V: P and buffer 1−cur are free)
 *   → softmax of the thread's row, P to hs → registers → buffer 1−cur
 *   → barrier 2 (workgroupUniformLoad of the rescale flag: P and the next tile visible) → [lazy rescale of O]
 *   → O += P·V (V of buffer cur).
 * Every row stride is an odd multiple of 16 bytes (D+8, BN+8 f16; BN+4 f32): the 8 rows of a matrix load's phase
 * fall in distinct banks. `sTransposed` / `pTransposed`: S ([BN][BM+4] f32, col_major store) and P ([BN][BM+8] f16,
 * col_major left loads) transposed, so the softmax thread of row r reads and writes column r (consecutive lanes,
 * consecutive words) instead of a row per lane (4-way bank conflicts).
 * H200, B4 H16 S4096 D64 f16 (bench/tensor_variants.ts part C, GPU-timed, session 6 calls 1–2): 128/32/8 + shuffles
 * + S, P transposed 3.70 / 1.98 / 3.04 ms noop / causal / softcap + causal; without the transposes 4.29 / 2.27 / 3.36;
 * the direct kTransposed 32/32/1 4.98 / 2.73 / 4.38. One subgroup (32/32/1) pipelined: 31 ms (a lone subgroup carries
 * the whole tile's loads and stores).
 * Session 7 (HF, bench/tensor_variants.ts part S: all variants compiled and checked first, then timed round-robin
 * with warm clocks, 2 passes): the workgroup-memory size sets the occupancy — 64/16/4 + shuffles + S/P transposed
 * 5.05 ms noop at 16.7 KB, 8.56 ms with 30 KB of unused workgroup memory added (probe.smemPad); one K / V buffer
 * (kvSingle, 46 → 37 KB) 3.50 / 1.82 ms noop / causal vs 3.74 / 1.97; without the scalar softmax (probe.softmax
 * "none") 2.50 ms noop; 32 rows a subgroup (128/32/4) 6.04; the ping-pong halves (pingPong) 5.68; BN 64 (64/64/4,
 * kvSingle) 7.85.
 * Session 8 (HF): `compactSmem` — the same work in less workgroup memory: Q staged in chunks of whole subgroups' rows
 * over everything hs holds (K / V buffers and P; one extra barrier pair per extra chunk, once per workgroup), and the
 * output accumulators' rescale / epilogue trips through fs in the Sᵀ layout ([chunk col][BM+4], col_major: the same
 * conflict-free strides as the S store and the softmax reads), so fs is the Sᵀ tile alone. P over S (each subgroup's
 * P written over its own S) cannot be written in WGSL: a workgroup variable has one element type, subgroupMatrixStore /
 * Load take `ptr<workgroup, array<T, N>>` with T the matrix's component type (f32 for S, f16 for P), and two
 * workgroup variables never alias; S in f16 would cost the scores' precision (|error| ~ |s|·2⁻¹¹ before the exp).
 * Session 10: `optimisticMax` — the tile loop without the rescale decision (its workgroupUniformLoad was a third and
 * fourth barrier every tile) and without rescale code; a workgroup where a row's max outgrew its first reference by more
 * than OPTIMISTIC_SPAN marks its first row's lse word, and the plain kernel (a second launch, pad1 = 1) redoes only those.
 * 128/16/8 kvSingle compactSmem: 1.85 / 1.18 / 1.43 ms noop / causal / softcap + causal (2.49 / 1.29 / 1.65 before).
 * Session 15: `skew` (one barrier a tile: P·V of the last tile, Q·Kᵀ of the next and this tile's softmax between two
 * barriers) is exact but slower on the H200 — 5.05 ms noop while its global loads crossed a barrier, 3.33 once each step
 * issued its loads at its start and stored them before its barrier (the default 1.82): on that driver a barrier waits
 * for the warp's loads in flight. `pvDefer` and `kvLate` keep the default's two barriers and move its loads so that no
 * barrier lies between a load and its store (untimed so far).
 */
import { BLOCK_WALK_UNIFORM_COUNTS, BLOCK_WALK_UNIFORM_DECL, uniformWalkKvBlock, workgroupCoords } from "./block_walk.ts";
import { ERROR_BITS_DECL } from "./error_bits.ts";
import type { FlexForwardHooks } from "./flex_forward.ts";
import type { FlexTensorConfig } from "./flex_forward_tensor.ts";
import { matrixNaming, SubgroupMatrixOps } from "./subgroup_matrix.ts";
import { tensorForwardBindings, tensorForwardParts } from "./flex_forward_tensor_parts.ts";

type PipeConfig = Omit<FlexTensorConfig, "family" | "identityScore" | "outF16">;

/** optimisticMax: how far (log2 units) a row's max may grow past its first reference before its workgroup is left to
 * the second launch; P = exp2(s − m) ≤ 2¹⁵ = 32768 < 65504, the f16 maximum. REDO: that mark in flag_s (the plain
 * kernel stamps iter + 1 there, never this). */
export const OPTIMISTIC_SPAN = 15;
/** x3: the tiles between two flushes of the matrices' partial O into per-thread f32 sums (kernels/flex_forward_tensor_parts.ts). */
export const X3_FLUSH_TILES = 16;
const REDO = "0xffffffffu";
/** The lse word of a workgroup's first row that the optimistic walk leaves for the second launch: a NaN no
 * arithmetic makes (a quiet NaN's payload from the inputs would have to be exactly this; even then the row is only
 * computed twice). */
export const REDO_MARK = "0x7fa0f1e5u";

const up16 = (x: number) => Math.ceil(x / 16) * 16;

/** x3: the exponent shift that brings a tensor's max |x| (f32 bits) into [2^14, 2^15) — below the f16 maximum with
 * hi's rounding, and the lo halves of every element down to 2^-17 of the max still normal f16; 0 for an all-zero
 * or non-finite max (an inf or NaN input propagates as it would in f32); clamped so 2^shift stays a normal f32. */
export const X3_SHIFT_FN = `fn x3_shift(bits: u32) -> i32 {
  let e = i32((bits >> 23u) & 0xffu);
  return select(clamp(141 - e, -113, 100), 0, bits == 0u || e == 255);
}
// x rounded to f16's 11 significant bits, in f32 bits (exact as an f16 in f16's normal range), so lo = x − hi is
// exact. Not f32(f16(x)): compilers may fold that round trip to x (Mesa's NIR does: every lo came out 0 on lavapipe)
fn x3_hi(x: vec4<f32>) -> vec4<f32> {
  return bitcast<vec4<f32>>((bitcast<vec4<u32>>(x) + vec4<u32>(0x1000u)) & vec4<u32>(0xffffe000u));
}`;

/** 2^x on the FMA units (expForm "split"): n = round(x) by the 1.5·2²³ shift (the sum's low mantissa bits are n, so no
 * float-to-int conversion, which issues at the special-function rate), f = x − n ∈ [−½, ½], 2^f a degree-3 minimax
 * polynomial (relative error ≤ 7.5e-5, below P's f16 rounding), n added to the exponent bits. x is clamped to
 * [−126, 64]: the exponent cannot wrap (2^−126 stands in for 0; −∞ scores are selected to 0 by the caller). `magic`
 * holds 1.5·2²³ twice, from two uniform-dependent selects the compiler cannot prove equal: with one value (literal or
 * not) compilers fold (x + c) − c to x (lavapipe did: f was 0). */
export const EXP2_FMA_FN = `fn exp2_fma(x: vec4<f32>, magic: vec2<f32>) -> vec4<f32> {
  let xc = clamp(x, vec4<f32>(-126.0), vec4<f32>(64.0));
  let t = xc + magic.x;
  let f = xc - (t - magic.y);
  let p = fma(fma(fma(vec4<f32>(0.055171669), f, vec4<f32>(0.24261115)), f, vec4<f32>(0.69326099)), f, vec4<f32>(0.99992807));
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(p) + (bitcast<vec4<u32>>(t) << vec4<u32>(23u)));
}`;

/** Workgroup-memory layout (f16 offsets in hs; fs is f32). */
function layout(c: PipeConfig) {
  const R = c.BM / c.subgroups, G = c.subgroupSize / R, NT = c.subgroups * c.subgroupSize;
  const Dp = up16(c.D), Dvp = up16(c.Dv);
  // SST: BN 16 rows 24 words apart (BN + 4 = 20 put rows 0 and 3 of a half-warp's row-major S store in the same
  // banks); other BN keep BN + 4
  // x3: Q staged as [BM][hi | lo] (2·Dp + 8: still an odd multiple of 16 bytes)
  const KST = Dp + 8, VST = Dvp + 8, QST = (c.x3 ? 2 * Dp : Dp) + 8, PST = c.BN + 8, SST = c.BN % 32 === 16 ? c.BN + 8 : c.BN + 4;
  // transposed S / P ([BN][BM + 4] f32, [BN][BM + 8] f16): the softmax thread of row r reads / writes column r
  const STST = c.BM + 4, PTST = c.BM + 8;
  // one buffer: K [BN][KST], then V [BN][VST]; x3: the lo halves' copy of both LO after the hi halves'
  const KSZ = c.BN * KST, LO = KSZ + c.BN * VST, BUF = c.x3 ? 2 * LO : LO;
  // P (x3: P hi, then P lo PLO after it)
  const PLO = c.pTransposed ? c.BN * PTST : c.BM * PST, PSZ = c.x3 ? 2 * PLO : PLO;
  if (c.compactSmem) {
    // compactSmem: K / V buffers, then P; Q staged over all of it in chunks of QC rows (whole subgroups), and the
    // output accumulators' trips through fs transposed like Sᵀ, so fs is the Sᵀ tile and nothing more.
    // skew (the optimistic walk): two K / V buffers, two P tiles (P at POFF and POFF + PLO), two Sᵀ tiles in fs
    const sk = !!(c.skew && c.optimisticMax);
    const POFF = c.kvSingle && !sk && !(c.pvDefer && c.optimisticMax) ? BUF : 2 * BUF;
    if (sk) {
      const PS2 = 2 * PSZ;
      const QC = Math.min(c.BM, Math.max(R, Math.floor((POFF + PS2) / QST / R) * R));
      const HS = Math.max(POFF + PS2, QC * QST);
      return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS, FS: 2 * c.BN * STST, QC, QOFF: 0 };
    }
    if (c.qSmem) {
      // qSmem: Q keeps its own region after P, read as left matrices every tile (no Q registers)
      const QOFF = POFF + PSZ;
      return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS: QOFF + c.BM * QST, FS: c.BN * STST, QC: c.BM, QOFF };
    }
    const QC = Math.min(c.BM, Math.max(R, Math.floor((POFF + PSZ) / QST / R) * R));
    const HS = Math.max(POFF + PSZ, QC * QST);
    return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS, FS: c.BN * STST, QC, QOFF: 0 };
  }
  // Q is staged where the buffers go (before the first tile); kvSingle: one buffer, and the staging may run over
  // into P (written only after the first tile's barrier, long after every subgroup holds its Q)
  const POFF = c.kvSingle ? BUF : Math.max(2 * BUF, c.BM * QST);
  const HS = c.kvSingle ? Math.max(POFF + PSZ, c.BM * QST) : POFF + PSZ;
  const FS = Math.max(c.BM * SST, c.sTransposed ? c.BN * STST : 0);
  return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS, FS, QC: c.BM, QOFF: 0 };
}

/** Throws when a pipelined config cannot be generated (called by checkFlexTensorConfig for kvPipe configs). */
export function checkPipeConfig(c: PipeConfig, bad: (why: string) => void): void {
  if (c.kvDirect || c.kTransposed || c.prefetchV || c.kAhead || c.stageKT || c.stageVT || c.vOwnSmem || c.qOwnSmem) {
    bad("kvPipe stages K / V itself: no kvDirect, kTransposed, prefetchV, kAhead, stageKT, stageVT, vOwnSmem, qOwnSmem");
  }
  if (c.compactSmem && (!c.sTransposed || c.pingPong)) bad("compactSmem needs sTransposed, no pingPong");
  if (c.kvLead && (!c.kvSingle || c.pingPong)) bad("kvLead: with kvSingle, no pingPong");
  if (c.qSmem && (!c.compactSmem || c.pingPong)) bad("qSmem: with compactSmem, no pingPong");
  if (c.x3 && (!c.kvSingle || !c.compactSmem || c.qSmem || c.kvLead || c.pingPong)) bad("x3: with kvSingle and compactSmem, no qSmem, kvLead or pingPong");
  if ((c.skew || c.pvDefer) && (!c.compactSmem || !c.sTransposed || c.pingPong || c.kvLead || c.qSmem || c.x3)) bad("skew / pvDefer: with compactSmem and sTransposed, no pingPong, kvLead, qSmem or x3");
  if (c.skew && c.pvDefer) bad("skew or pvDefer, not both");
  if (c.kvLate && (c.kvLead || c.pingPong)) bad("kvLate: no kvLead or pingPong");
  if (c.optimisticMax && c.pingPong) bad("optimisticMax: not with pingPong (its halves keep their own rescale flags)");
  if (c.pingPong) {
    if (c.kvSingle || !c.sTransposed || !c.pTransposed) bad("pingPong needs sTransposed and pTransposed, and two K / V buffers (no kvSingle)");
    if (c.subgroups % 2 !== 0) bad("pingPong splits the subgroups in two halves: an even count");
    const G = c.subgroupSize / (c.BM / c.subgroups);
    if (G > 1 && (c.emulate || !c.shuffleReduce)) bad("pingPong with several threads a row needs shuffleReduce, natively (its halves may not meet at a barrier mid-softmax)");
  }
  const p = c.probe ?? {};
  if (Object.keys(p).some((k) => k !== "salt" && k !== "softmax" && k !== "smemPad" && k !== "skewOrder") || p.softmax === "copy") bad("kvPipe takes only the probe knobs salt, smemPad, skewOrder and softmax \"none\"");
  if (p.skewOrder !== undefined && (!c.skew || !["pv-qk-sm", "qk-sm-pv", "sm-pv-qk"].includes(p.skewOrder))) bad("probe.skewOrder: with skew, one of pv-qk-sm, qk-sm-pv, sm-pv-qk");
  if (p.smemPad !== undefined && (!Number.isInteger(p.smemPad) || p.smemPad < 4 || p.smemPad % 4 !== 0)) bad("probe.smemPad: a positive multiple of 4 bytes");
}

/** Workgroup memory in bytes. */
export function pipeSmemBytes(c: PipeConfig): number {
  const d = layout(c);
  const shuffle = !!c.shuffleReduce && !c.emulate;
  // + 4 flag, + 12 the uniform walk's words, + 64 per-variable alignment slack (as the direct path)
  return 2 * d.HS + 4 * d.FS + (d.G > 1 && !shuffle ? 4 * d.NT : 0) + 4 + 12 + 64 + (c.probe?.smemPad ?? 0) + (c.pingPong ? 4 : 0);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export function flexForwardTensorPipeWgsl(c: FlexTensorConfig, hooks: FlexForwardHooks): string {
  const d = layout(c);
  const { R, TR, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF } = d;
  // x3 (f32 inputs): global q / k / v are vec4<f32>, split into f16 hi + lo where they go into workgroup memory
  const x3 = !!c.x3, ET = x3 ? "f32" : "f16", zero4 = x3 ? "vec4<f32>(0.0)" : "vec4<f16>(0.0h)";
  const sT = !!c.sTransposed, pT = !!c.pTransposed;
  // S of the thread's row r at column `col` (an expression), and where P of (r, col) goes
  // `b` (skew): "name + " prefixes that select the tile's Sᵀ and P buffers (the softmax reads and writes tile t's)
  type Bufs = { readonly s: string; readonly p: string };
  const ONE_BUF: Bufs = { s: "", p: "" };
  const sAt = (col: string, b: Bufs) => sT ? `fs[${b.s}(${col}) * ${STST}u + r]` : `fs[srow + ${col}]`;
  const pAt = (col: string, b: Bufs) => pT ? `${POFF}u + ${b.p}(${col}) * ${PTST}u + r` : `${b.p}prow + ${col}`;
  const DK16 = Dp / 16, DV16 = Dvp / 16, BN16 = c.BN / 16;
  const E = c.emulate;
  const mx = new SubgroupMatrixOps(E);
  const { lit, each, fr, decl } = matrixNaming(E);
  // Q's left matrices; x3: the lo halves are the tiles DK16.. of the same set
  const QW16 = x3 ? 2 * DK16 : DK16;
  const Q = (i: string, k: string) => fr("q", QW16, i, k);
  const plus = (k: string, n: number) => E ? `(${k} + ${n}u)` : `${parseInt(k) + n}u`;
  const S = (i: string, j: string) => fr("s", BN16, i, j);
  const O = (i: string, j: string) => fr("o", DV16, i, j);
  const shuffle = !!c.shuffleReduce && !E;
  const tau = c.rescaleThreshold ?? 8;
  const OT = c.outF16 ? "f16" : "f32";
  const noSoftmax = c.probe?.softmax === "none";
  const pad = c.probe?.smemPad ?? 0;
  const opt = !!c.optimisticMax;
  const sk = !!c.skew && opt;
  const pd = !!c.pvDefer && opt;
  const put4 = (o: string, x: string) => `hs[${o}] = ${x}.x; hs[${o} + 1u] = ${x}.y; hs[${o} + 2u] = ${x}.z; hs[${o} + 3u] = ${x}.w;`;

  // ---- the thread's share of a tile's K (resp. V): vec4 slots idx = tid + NT·i of [BN][Dp/4] (resp. Dvp); natively
  // one named register per slot (unrolled), emulated an array and a loop (keeps Mesa's compile small)
  const shares = (dimP: number) => Math.ceil((c.BN * dimP) / 4 / NT);
  const NKL = shares(Dp), NVL = shares(Dvp);
  const slots = (name: string, dimP: number, body: (reg: string, n: string, d4: string) => string) => {
    const total = (c.BN * dimP) / 4, count = shares(dimP);
    const inner = (i: string, reg: string) => `let idx = tid + ${NT}u * ${i}; let n = idx / ${dimP / 4}u; let d4 = idx % ${dimP / 4}u; ${body(reg, "n", "d4")}`;
    if (E) {
      const guard = total % NT === 0 ? "" : `if (tid + ${NT}u * i >= ${total}u) { break; } `;
      return `      for (var i = 0u; i < ${count}u; i++) { ${guard}${inner("i", `${name}[i]`)} }`;
    }
    return lines(count, (i) => {
      const whole = total % NT === 0 || NT * (i + 1) <= total;
      return `      ${whole ? "" : `if (tid + ${NT * i}u < ${total}u) `}{ ${inner(`${i}u`, `${name}${i}`)} }`;
    });
  };
  const regDecl = () => E ? `  var kn: array<vec4<${ET}>, ${NKL}>;\n  var vn: array<vec4<${ET}>, ${NVL}>;`
    : `${lines(NKL, (i) => `  var kn${i} = ${zero4};`)}\n${lines(NVL, (i) => `  var vn${i} = ${zero4};`)}`;
  // global → registers for the tile at `t` (keys < `lim`), zero past the sequence and in the head-dim padding
  const loadKV = (t: string, lim: string) => {
    const one = (arr: string, name: string, dim: number, dimP: number) => slots(name, dimP, (reg, n, d4) =>
      `${reg} = ${zero4}; if (${t} + ${n} < ${lim}${dim === dimP ? "" : ` && ${d4} < ${dim / 4}u`}) { ${reg} = ${arr}[(kv_base + ${t} + ${n}) * ${dim / 4}u + ${d4}]; }`);
    return { k: one("kg", "kn", c.D, Dp), v: one("vg", "vn", c.Dv, Dvp) };
  };
  const loadRegs = (t: string, lim: string) => { const r = loadKV(t, lim); return `${r.k}\n${r.v}`; };
  // registers → buffer at f16 offset `base` (an expression)
  // x3: hi = x·s rounded to 11 bits (x3_hi), lo = f16(x·s − hi) (s the tensor's power-of-two scale), lo LO after hi
  const putSplit = (o: string, reg: string, scale: string) => x3
    ? `let xs = ${reg} * ${scale}; let xh32 = x3_hi(xs); let xh = vec4<f16>(xh32); let xl = vec4<f16>(xs - xh32); ${put4(o, "xh")} let ol = ${o} + ${LO}u; ${put4("ol", "xl")}`
    : put4(o, reg);
  const storeK = (base: string) => slots("kn", Dp, (reg, n, d4) => `let o = ${base} + ${n} * ${KST}u + 4u * ${d4}; ${putSplit("o", reg, "x3_sk")}`);
  const storeV = (base: string) => slots("vn", Dvp, (reg, n, d4) => `let o = ${base} + ${KSZ}u + ${n} * ${VST}u + 4u * ${d4}; ${putSplit("o", reg, "x3_sv")}`);
  const storeRegs = (base: string) => `${storeK(base)}\n${storeV(base)}`;
  const single = !!c.kvSingle && !sk && !pd;

  // kvSingle: the one buffer's offset as a literal, so every K / V matrix offset is a constant expression — Tint's
  // robustness predicates a subgroup-matrix load (an if and a function-scope copy) unless its array length, offset and
  // stride are all constants (core/ir/transform/robustness.cc); with a `let kbuf` the offsets are not
  const kb = c.kvSingle && !c.pingPong && !sk && !pd ? "0u" : "kbuf";
  // ---- S = Q Kᵀ (Kᵀ as right matrices: col_major from K [BN][KST]); O += P V (P [BM][PST], V [BN][VST], row_major)
  const qk = () => c.qSmem ? each([["tk", 0, DK16]], (k) => `        {
${E ? `var qf: array<LM, ${TR}>;` : ""}
${each([["ti", 0, TR]], (i) => `          ${mx.loadTo(E ? `qf[${i}]` : `q${lit(i)}`, !E, "left", "hs", "row_major", `${d.QOFF}u + (sg * ${R}u + 16u * (${i})) * ${QST}u + 16u * (${k})`, `${QST}u`)}`)}
${each([["tj", 0, BN16]], (j) => `          {
            ${mx.loadTo("kr", true, "right", "hs", "col_major", `${kb} + 16u * (${j}) * ${KST}u + 16u * (${k})`, `${KST}u`)}
${each([["ti", 0, TR]], (i) => `            ${S(i, j)} = ${mx.mma(E ? `qf[${i}]` : `q${lit(i)}`, "kr", S(i, j))};`)}
          }`)}
        }`) : each([["tj", 0, BN16], ["tk", 0, DK16]], (j, k) => `        {
          ${mx.loadTo("kr", true, "right", "hs", "col_major", `${kb} + 16u * (${j}) * ${KST}u + 16u * (${k})`, `${KST}u`)}
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, k), "kr", S(i, j))};`)}${x3 ? `
          // x3: + Q lo · K hi + Q hi · K lo
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, plus(k, DK16)), "kr", S(i, j))};`)}
          ${mx.loadTo("krl", true, "right", "hs", "col_major", `${kb} + ${LO}u + 16u * (${j}) * ${KST}u + 16u * (${k})`, `${KST}u`)}
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, k), "krl", S(i, j))};`)}` : ""}
        }`);
  // P's left matrix of row tile i (`lo`: x3's P lo, PLO after P hi)
  const pName = (i: string, lo = false) => E ? `${lo ? "pfl" : "pf"}[${i}]` : `${lo ? "pl" : "p"}${lit(i)}`;
  // `add` ("name + "): skew's P buffer of the tile
  const pLoad = (i: string, k: string, lo = false, add = "") => {
    const base = lo ? POFF + PLO : POFF;
    return pT
      ? mx.loadTo(pName(i, lo), !E, "left", "hs", "col_major", `${base}u + ${add}16u * (${k}) * ${PTST}u + sg * ${R}u + 16u * (${i})`, `${PTST}u`)
      : mx.loadTo(pName(i, lo), !E, "left", "hs", "row_major", `${base}u + ${add}(sg * ${R}u + 16u * (${i})) * ${PST}u + 16u * (${k})`, `${PST}u`);
  };
  const pv = (add = "") => each([["tk", 0, BN16]], (k) => `        {
${E ? `var pf: array<LM, ${TR}>;${x3 ? ` var pfl: array<LM, ${TR}>;` : ""}` : ""}
${each([["ti", 0, TR]], (i) => `          ${pLoad(i, k, false, add)}${x3 ? `\n          ${pLoad(i, k, true)}` : ""}`)}
${each([["tj", 0, DV16]], (j) => `          {
            ${mx.loadTo("vr", true, "right", "hs", "row_major", `${kb} + ${KSZ}u + 16u * (${k}) * ${VST}u + 16u * (${j})`, `${VST}u`)}
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i), "vr", O(i, j))};`)}${x3 ? `
            // x3: + P lo · V hi + P hi · V lo
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i, true), "vr", O(i, j))};`)}
            ${mx.loadTo("vrl", true, "right", "hs", "row_major", `${kb} + ${LO + KSZ}u + 16u * (${k}) * ${VST}u + 16u * (${j})`, `${VST}u`)}
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i), "vrl", O(i, j))};`)}` : ""}
          }`)}
        }`);

  const { rowReduce, modEntry, rescale, epilogue, chunks, ownCols, accDecl, flushIf } = tensorForwardParts({
    mx, each, O, R, TR, DV16, BN16, G, SST, shuffle, identityScore: c.identityScore, Dv: c.Dv, OT, ...(c.compactSmem ? { oStride: STST } : {}),
    ...(x3 ? { outScale: "x3_inv_sv", flush: { every: X3_FLUSH_TILES, zeroO: E ? `o_f = array<CM, ${TR * DV16}>();` : each([["ti", 0, TR], ["tj", 0, DV16]], (i, j) => `${O(i, j)} = CM();`).replace(/\n/g, " ") } } : {}),
  });
  const NC4 = c.BN / (4 * G);
  // expForm (session 14 probe): "f16" — exp2 of the f16 argument (P is f16 anyway; the row sum adds the f16 values in
  // f32); "split" — the odd column groups of a thread through exp2_fma (FMA units) beside the even ones' exp2
  const expForm = x3 ? "mufu" : c.expForm ?? "mufu", expF16 = expForm === "f16";
  const expZero = expF16 ? "vec4<f16>(0.0h)" : "vec4<f32>(0.0)";
  const exp2Of = (arg: string, q: number) => expF16 ? `exp2(vec4<f16>(${arg}))` : expForm === "split" && q % 2 === 1 ? `exp2_fma(${arg}, exp_magic)` : `exp2(${arg})`;
  const modPass = (edge: boolean) => lines(NC4, (q) => `        {
          let cc = ${4 * G * q}u + 4u * part;
          var x = x${q};${modEntry(edge)}
          x${q} = x;
        }`);
  // the scores of row r: scale, bounds / mask / score mod, online softmax (base 2), P as f16
  const softmax = (flag = "flag_s", stamp = "iter + 1u", optimistic = false, b = ONE_BUF) => noSoftmax ? `      // DIAGNOSTIC (probe.softmax "none"): no scalar pass; P·V reads whatever P holds
      l += ${sAt("part", b)};
` : `      let edge = partial || rows_short || !full_tile;
${lines(NC4, (q) => `      var x${q} = vec4<f32>(${[0, 1, 2, 3].map((t) => sAt(`${4 * G * q + t}u + 4u * part`, b)).join(", ")}) * ${x3 ? "x3_qs" : "P.q_scale"};`)}
      if (edge) {
${modPass(true)}
      }${c.identityScore ? "" : ` else {
${modPass(false)}
      }`}
      var mx4 = x0;
${lines(NC4 - 1, (q) => `      mx4 = max(mx4, x${q + 1});`)}
      var mxv = max(max(mx4.x, mx4.y), max(mx4.z, mx4.w));
${rowReduce("mxv", "max")}
      let m_new = max(m, mxv);
      if (m == NEG_INF) {
        m = m_new;
      } ${optimistic ? `else if (m_new > m + ${OPTIMISTIC_SPAN.toFixed(1)}) {
        // the first walk keeps the reference: past ${OPTIMISTIC_SPAN} the workgroup walks again, with the rescale
        ${flag} = ${REDO};
      }` : `else if (m_new > m + ${tau.toFixed(1)}) {
        alpha = exp2(m - m_new);
        m = m_new;
        ${flag} = ${stamp};
      }`}
      // a row whose max is still −∞ uses 0 as reference; select, not exp2(−∞) (some exp2 clamp)
      let m_ref = select(m, 0.0, m == NEG_INF);
      var lsum = ${expZero};
${lines(NC4, (q) => `      {
        ${c.identityScore
    // identity score: only an edge tile's mask pass writes −∞, so interior tiles skip the compare and select
    ? `var p = ${exp2Of(`x${q} - m_ref`, q)};
        if (edge) { p = select(p, ${expZero}, x${q} == vec4<f32>(NEG_INF)); }`
    : `let p = select(${exp2Of(`x${q} - m_ref`, q)}, ${expZero}, x${q} == vec4<f32>(NEG_INF));`}
        lsum += p;
        ${x3 ? "let ph32 = x3_hi(p);\n        let ph = vec4<f16>(ph32);" : expF16 ? "let ph = p;" : "let ph = vec4<f16>(p);"}
        ${pT ? `let o = ${pAt(`${4 * G * q}u + 4u * part`, b)}; hs[o] = ph.x; hs[o + ${PTST}u] = ph.y; hs[o + ${2 * PTST}u] = ph.z; hs[o + ${3 * PTST}u] = ph.w;`
    : `let o = ${pAt(`${4 * G * q}u + 4u * part`, b)}; ${put4("o", "ph")}`}${x3 ? `
        // x3: P lo (P ≤ 2^${OPTIMISTIC_SPAN}, unscaled)
        let pl = vec4<f16>(p - ph32);
        ${pT ? `let ol = o + ${PLO}u; hs[ol] = pl.x; hs[ol + ${PTST}u] = pl.y; hs[ol + ${2 * PTST}u] = pl.z; hs[ol + ${3 * PTST}u] = pl.w;`
    : `let ol = o + ${PLO}u; ${put4("ol", "pl")}`}` : ""}
      }`)}
      ${expF16 ? "let lsf = vec4<f32>(lsum);\n      l = l * alpha + (lsf.x + lsf.y) + (lsf.z + lsf.w);" : "l = l * alpha + (lsum.x + lsum.y) + (lsum.z + lsum.w);"}
`;
  // one step of the walk from position f = (blk, kb, tile, col_limit) to t = (blk, kb, tile, col_limit, has_next): the
  // next BN keys of the block, else the first of the next block, its index through workgroupUniformLoad. `decl`: t
  // declared here (var / let); else assigned (kvLead's loop-carried position). `cur` guards a walk whose current
  // tile may be none
  const walkStep = (f: string[], t: string[], ind: string, decl: boolean, cur = "") => {
    const [v, l] = decl ? ["var ", "let "] : ["", ""];
    return `${ind}${v}${t[0]} = ${f[0]};
${ind}${v}${t[1]} = ${f[1]};
${ind}${v}${t[2]} = ${f[2]} + ${c.BN}u;
${ind}if (${cur}${t[2]} >= ${f[3]}) {
${ind}  ${t[0]} = ${f[0]} + 1u;
${ind}  if (${t[0]} < blk_end) {
${ind}    if (tid == 0u) { ${uniformWalkKvBlock(t[0])} }
${ind}    ${t[1]} = workgroupUniformLoad(&walk_kb);
${ind}  }
${ind}  ${t[2]} = ${t[1]} * P.KB;
${ind}}
${ind}${l}${t[3]} = min(${t[1]} * P.KB + P.KB, P.Skv);
${ind}${l}${t[4]} = ${cur}${t[0]} < blk_end;
`;
  };
  const CUR = ["blk", "kb", "tile", "col_limit"], NEXT = ["nblk", "nkb", "ntile", "ncol_limit", "has_next"];
  const AFTER = ["n2blk", "n2kb", "n2tile", "n2col_limit", "has_next2"];
  // the next tile's position (nblk, nkb, ntile, ncol_limit, has_next)
  const nextTile = (cur: string) => walkStep(CUR, NEXT, "    ", true, cur);
  // ---- pingPong: the two halves of the workgroup's subgroups (A = rows [0, BM/2), B = the rest) work a phase apart —
  // while one half runs its matrix products (P·V of the last tile, Q·Kᵀ of this one) the other runs the scalar
  // softmax, so every phase between two barriers has both kinds of work in flight (FA3's ping-pong, with
  // workgroupBarrier instead of named barriers). Per tile t, phase X: A rescales (if its max moved at t−1), P·V(t−1),
  // Q·Kᵀ(t); B softmax(t−1). Phase Y: B rescales, P·V(t−1), Q·Kᵀ(t); A softmax(t); everyone stores V(t) and K(t+1).
  // K(t) / V(t) share buffer t % 2 (K(t+1) goes into the other one, whose K was last read in phase Y of t−1). A last
  // iteration drains tile T−1. The rescale stages O in its half's columns of Sᵀ (free in that phase), col_major.
  const HSG = c.subgroups / 2;
  const rescaleHalf = (g: number) => chunks.map(([j0, j1]) => `        if (grp == ${g}u) {
${each([["ti", 0, TR], ["tj", j0, j1]], (i, j) => `          ${mx.store("fs", `16u * (${j} - ${j0}u) * ${STST}u + sg * ${R}u + 16u * (${i})`, O(i, j), `${STST}u`, "col_major")}`)}
        }
        workgroupBarrier();
        if (grp == ${g}u) {
${ownCols(16 * (j1 - j0), (cc) => `          { let o = (${cc}) * ${STST}u + r; fs[o] *= alpha; fs[o + ${STST}u] *= alpha; fs[o + ${2 * STST}u] *= alpha; fs[o + ${3 * STST}u] *= alpha; }`)}
        }
        workgroupBarrier();
        if (grp == ${g}u) {
${each([["ti", 0, TR], ["tj", j0, j1]], (i, j) => `          ${mx.loadTo(O(i, j), false, "result", "fs", "col_major", `16u * (${j} - ${j0}u) * ${STST}u + sg * ${R}u + 16u * (${i})`, `${STST}u`)}`)}
        }
        workgroupBarrier();`).join("\n");
  const mmaHalf = () => `      if (iter > 0u) {
        let kbuf = pbuf; // V(t − 1)
${pv()}
      }
      if (has_cur) {
        ${decl("s", TR, BN16, "CM")}
${qk()}
${each([["ti", 0, TR], ["tj", 0, BN16]], (i, j) => `        ${mx.store("fs", `16u * (${j}) * ${STST}u + sg * ${R}u + 16u * (${i})`, S(i, j), `${STST}u`, "col_major")}`)}
      }`;
  const pingPongLoop = () => `  let grp = sg / ${HSG}u; // 0: A, 1: B
  var p_tile = 0u;
  var p_col_limit = 0u;
  var p_partial = false;
  var p_full = false;
  var resc_a = false;
  var alpha = 1.0;
  loop {
    let has_cur = blk < blk_end;
    if (!has_cur && iter == 0u) { break; }
    let kbuf = (iter & 1u) * ${BUF}u; // K(t), then V(t)
    let pbuf = (~iter & 1u) * ${BUF}u; // V(t − 1), then K(t + 1)
    let partial = blk < n_partial;
    let full_tile = tile + ${c.BN}u <= col_limit;
${nextTile("has_cur && ")}    if (has_next) {
${loadKV("ntile", "ncol_limit").k}
    }
    if (has_cur) {
${loadKV("tile", "col_limit").v}
    }
    // ---- phase X: A's products, B's softmax of the last tile
    if (resc_a) {
${rescaleHalf(0)}
    }
    if (grp == 0u) {
${mmaHalf()}
    } else if (iter > 0u) {
      let tile = p_tile;
      let col_limit = p_col_limit;
      let partial = p_partial;
      let full_tile = p_full;
      alpha = 1.0;
${softmax("flag_b", "iter")}    }
    let resc_b = workgroupUniformLoad(&flag_b) == iter && iter > 0u;
    // ---- phase Y: B's products, A's softmax of this tile, the next tile into the buffers
    if (resc_b) {
${rescaleHalf(1)}
    }
    if (grp == 1u) {
${mmaHalf()}
    } else if (has_cur) {
      alpha = 1.0;
${softmax()}    }
    if (has_cur) {
${storeV("kbuf")}
    }
    if (has_next) {
${storeK("pbuf")}
    }
    resc_a = workgroupUniformLoad(&flag_s) == iter + 1u;
    if (!has_cur) { break; }
    p_tile = tile;
    p_col_limit = col_limit;
    p_partial = partial;
    p_full = full_tile;
    blk = nblk;
    kb = nkb;
    tile = ntile;
    col_limit = ncol_limit;
    iter += 1u;
  }`;
  // rows [q0, q0 + n) of the Q block → hs from offset 0 (zero past the block / sequence and in the head-dim padding)
  // x3: a row of the staging is [hi | lo] (QW = 2·Dp columns), both halves from the same f32 load
  const QW4 = (x3 ? 2 * Dp : Dp) / 4;
  const stageQ = (q0: number, n: number) => `  for (var idx = tid; idx < ${n * QW4}u; idx += ${NT}u) {
    let rr = ${q0 ? `${q0}u + ` : ""}idx / ${QW4}u;
    ${x3 ? `let c4 = idx % ${QW4}u;
    let d4 = c4 % ${Dp / 4}u;` : `let d4 = idx % ${QW4}u;`}
    var x = ${zero4};
    if (row0 + rr < row_limit${c.D === Dp ? "" : ` && d4 < ${c.D / 4}u`}) { x = qg[(q_base + row0 + rr) * ${c.D / 4}u + d4]; }
    let o = ${d.QOFF ? `${d.QOFF}u + ` : ""}${q0 ? `(idx / ${QW4}u)` : "rr"} * ${QST}u + 4u * ${x3 ? "c4" : "d4"};
    ${x3 ? `let xs = x * x3_sq;
    let xh32 = x3_hi(xs);
    var xh = vec4<f16>(xh32);
    if (c4 >= ${Dp / 4}u) { xh = vec4<f16>(xs - xh32); }
    ${put4("o", "xh")}` : put4("o", "x")}
  }`;
  // compactSmem with a Q block larger than hs: chunks of QC rows (whole subgroups) one after another; the subgroups
  // whose rows a chunk holds load their left matrices from it (a subgroup-uniform branch), a barrier before the next
  // chunk overwrites it
  const qChunks = () => {
    const parts: string[] = [`  // ---- Q: staged in chunks of ${d.QC} rows over the whole of hs (compactSmem), kept as left matrices`,
      E ? `  var q_f: array<LM, ${TR * QW16}>;` : each([["ti", 0, TR], ["tk", 0, QW16]], (i, k) => `  var ${Q(i, k)}: LM;`)];
    for (let q0 = 0; q0 < c.BM; q0 += d.QC) {
      const n = Math.min(d.QC, c.BM - q0);
      if (q0) parts.push("  workgroupBarrier(); // the last chunk's matrices are loaded");
      parts.push(stageQ(q0, n), "  workgroupBarrier();",
        `  if (${q0 ? `sg >= ${q0 / R}u && ` : ""}sg < ${(q0 + n) / R}u) {`,
        each([["ti", 0, TR], ["tk", 0, QW16]], (i, k) => `    ${mx.loadTo(Q(i, k), false, "left", "hs", "row_major", `(sg * ${R}u${q0 ? ` - ${q0}u` : ""} + 16u * (${i})) * ${QST}u + 16u * (${k})`, `${QST}u`)}`),
        "  }");
    }
    return parts.join("\n");
  };
  // the tile loop; `optimistic` (optimisticMax): the reference max stays, a row that outgrows it by more than
  // OPTIMISTIC_SPAN marks flag_s for the second launch, and the rescale decision is a plain barrier.
  // kvLead (kvSingle): the loads a whole tile ahead — right after this tile's stores (V of this tile, K of the next)
  // the loads of the next tile's V and of the one after it's K go out, so they travel across barrier 2, P·V and the
  // next tile's Q·Kᵀ instead of only the Q·Kᵀ and the softmax (the same registers, live across the loop's back edge);
  // the loop carries the next tile's position (leadStart) and computes the one after it
  const lead = !!c.kvLead;
  const storesAhead = () => lead ? `${AFTER.map((x, k) => `    var ${x} = ${k < 4 ? NEXT[k] : "false"};`).join("\n")}
    if (has_next) {
${storeK("0u")}
${walkStep(NEXT.slice(0, 4), AFTER, "      ", false)}${loadKV("ntile", "ncol_limit").v}
      if (has_next2) {
${loadKV("n2tile", "n2col_limit").k}
      }
    }` : `    if (has_next) {
${single ? storeK("0u") : storeRegs("nbuf")}
    }`;
  // the tile's global loads: the next tile's K (and V with two buffers), this tile's V (kvSingle)
  const late = !!c.kvLate;
  const tileLoads = `    if (has_next) {
${single ? loadKV("ntile", "ncol_limit").k : loadRegs("ntile", "ncol_limit")}
    }
${single ? `${loadKV("tile", "col_limit").v}\n` : ""}`;
  const tileLoop = (optimistic: boolean) => `  loop {
    if (blk >= blk_end) { break; }
    // the buffers' f16 offsets from the tile count: multiples of ${BUF} the compiler can see (aligned vector stores)
${single ? `    // kvSingle: one buffer at 0 (K of the next tile and V of this one go in after barrier 1)
` : `    let kbuf = (iter & 1u) * ${BUF}u;
    let nbuf = (~iter & 1u) * ${BUF}u;
`}    let partial = blk < n_partial;
    let full_tile = tile + ${c.BN}u <= col_limit;
${lead ? "" : `    // the next tile: the next ${c.BN} keys of this block, else the first of the next block
${nextTile("")}${late ? "" : tileLoads}`}    ${decl("s", TR, BN16, "CM")}
${qk()}
${each([["ti", 0, TR], ["tj", 0, BN16]], (i, j) => `    ${sT
    ? mx.store("fs", `16u * (${j}) * ${STST}u + sg * ${R}u + 16u * (${i})`, S(i, j), `${STST}u`, "col_major")
    : mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j})`, S(i, j), `${SST}u`)}`)}
    workgroupBarrier(); // S visible; every subgroup is past the previous tile's P · V
${late ? `    // kvLate: the loads after barrier 1, so no barrier lies between them and their stores
${tileLoads}` : ""}    var alpha = 1.0;
${softmax("flag_s", "iter + 1u", optimistic)}${single ? `${storeV("0u")}\n` : ""}${storesAhead()}
${optimistic ? `    workgroupBarrier(); // P and the next tile visible (no rescale in the first walk)${x3 ? `
${flushIf("")}` : ""}` : `    // P and the next tile visible; did any row of the workgroup move its reference max?
${rescale()}`}
${pv()}
${[...CUR, ...(lead ? NEXT : [])].map((x, k) => `    ${x} = ${[...NEXT.slice(0, 4), ...AFTER][k]};`).join("\n")}
    iter += 1u;
  }`;
  // kvLead's prologue, after the first tile's K is staged: the next tile's position, its K and this tile's V in flight
  const leadStart = () => `  var nblk = blk;
  var nkb = kb;
  var ntile = tile;
  var ncol_limit = col_limit;
  var has_next = false;
  if (blk < blk_end) {
${walkStep(CUR, NEXT, "    ", false)}${loadKV("tile", "col_limit").v}
    if (has_next) {
${loadKV("ntile", "ncol_limit").k}
    }
  }
`;
  // ---- skew (the optimistic walk): one barrier a tile. At the top of step t (after barrier t): Sᵀ of tile t in fs
  // buffer t % 2 (the subgroup's own rows), P of tile t − 1 in P buffer (t − 1) % 2, K of tile t + 1 and V of tile
  // t − 1 in K / V buffer (t + 1) % 2. Step t: K(t + 2) and V(t) global → registers; O += P(t − 1)·V(t − 1);
  // S(t + 1) = Q·K(t + 1)ᵀ; the softmax of tile t (fs t % 2 → P t % 2); S(t + 1) → fs (t + 1) % 2; K(t + 2) and V(t) →
  // buffer t % 2 (its last readers, step t − 1's Q·K(t)ᵀ and P·V(t − 2), are past barrier t); the walk to tile t + 3;
  // barrier t + 1. The three computations of a step depend on nothing of each other, so the matrix products can run
  // beside the scalar softmax. A last step (t = T) drains P·V(T − 1).
  // fs and hs are separate variables: the softmax's Sᵀ loads may pass the products' hs loads and P / K / V stores.
  const N3 = ["n3blk", "n3kb", "n3tile", "n3col_limit", "has_next3"];
  const SSZ = c.BN * STST;
  const storeS = (off: string, ind: string) => each([["ti", 0, TR], ["tj", 0, BN16]], (i, j) =>
    `${ind}${mx.store("fs", `${off} + 16u * (${j}) * ${STST}u + sg * ${R}u + 16u * (${i})`, S(i, j), `${STST}u`, "col_major")}`);
  const posDecl = (to: string[], from: string[]) => `${to.slice(0, 4).map((x, k) => `  var ${x} = ${from[k]};`).join("\n")}\n  var ${to[4]} = false;`;
  // both forms: a step's global loads (K of the tile at `kPos` = NEXT- / AFTER-style names, V of this tile), its stores
  // into buffer `nbuf`, the softmax of tile t, the positions moved one tile on (`from` ← `to`), and the two-steps-a-trip
  // loop (even t, then odd t: every buffer offset a constant) that ends the optimistic walk
  const stepLoads = (kPos: string[]) => `      if (${kPos[4]}) {
${loadKV(kPos[2], kPos[3]).k}
      }
      if (has_cur) {
${loadKV("tile", "col_limit").v}
      }`;
  const stepStores = (kHas: string) => `      if (${kHas}) {
${storeK("nbuf")}
      }
      if (has_cur) {
${storeV("nbuf")}
      }`;
  const softmaxCur = (soft: string, ind: string) => `${ind}if (has_cur) {
${ind}  let partial = blk < n_partial;
${ind}  let full_tile = tile + ${c.BN}u <= col_limit;
${ind}  var alpha = 1.0;
${soft}${ind}}`;
  const shiftOn = (to: string[], from: string[]) => to.map((x, k) => `      ${x} = ${from[k]};`).join("\n");
  const twoStepLoop = (step: (par: number) => string) => `  // two steps a trip (even t, then odd t): every buffer offset a constant
  loop {
    if (!has_cur && iter == 0u) { break; }
${step(0)}
${step(1)}
  }
  let redo = workgroupUniformLoad(&flag_s) == ${REDO};`;
  const skewLoop = () => {
    const soft = softmax("flag_s", "iter + 1u", true, { s: "s_cur + ", p: "p_cur + " });
    const order = c.probe?.skewOrder ?? "pv-qk-sm";
    const pvPrev = `    if (iter > 0u) {
${pv("p_prev + ")}
    }`;
    const qkNext = (store: boolean) => `    ${decl("s", TR, BN16, "CM")}
    if (has_next) {
${qk()}${store ? `\n${storeS("s_nxt", "      ")}` : ""}
    }`;
    const smCur = softmaxCur(soft, "    ");
    const storeNext = `    if (has_next) {
${storeS("s_nxt", "      ")}
    }`;
    const parts = order === "pv-qk-sm" ? [pvPrev, qkNext(false), smCur, storeNext]
      : order === "qk-sm-pv" ? [qkNext(false), smCur, pvPrev, storeNext]
      : [smCur, pvPrev, qkNext(true)];
    // one step of tile t with t % 2 = par
    const step = (par: number) => `    {
      let kbuf = ${(1 - par) * BUF}u; // K(t + 1), V(t − 1)
      let nbuf = ${par * BUF}u; // K(t + 2), V(t) go in
      let s_cur = ${par * SSZ}u;
      let s_nxt = ${(1 - par) * SSZ}u;
      let p_cur = ${par * PLO}u;
      let p_prev = ${(1 - par) * PLO}u;
      // K(t + 2) and V(t) into registers first: they arrive during the step and go into buffer t % 2 before its
      // barrier (loads still in flight at a barrier cost the whole global latency: kvLead's and the first skew's lesson)
${stepLoads(AFTER)}
${parts.join("\n")}
${stepStores("has_next2")}
      // the position of tile t + 3
${posDecl(N3, AFTER).replace(/^ {2}/gm, "      ")}
      if (has_next2) {
${walkStep(AFTER.slice(0, 4), N3, "        ", false)}      }
      workgroupBarrier();
      if (!has_cur) { break; }
${shiftOn([...CUR, "has_cur", ...NEXT, ...AFTER], [...NEXT, ...AFTER, ...N3])}
    }
    iter += 1u;`;
    return `  // ---- skew: the positions of tiles t (blk, kb, tile, col_limit), t + 1 (n…) and t + 2 (n2…)
  var has_cur = blk < blk_end;
${posDecl(NEXT, CUR)}
  if (has_cur) {
${walkStep(CUR, NEXT, "    ", false)}  }
${posDecl(AFTER, NEXT)}
  if (has_next) {
${walkStep(NEXT.slice(0, 4), AFTER, "    ", false)}  }
  // prologue: K(0) → buffer 0, K(1) → buffer 1; S(0) → fs 0
  if (has_cur) {
${loadKV("tile", "col_limit").k}
${storeK("0u")}
  }
  if (has_next) {
${loadKV("ntile", "ncol_limit").k}
${storeK(`${BUF}u`)}
  }
  workgroupBarrier();
  if (has_cur) {
    let kbuf = 0u;
    ${decl("s", TR, BN16, "CM")}
${qk()}
${storeS("0u", "    ")}
  }
  workgroupBarrier();
${twoStepLoop(step)}`;
  };

  // ---- pvDefer (the optimistic walk): the two-barrier tile with P·V a tile late. K / V buffer t % 2 holds K(t) and
  // V(t − 1); phase A of tile t: K(t + 1) and V(t) global → registers, O += P(t − 1)·V(t − 1), S(t) = Q·K(t)ᵀ → fs,
  // K(t + 1) and V(t) → buffer (t + 1) % 2 (last read in phase A of tile t − 1), the walk to tile t + 2; barrier 1;
  // phase B: the softmax of tile t (fs → P; P(t − 1) was read in phase A); barrier 2. No barrier between a load and
  // its store. A last trip (t = T) drains P·V(T − 1).
  const pvDeferLoop = () => {
    const soft = softmax("flag_s", "iter + 1u", true);
    const step = (par: number) => `    {
      let kbuf = ${par * BUF}u; // K(t), V(t − 1)
      let nbuf = ${(1 - par) * BUF}u; // K(t + 1), V(t) go in
${stepLoads(NEXT)}
      if (iter > 0u) {
${pv()}
      }
      if (has_cur) {
        ${decl("s", TR, BN16, "CM")}
${qk()}
${storeS("0u", "        ")}
      }
${stepStores("has_next")}
      // the position of tile t + 2
${posDecl(AFTER, NEXT).replace(/^ {2}/gm, "      ")}
      if (has_next) {
${walkStep(NEXT.slice(0, 4), AFTER, "        ", false)}      }
      workgroupBarrier(); // S visible; every subgroup is past P·V(t − 1) (P free) and holds K(t + 1), V(t)
${softmaxCur(soft, "      ")}
      workgroupBarrier(); // P visible
      if (!has_cur) { break; }
${shiftOn([...CUR, "has_cur", ...NEXT], [...NEXT, ...AFTER])}
    }
    iter += 1u;`;
    return `  // ---- pvDefer: the positions of tiles t (blk, kb, tile, col_limit) and t + 1 (n…)
  var has_cur = blk < blk_end;
${posDecl(NEXT, CUR)}
  if (has_cur) {
${walkStep(CUR, NEXT, "    ", false)}  }
  // prologue: K(0) → buffer 0
  if (has_cur) {
${loadKV("tile", "col_limit").k}
${storeK("0u")}
  }
  workgroupBarrier();
${twoStepLoop(step)}`;
  };

  const body = `
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32${E ? "" : ", @builtin(subgroup_id) sgid: u32"}${shuffle ? ", @builtin(subgroup_invocation_id) sg_lane: u32" : ""}) {
  ${mx.entry("tid")}
  let sg = ${E ? "tid / 32u" : "sgid"};
  let NEG_INF = neg_inf();
${expForm === "split" ? `  // exp2_fma's shift constant 1.5·2²³ twice, opaque to the compiler (no length is 0xffffffff)
  let exp_magic = vec2<f32>(select(12582912.0, 0.0, P.Skv == 0xffffffffu), select(12582912.0, 1.0, P.Sq == 0xffffffffu));
` : ""}${x3 ? `  // x3: the power-of-two scales of q, k, v (their max |x| into [2^14, 2^15)) from the max |x| bits that
  // kernels/abs_max.ts left in err[1..3] (err[0] stays the error flag); S and out are scaled back exactly
  let x3_eq = x3_shift(atomicLoad(&err[1]));
  let x3_ek = x3_shift(atomicLoad(&err[2]));
  let x3_ev = x3_shift(atomicLoad(&err[3]));
  let x3_sq = ldexp(1.0, x3_eq);
  let x3_sk = ldexp(1.0, x3_ek);
  let x3_sv = ldexp(1.0, x3_ev);
  let x3_qs = ldexp(ldexp(P.q_scale, -x3_eq), -x3_ek);
  let x3_inv_sv = ldexp(1.0, -x3_ev);
` : ""}${pad ? `  if (P.pad1 == 0xffffffffu) { pad_s[tid % ${pad / 4}u] = tid; flag_s = pad_s[(tid + 1u) % ${pad / 4}u]; } // never runs (pad1 is 0)
` : ""}${workgroupCoords(c.BM)}  let q_base = (b * P.Hq + h) * P.Sq;
  let kv_base = (b * P.Hkv + hk) * P.Skv;
  let trow = b * P.tb_stride_b + h * P.tb_stride_h + qblk;
  // softmax / epilogue ownership: thread tid owns workgroup row r, columns 4·(part + G·q) + {0..3}
  let r = ${shuffle ? `sg * ${R}u + sg_lane / ${G}u` : `tid / ${G}u`};
  let part = ${shuffle ? "sg_lane" : "tid"} % ${G}u;
  let row = row0 + r;
  let srow = r * ${SST}u;
  let prow = ${POFF}u + r * ${PST}u;
${opt ? "" : `  // the second launch of an optimisticMax forward (P.pad1 = 1): only the workgroups its first walk marked in lse
  if (P.pad1 != 0u) {
    if (tid == 0u) { flag_s = select(0u, 1u, bitcast<u32>(lse[split * P.B * P.Hq * P.Sq + q_base + row0]) == ${REDO_MARK}); }
    if (workgroupUniformLoad(&flag_s) == 0u) { return; }
    if (tid == 0u) { flag_s = 0u; }
  }
`}
${c.qSmem ? `  // ---- Q: staged once in its own region (qSmem), read as left matrices every tile
${stageQ(0, c.BM)}` : d.QC >= c.BM ? `  // ---- Q: staged once where the K / V buffers go (zero past the block / sequence and in the padding), kept as left matrices
${stageQ(0, c.BM)}
  workgroupBarrier();
${E ? `  var q_f: array<LM, ${TR * QW16}>;` : ""}
${each([["ti", 0, TR], ["tk", 0, QW16]], (i, k) => `  ${mx.loadTo(Q(i, k), !E, "left", "hs", "row_major", `(sg * ${R}u + 16u * (${i})) * ${QST}u + 16u * (${k})`, `${QST}u`)}`)}` : qChunks()}
  ${decl("o", TR, DV16, "CM")}${x3 ? `
${accDecl()}` : ""}
  var m = NEG_INF;
  var l = 0.0;
  var iter = 0u;
  workgroupBarrier(); // every subgroup holds its Q: the buffers may overwrite the staging

  // ---- the block walk, flattened into one loop over tiles (the next tile may be the next block's first)
${BLOCK_WALK_UNIFORM_COUNTS}  var blk = split * per_split;
  var kb = 0u;
  if (blk < blk_end) {
    if (tid == 0u) { ${uniformWalkKvBlock("blk")} }
    kb = workgroupUniformLoad(&walk_kb);
  }
  var tile = kb * P.KB;
  var col_limit = min(tile + P.KB, P.Skv);
${regDecl()}
${sk ? skewLoop() : pd ? pvDeferLoop() : `  if (blk < blk_end) {
${single ? `${loadKV("tile", "col_limit").k}\n${storeK("0u")}` : `${loadRegs("tile", "col_limit")}\n${storeRegs("0u")}`}
  }
  workgroupBarrier();
${lead ? leadStart() : ""}${c.pingPong ? pingPongLoop() : !opt ? tileLoop(false) : `  // optimisticMax: the walk without the rescale; a row that outgrew its first reference by more than ${OPTIMISTIC_SPAN}
  // marks the workgroup in lse (its first row's word), and the kernel's second launch walks it again with the rescale
${tileLoop(true)}
  let redo = workgroupUniformLoad(&flag_s) == ${REDO};`}`}

${epilogue(opt ? "redo" : undefined)}`;

  return `${mx.directives()}${c.pingPong && !E ? "\ndiagnostic(off, subgroup_uniformity);" : ""}
// FlexAttention forward, tensor family, pipelined staged K / V (${E ? "EMULATED subgroup matrices" : "subgroup matrices"}, f16 operands, f32 accumulate${x3 ? "; f32 inputs as f16 pairs" : ""}).
// Generated by kernels/flex_forward_tensor_pipe.ts.${c.probe?.salt !== undefined ? ` (salt ${c.probe.salt})` : ""}
//
//   D = ${c.D} (padded ${Dp}), Dv = ${c.Dv} (padded ${Dvp})   head dims; padding is zero in workgroup memory
//   BLOCK_M = ${c.BM} = ${c.subgroups} subgroups × ${R} rows; BLOCK_N = ${c.BN}; threads = ${NT}; softmax: G = ${G} thread(s) per row
//   hs (f16)   two buffers at 0 and ${BUF}: K [BN][${KST}], V [BN][${VST}] at +${KSZ} (Q staging [BM][${QST}] at 0 first);
//              ${pT ? `Pᵀ [BN][${PTST}]` : `P [BM][${PST}]`} at ${POFF}
//   fs (f32)   ${sT ? `Sᵀ [BN][${STST}]` : `S [BM][${SST}]`}; also the output accumulators' chunks [BM][${SST}] for rescaling / the epilogue
//   each thread carries ${NKL} + ${NVL} vec4<${ET}> of the next tile's K / V in registers${x3 ? `
//   x3: f32 q / k / v as f16 hi + lo (lo halves of K / V at +${LO}, P lo at +${PLO} after P, Q as [hi | lo]), three products each` : ""}
//   lazy rescale: a row's reference max moves only when the max grows by > ${tau} (log2 units).
//   Fully masked rows: out = 0, lse = −∞. Split-KV: grid z = B · n_splits, as in kernels/flex_forward.ts.

${tensorForwardBindings(`vec4<${ET}>`, OT, `vec4<${ET}>`)}

${mx.prelude()}

var<workgroup> hs: array<f16, ${d.HS}>;
var<workgroup> fs: array<f32, ${d.FS}>;
var<workgroup> flag_s: u32;
${c.pingPong ? "var<workgroup> flag_b: u32;\n" : ""}${G > 1 && !shuffle ? `var<workgroup> red: array<f32, ${NT}>;\n` : ""}${BLOCK_WALK_UNIFORM_DECL}${pad ? `\n// DIAGNOSTIC (probe.smemPad): unused workgroup memory (occupancy probe)\nvar<workgroup> pad_s: array<u32, ${pad / 4}>;` : ""}

fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }${expForm === "split" ? `
${EXP2_FMA_FN}` : ""}${x3 ? `
${X3_SHIFT_FN}` : ""}${opt ? `
fn redo_mark() -> f32 { var bits = ${REDO_MARK}; return bitcast<f32>(bits); }` : ""}
${ERROR_BITS_DECL}

${mx.helpers()}

${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}
${body}`;
}
