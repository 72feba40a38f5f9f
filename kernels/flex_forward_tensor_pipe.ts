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
 * "none") 2.50 ms noop; 32 rows a subgroup (128/32/4) 6.04; BN 64 (64/64/4, kvSingle) 7.85.
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
 * Retired in session 16, all exact but slower on the H200 (bench/RESULTS.md; ms noop against the default's):
 * pingPong (two subgroup halves a phase apart) 5.68 vs 3.74 (session 7); kvLead (the loads a whole tile ahead) 3.41 vs
 * 1.84 and qSmem (Q read from workgroup memory every tile) 3.93 vs 1.85 (session 11); skew (one barrier a tile) 3.33–5.9
 * vs 1.82 (session 15: on that driver a barrier waits for the warp's loads in flight); pvDefer (P·V a tile late) 2.70
 * and kvLate (the loads after barrier 1) 2.66 vs 1.84 (session 16); kvEarly (V(t+1), K(t+2) loaded right after barrier
 * 2, so P·V and Q·Kᵀ hide them) 2.84 vs 1.82 at the same registers (R114–R118: loads in flight during P·V cost more
 * than the barrier wait they hid; session 16, never landed). Smaller workgroups with the default's knobs lose
 * too (64/16/4 2.83, 32/16/2 6.86): staging each K / V tile once for 128 rows is what this path's speed rests on.
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
    const POFF = c.kvSingle ? BUF : 2 * BUF;
    const QC = Math.min(c.BM, Math.max(R, Math.floor((POFF + PSZ) / QST / R) * R));
    const HS = Math.max(POFF + PSZ, QC * QST);
    return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS, FS: c.BN * STST, QC };
  }
  // Q is staged where the buffers go (before the first tile); kvSingle: one buffer, and the staging may run over
  // into P (written only after the first tile's barrier, long after every subgroup holds its Q)
  const POFF = c.kvSingle ? BUF : Math.max(2 * BUF, c.BM * QST);
  const HS = c.kvSingle ? Math.max(POFF + PSZ, c.BM * QST) : POFF + PSZ;
  const FS = Math.max(c.BM * SST, c.sTransposed ? c.BN * STST : 0);
  return { R, TR: R / 16, G, NT, Dp, Dvp, KST, VST, QST, PST, SST, STST, PTST, KSZ, LO, PLO, BUF, POFF, HS, FS, QC: c.BM };
}

/** Throws when a pipelined config cannot be generated (called by checkFlexTensorConfig for kvPipe configs). */
export function checkPipeConfig(c: PipeConfig, bad: (why: string) => void): void {
  if (c.kvDirect || c.kTransposed || c.prefetchV || c.kAhead || c.stageKT || c.stageVT || c.vOwnSmem || c.qOwnSmem) {
    bad("kvPipe stages K / V itself: no kvDirect, kTransposed, prefetchV, kAhead, stageKT, stageVT, vOwnSmem, qOwnSmem");
  }
  if (c.compactSmem && !c.sTransposed) bad("compactSmem needs sTransposed");
  if (c.x3 && (!c.kvSingle || !c.compactSmem)) bad("x3: with kvSingle and compactSmem");
  const p = c.probe ?? {};
  if (Object.keys(p).some((k) => k !== "salt" && k !== "softmax" && k !== "smemPad") || p.softmax === "copy") bad("kvPipe takes only the probe knobs salt, smemPad and softmax \"none\"");
  if (p.smemPad !== undefined && (!Number.isInteger(p.smemPad) || p.smemPad < 4 || p.smemPad % 4 !== 0)) bad("probe.smemPad: a positive multiple of 4 bytes");
}

/** Workgroup memory in bytes. */
export function pipeSmemBytes(c: PipeConfig): number {
  const d = layout(c);
  const shuffle = !!c.shuffleReduce && !c.emulate;
  // + 4 flag, + 12 the uniform walk's words, + 64 per-variable alignment slack (as the direct path)
  return 2 * d.HS + 4 * d.FS + (d.G > 1 && !shuffle ? 4 * d.NT : 0) + 4 + 12 + 64 + (c.probe?.smemPad ?? 0);
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
  const sAt = (col: string) => sT ? `fs[(${col}) * ${STST}u + r]` : `fs[srow + ${col}]`;
  const pAt = (col: string) => pT ? `${POFF}u + (${col}) * ${PTST}u + r` : `prow + ${col}`;
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
  const single = !!c.kvSingle;

  // kvSingle: the one buffer's offset as a literal, so every K / V matrix offset is a constant expression — Tint's
  // robustness predicates a subgroup-matrix load (an if and a function-scope copy) unless its array length, offset and
  // stride are all constants (core/ir/transform/robustness.cc); with a `let kbuf` the offsets are not
  const kb = single ? "0u" : "kbuf";
  // ---- S = Q Kᵀ (Kᵀ as right matrices: col_major from K [BN][KST]); O += P V (P [BM][PST], V [BN][VST], row_major)
  const qk = () => each([["tj", 0, BN16], ["tk", 0, DK16]], (j, k) => `        {
          ${mx.loadTo("kr", true, "right", "hs", "col_major", `${kb} + 16u * (${j}) * ${KST}u + 16u * (${k})`, `${KST}u`)}
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, k), "kr", S(i, j))};`)}${x3 ? `
          // x3: + Q lo · K hi + Q hi · K lo
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, plus(k, DK16)), "kr", S(i, j))};`)}
          ${mx.loadTo("krl", true, "right", "hs", "col_major", `${kb} + ${LO}u + 16u * (${j}) * ${KST}u + 16u * (${k})`, `${KST}u`)}
${each([["ti", 0, TR]], (i) => `          ${S(i, j)} = ${mx.mma(Q(i, k), "krl", S(i, j))};`)}` : ""}
        }`);
  // P's left matrix of row tile i (`lo`: x3's P lo, PLO after P hi)
  const pName = (i: string, lo = false) => E ? `${lo ? "pfl" : "pf"}[${i}]` : `${lo ? "pl" : "p"}${lit(i)}`;
  const pLoad = (i: string, k: string, lo = false) => {
    const base = lo ? POFF + PLO : POFF;
    return pT
      ? mx.loadTo(pName(i, lo), !E, "left", "hs", "col_major", `${base}u + 16u * (${k}) * ${PTST}u + sg * ${R}u + 16u * (${i})`, `${PTST}u`)
      : mx.loadTo(pName(i, lo), !E, "left", "hs", "row_major", `${base}u + (sg * ${R}u + 16u * (${i})) * ${PST}u + 16u * (${k})`, `${PST}u`);
  };
  const pv = () => each([["tk", 0, BN16]], (k) => `        {
${E ? `var pf: array<LM, ${TR}>;${x3 ? ` var pfl: array<LM, ${TR}>;` : ""}` : ""}
${each([["ti", 0, TR]], (i) => `          ${pLoad(i, k)}${x3 ? `\n          ${pLoad(i, k, true)}` : ""}`)}
${each([["tj", 0, DV16]], (j) => `          {
            ${mx.loadTo("vr", true, "right", "hs", "row_major", `${kb} + ${KSZ}u + 16u * (${k}) * ${VST}u + 16u * (${j})`, `${VST}u`)}
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i), "vr", O(i, j))};`)}${x3 ? `
            // x3: + P lo · V hi + P hi · V lo
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i, true), "vr", O(i, j))};`)}
            ${mx.loadTo("vrl", true, "right", "hs", "row_major", `${kb} + ${LO + KSZ}u + 16u * (${k}) * ${VST}u + 16u * (${j})`, `${VST}u`)}
${each([["ti", 0, TR]], (i) => `            ${O(i, j)} = ${mx.mma(pName(i), "vrl", O(i, j))};`)}` : ""}
          }`)}
        }`);

  const { rowReduce, modEntry, rescale, epilogue, accDecl, flushIf } = tensorForwardParts({
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
  const softmax = (optimistic: boolean) => noSoftmax ? `      // DIAGNOSTIC (probe.softmax "none"): no scalar pass; P·V reads whatever P holds
      l += ${sAt("part")};
` : `      let edge = partial || rows_short || !full_tile;
${lines(NC4, (q) => `      var x${q} = vec4<f32>(${[0, 1, 2, 3].map((t) => sAt(`${4 * G * q + t}u + 4u * part`)).join(", ")}) * ${x3 ? "x3_qs" : "P.q_scale"};`)}
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
        flag_s = ${REDO};
      }` : `else if (m_new > m + ${tau.toFixed(1)}) {
        alpha = exp2(m - m_new);
        m = m_new;
        flag_s = iter + 1u;
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
        ${pT ? `let o = ${pAt(`${4 * G * q}u + 4u * part`)}; hs[o] = ph.x; hs[o + ${PTST}u] = ph.y; hs[o + ${2 * PTST}u] = ph.z; hs[o + ${3 * PTST}u] = ph.w;`
    : `let o = ${pAt(`${4 * G * q}u + 4u * part`)}; ${put4("o", "ph")}`}${x3 ? `
        // x3: P lo (P ≤ 2^${OPTIMISTIC_SPAN}, unscaled)
        let pl = vec4<f16>(p - ph32);
        ${pT ? `let ol = o + ${PLO}u; hs[ol] = pl.x; hs[ol + ${PTST}u] = pl.y; hs[ol + ${2 * PTST}u] = pl.z; hs[ol + ${3 * PTST}u] = pl.w;`
    : `let ol = o + ${PLO}u; ${put4("ol", "pl")}`}` : ""}
      }`)}
      ${expF16 ? "let lsf = vec4<f32>(lsum);\n      l = l * alpha + (lsf.x + lsf.y) + (lsf.z + lsf.w);" : "l = l * alpha + (lsum.x + lsum.y) + (lsum.z + lsum.w);"}
`;
  // the next tile's position (nblk, nkb, ntile, ncol_limit, has_next): the next BN keys of the block, else the first of
  // the next block, its index through workgroupUniformLoad
  const nextTile = () => `    var nblk = blk;
    var nkb = kb;
    var ntile = tile + ${c.BN}u;
    if (ntile >= col_limit) {
      nblk = blk + 1u;
      if (nblk < blk_end) {
        if (tid == 0u) { ${uniformWalkKvBlock("nblk")} }
        nkb = workgroupUniformLoad(&walk_kb);
      }
      ntile = nkb * P.KB;
    }
    let ncol_limit = min(nkb * P.KB + P.KB, P.Skv);
    let has_next = nblk < blk_end;
`;
  // rows [q0, q0 + n) of the Q block → hs from offset 0 (zero past the block / sequence and in the head-dim padding)
  // x3: a row of the staging is [hi | lo] (QW = 2·Dp columns), both halves from the same f32 load
  const QW4 = (x3 ? 2 * Dp : Dp) / 4;
  const stageQ = (q0: number, n: number) => `  for (var idx = tid; idx < ${n * QW4}u; idx += ${NT}u) {
    let rr = ${q0 ? `${q0}u + ` : ""}idx / ${QW4}u;
    ${x3 ? `let c4 = idx % ${QW4}u;
    let d4 = c4 % ${Dp / 4}u;` : `let d4 = idx % ${QW4}u;`}
    var x = ${zero4};
    if (row0 + rr < row_limit${c.D === Dp ? "" : ` && d4 < ${c.D / 4}u`}) { x = qg[(q_base + row0 + rr) * ${c.D / 4}u + d4]; }
    let o = ${q0 ? `(idx / ${QW4}u)` : "rr"} * ${QST}u + 4u * ${x3 ? "c4" : "d4"};
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
  const tileLoop = (optimistic: boolean) => `  loop {
    if (blk >= blk_end) { break; }
    // the buffers' f16 offsets from the tile count: multiples of ${BUF} the compiler can see (aligned vector stores)
${single ? `    // kvSingle: one buffer at 0 (K of the next tile and V of this one go in after barrier 1)
` : `    let kbuf = (iter & 1u) * ${BUF}u;
    let nbuf = (~iter & 1u) * ${BUF}u;
`}    let partial = blk < n_partial;
    let full_tile = tile + ${c.BN}u <= col_limit;
    // the next tile: the next ${c.BN} keys of this block, else the first of the next block
${nextTile()}    if (has_next) {
${single ? loadKV("ntile", "ncol_limit").k : loadRegs("ntile", "ncol_limit")}
    }
${single ? `${loadKV("tile", "col_limit").v}\n` : ""}    ${decl("s", TR, BN16, "CM")}
${qk()}
${each([["ti", 0, TR], ["tj", 0, BN16]], (i, j) => `    ${sT
    ? mx.store("fs", `16u * (${j}) * ${STST}u + sg * ${R}u + 16u * (${i})`, S(i, j), `${STST}u`, "col_major")
    : mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j})`, S(i, j), `${SST}u`)}`)}
    workgroupBarrier(); // S visible; every subgroup is past the previous tile's P · V
    var alpha = 1.0;
${softmax(optimistic)}${single ? `${storeV("0u")}\n` : ""}    if (has_next) {
${single ? storeK("0u") : storeRegs("nbuf")}
    }
${optimistic ? `    workgroupBarrier(); // P and the next tile visible (no rescale in the first walk)${x3 ? `
${flushIf("")}` : ""}` : `    // P and the next tile visible; did any row of the workgroup move its reference max?
${rescale()}`}
${pv()}
    blk = nblk;
    kb = nkb;
    tile = ntile;
    col_limit = ncol_limit;
    iter += 1u;
  }`;
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
${d.QC >= c.BM ? `  // ---- Q: staged once where the K / V buffers go (zero past the block / sequence and in the padding), kept as left matrices
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
  if (blk < blk_end) {
${single ? `${loadKV("tile", "col_limit").k}\n${storeK("0u")}` : `${loadRegs("tile", "col_limit")}\n${storeRegs("0u")}`}
  }
  workgroupBarrier();
${!opt ? tileLoop(false) : `  // optimisticMax: the walk without the rescale; a row that outgrew its first reference by more than ${OPTIMISTIC_SPAN}
  // marks the workgroup in lse (its first row's word), and the kernel's second launch walks it again with the rescale
${tileLoop(true)}
  let redo = workgroupUniformLoad(&flag_s) == ${REDO};`}

${epilogue(opt ? "redo" : undefined)}`;

  return `${mx.directives()}
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
${G > 1 && !shuffle ? `var<workgroup> red: array<f32, ${NT}>;\n` : ""}${BLOCK_WALK_UNIFORM_DECL}${pad ? `\n// DIAGNOSTIC (probe.smemPad): unused workgroup memory (occupancy probe)\nvar<workgroup> pad_s: array<u32, ${pad / 4}>;` : ""}

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
