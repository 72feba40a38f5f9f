/**
 * The decode tile: FlexAttention forward for few query rows (Sq ≤ 16) over a long key sequence, bandwidth-bound.
 * `flexDecodeWgsl(config, hooks, outF16)` returns the WGSL module; lib/lower/plan_flex_decode.ts fills the uniforms.
 *
 * One workgroup per (row tile, kv head, batch · split): the query rows of every query head that shares the kv
 * head (GQA: Hq / Hkv heads × Sq rows) are packed into the tile's rows, so each K / V element is read from memory
 * once for all of them. The split walks a contiguous share of the row's kv block list (kernels/block_walk.ts).
 * Threads are "slots" of L lanes: a slot takes KPS keys per step, its L lanes split the head dim, so the lanes of
 * a slot read one key row contiguously (vec4 loads, whole cache lines). Each slot keeps its own online softmax
 * (no barrier in the key loop when subgroups reduce the dot products); the slots merge once at the end.
 * Same hooks, tables, captures, error bits and outputs as kernels/flex_forward.ts.
 */
import { BLOCK_WALK_OPEN } from "./block_walk.ts";
import { ERROR_BITS_DECL, FLUSH_ERRORS } from "./error_bits.ts";
import type { FlexForwardHooks } from "./flex_forward.ts";

export interface FlexDecodeConfig {
  readonly D: number;
  readonly Dv: number;
  /** Storage of q, k, v (math is f32 either way; f16 is unpacked from u32 words, no shader-f16 needed). */
  readonly dtype: "f32" | "f16";
  /** Query rows per workgroup (a power of two ≥ the packed rows, or a share of them). */
  readonly RT: number;
  /** Lanes per key: they split the head dim (power of two). */
  readonly L: number;
  /** Keys per slot per step (unrolled: their loads are all in flight together). */
  readonly KPS: number;
  /** Threads per workgroup. */
  readonly NT: number;
  /** Reductions by subgroup shuffles (needs subgroups of at least `SG` ≥ L invocations, in local index order). */
  readonly subgroups: boolean;
  /** The subgroup size the merge assumes (the adapter's minimum); 1 without subgroups. */
  readonly SG: number;
  readonly identityScore: boolean;
  /**
   * Software pipelining: the next step's K / V loads are issued before this step's math, so a thread's loads stay in
   * flight while it computes (twice the K / V registers). The walk is flattened into steps for it. Off by default:
   * on the H200 (session 6) it ran 3× slower at 8×16×16×4×8192×64 f16 (0.288 vs 0.092 ms: 4 rows' accumulators
   * plus two steps of K / V exceed the registers) and within the timestamp quantum at 1×32×8×1×32768×128 f16.
   */
  readonly prefetch?: boolean;
}

/** Uniform layout, u32 words (q_scale is f32 bits). The block walk reads the fields it shares with the forward. */
export const FLEX_DECODE_UNIFORMS = [
  "Hq", "Hkv", "Sq", "Skv", "KB", "n_kv_blocks", "tb_stride_b", "tb_stride_h",
  "off_kv_num", "off_kv_idx", "off_full_num", "off_full_idx", "has_full", "q_scale", "B", "n_splits",
  "gq", "hp", "n_rtiles", "units",
] as const;

/** vec4s per memory unit: f16 reads 8 halves (a vec4<u32>) when both head dims allow it, else 4 (a vec2<u32>). */
export function unitWidth(c: Pick<FlexDecodeConfig, "dtype" | "D" | "Dv">): 1 | 2 {
  return c.dtype === "f16" && c.D % 8 === 0 && c.Dv % 8 === 0 ? 2 : 1;
}

/**
 * Per-thread sizes: units per row of K (CU) and of V (CUv), 32-bit registers held (q and acc as f32, the step's
 * K and V as loaded: f16 stays packed until each unit is used), and the bytes a thread has in flight per step
 * (averaged over the slot's lanes).
 */
export function flexDecodeShape(c: Pick<FlexDecodeConfig, "dtype" | "D" | "Dv" | "RT" | "L" | "KPS" | "prefetch">) {
  const W = unitWidth(c);
  const NU = c.D / 4 / W, NUv = c.Dv / 4 / W;
  const CU = Math.ceil(NU / c.L), CUv = Math.ceil(NUv / c.L);
  const unitWords = c.dtype === "f16" ? 2 * W : 4;
  const regs = 4 * W * c.RT * (CU + CUv) + (c.prefetch ? 2 : 1) * unitWords * c.KPS * (CU + CUv);
  // the average over the slot's lanes: lanes past the last unit (L > NU) load nothing
  const inflightBytes = 4 * unitWords * c.KPS * (NU + NUv) / c.L;
  return { W, NU, NUv, CU, CUv, regs, inflightBytes };
}

export function flexDecodeSmemBytes(c: Pick<FlexDecodeConfig, "Dv" | "RT" | "L" | "KPS" | "NT" | "subgroups">): number {
  const slots = c.NT / c.L;
  return 4 * (2 * slots * c.RT + c.RT * c.Dv + (c.subgroups ? 0 : c.NT * c.RT * c.KPS));
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export function flexDecodeWgsl(c: FlexDecodeConfig, hooks: FlexForwardHooks, outF16: boolean): string {
  const { W, NU, NUv, CU, CUv } = flexDecodeShape(c);
  const { RT, L, KPS, NT } = c;
  const NSLOT = NT / L;
  const STEP = NSLOT * KPS;
  const DV4 = c.Dv / 4;
  const f16 = c.dtype === "f16";
  const KT = !f16 ? "vec4<f32>" : W === 2 ? "vec4<u32>" : "vec2<u32>";
  // the W vec4<f32> pieces of a unit held in `x`
  const pieces = (x: string): string[] =>
    !f16 ? [x] : W === 1 ? [`unpack4h(${x})`] : [`unpack4h(${x}.xy)`, `unpack4h(${x}.zw)`];
  // the unit guard of lane dl's j-th unit when the units do not fill every lane's last one
  const unitOk = (j: number, n: number) => (L * (j + 1) <= n ? "" : `dl < ${n - L * j}u`);
  const and = (...xs: string[]) => xs.filter(Boolean).join(" && ") || "true";
  // the per-row / per-entry lists
  const R = range(RT), I = range(KPS);
  const rows = (f: (r: number) => string) => R.map(f).join("\n");
  const ents = (f: (r: number, i: number) => string) => R.flatMap((r) => I.map((i) => f(r, i))).join("\n");

  // reduction of the dot products across the L lanes of a slot
  const reduceScores = c.subgroups
    ? range(Math.log2(L)).map((b) => ents((r, i) => `      s${r}_${i} += subgroupShuffleXor(s${r}_${i}, ${1 << b}u);`)).join("\n")
    : L === 1 ? "" : `      workgroupBarrier();
${ents((r, i) => `      red_s[${(r * KPS + i) * NT}u + tid] = s${r}_${i};`)}
      workgroupBarrier();
${ents((r, i) => `      s${r}_${i} = ${lines(L, (x) => `red_s[${(r * KPS + i) * NT}u + slot * ${L}u + ${x}u]`, " + ")};`)}`;

  // acc merge across the slots of one subgroup (butterflies over the slot bits below SG)
  const slotBits: number[] = [];
  if (c.subgroups) for (let m = L; m < c.SG; m *= 2) slotBits.push(m);
  const SGW = c.subgroups ? Math.max(c.SG, L) : L; // threads merged before one round of workgroup-memory adds
  const ROUNDS = NT / SGW;

  // the K / V loads of the step at `tile` (keys below `lim`) into k{i}_* / v{i}_* (registers prefixed `pre`)
  const loads = (pre: string, tile: string, lim: string, declare: boolean) => `${lines(KPS, (i) => `      let ${pre}key${i} = ${tile} + slot + ${NSLOT * i}u;
      let ${pre}in${i} = ${pre}key${i} < ${lim};`)}
      // every K and V load of the step first: they are in flight together
${lines(KPS, (i) => lines(CU, (j) => `      ${declare ? "var " : ""}${pre}k${i}_${j} = ${KT}(0${f16 ? "u" : ".0"});
      if (${and(`${pre}in${i}`, unitOk(j, NU))}) { ${pre}k${i}_${j} = kg[(kv_base + ${pre}key${i}) * ${NU}u + dl + ${L * j}u]; }`))}
${lines(KPS, (i) => lines(CUv, (j) => `      ${declare ? "var " : ""}${pre}v${i}_${j} = ${KT}(0${f16 ? "u" : ".0"});
      if (${and(`${pre}in${i}`, unitOk(j, NUv))}) { ${pre}v${i}_${j} = vg[(kv_base + ${pre}key${i}) * ${NUv}u + dl + ${L * j}u]; }`))}`;
  const kvRegs = (f: (x: string) => string) =>
    [...I.flatMap((i) => range(CU).map((j) => f(`k${i}_${j}`))), ...I.flatMap((i) => range(CUv).map((j) => f(`v${i}_${j}`)))].join("\n");
  // the math of one step on k{i}_* / v{i}_* at `tile`, `col_limit`, `partial`
  const stepMath = `      // partial dot products over the lane's units, then across the slot's lanes
${lines(KPS, (i) => lines(CU, (j) => pieces(`k${i}_${j}`).map((p, w) => `      let kf${i}_${j}_${w} = ${p};`).join("\n")))}
${ents((r, i) => `      var s${r}_${i} = ${range(CU).flatMap((j) => range(W).map((w) => `dot(q${r}_${j}_${w}, kf${i}_${j}_${w})`)).join(" + ")};`)}
${reduceScores}
      // per-entry work (bounds, mask, score mod) in one loop over the entries: a single inlined copy of the mods
      let edge = partial || tile + ${STEP}u > col_limit;
      if (${c.identityScore ? "edge" : "true"}) {
        var sv: array<f32, ${RT * KPS}>;
${ents((r, i) => `        sv[${r * KPS + i}u] = s${r}_${i};`)}
        for (var e = 0u; e < ${RT * KPS}u; e++) {
          let rc = min(rt0 + e / ${KPS}u, P.units - 1u);
          let key = tile + slot + ${NSLOT}u * (e % ${KPS}u);
          sv[e] = entry(sv[e], edge, key < col_limit, partial, i32(b), i32(h_wg + rc / P.Sq), i32(rc % P.Sq), i32(key));
        }
${ents((r, i) => `        s${r}_${i} = sv[${r * KPS + i}u];`)}
      }
      // online softmax per row (base 2), the slot's own state
${lines(KPS, (i) => lines(CUv, (j) => pieces(`v${i}_${j}`).map((p, w) => `      let vf${i}_${j}_${w} = ${p};`).join("\n")))}
${rows((r) => `      {
        let m_new = max(m${r}, ${KPS === 1 ? `s${r}_0` : I.map((i) => `s${r}_${i}`).reduce((a, x) => `max(${a}, ${x})`)});
        let m_ref = select(m_new, 0.0, m_new == NEG_INF);
        let alpha = select(exp2(m${r} - m_ref), 0.0, m${r} == NEG_INF);
        m${r} = m_new;
${lines(KPS, (i) => `        let p${i} = select(exp2(s${r}_${i} - m_ref), 0.0, s${r}_${i} == NEG_INF);`)}
        l${r} = l${r} * alpha + ${I.map((i) => `p${i}`).join(" + ")};
${lines(CUv, (j) => lines(W, (w) => `        a${r}_${j}_${w} = a${r}_${j}_${w} * alpha + ${I.map((i) => `p${i} * vf${i}_${j}_${w}`).join(" + ")};`))}
      }`)}`;
  // prefetch: the split's blocks × steps a block as one loop; step st + 1's loads are issued before step st's math
  const prefetchWalk = `  let n_partial = u32(tables[P.off_kv_num + trow]);
  var n_full = 0u;
  if (P.has_full != 0u) { n_full = u32(tables[P.off_full_num + trow]); }
  let n_blocks = n_partial + n_full;
  let per_split = (n_blocks + P.n_splits - 1u) / P.n_splits;
  let blk0 = split * per_split;
  let blk_end = min(n_blocks, blk0 + per_split);
  let spb = (P.KB + ${STEP - 1}u) / ${STEP}u;
  let n_steps = select(0u, (blk_end - blk0) * spb, blk_end > blk0);
${kvRegs((x) => `  var ${x} = ${KT}(0${f16 ? "u" : ".0"});`)}
  if (n_steps > 0u) {
    let c0 = step_at(trow, blk0, n_partial, 0u, spb);
${loads("", "c0.y", "c0.z", false)}
  }
  for (var st = 0u; st < n_steps; st++) {
    let sc = step_at(trow, blk0, n_partial, st, spb);
    let tile = sc.y;
    let col_limit = sc.z;
    let partial = sc.w != 0u;
${kvRegs((x) => `    var n${x} = ${KT}(0${f16 ? "u" : ".0"});`)}
    if (st + 1u < n_steps) {
      let c1 = step_at(trow, blk0, n_partial, st + 1u, spb);
${loads("n", "c1.y", "c1.z", false)}
    }
${stepMath}
${kvRegs((x) => `    ${x} = n${x};`)}
  }`;

  return /* wgsl */ `${c.subgroups ? "enable subgroups;\n" : ""}
// FlexAttention decode tile (${c.dtype} storage, f32 math). Generated by kernels/flex_decode.ts.
//
// Glossary
//   rows        the tile's query rows: unit row u = g · Sq + qi is query row qi of query head hk · gq + hg · hp + g
//               (hp = heads packed per unit: gq = Hq / Hkv, or 1 when the BlockMask differs per head); rows past
//               the unit count repeat its last row (valid indices for the mods) and are not written
//   RT = ${RT}      rows per workgroup; grid x = (gq / hp) · n_rtiles, y = Hkv, z = B · n_splits
//   L = ${L}       lanes per key (split the head dim: lane dl holds units dl + L·j), NSLOT = ${NSLOT} slots
//   KPS = ${KPS}     keys per slot per step: keys tile + slot + NSLOT·i, a step covers ${STEP} keys
//   unit        ${!f16 ? "a vec4<f32>" : W === 2 ? "8 halves (vec4<u32>)" : "4 halves (vec2<u32>)"}: NU = ${NU} units per K row, NUv = ${NUv} per V row
//   q{r}_*      the thread's q units of row r (× q_scale), a{r}_* its accumulators, m{r} / l{r} its slot's
//               running max (base 2) and sum; k{i}_* / v{i}_* the step's K / V units (all loads issued first)
//   merge       slots combine by log-sum-exp at the end: row max over slots (ms), scaled sums (ls),
//               accumulators ${c.subgroups ? `by shuffles within ${c.SG}-lane subgroups, then ` : ""}${ROUNDS} rounds of adds into acc_s
//   outputs     n_splits = 1: out / lse directly; else f32 slices [split][rows][Dv] merged by kernels/flex_combine.ts
//   Masked entries are −∞; fully masked rows: out = 0, lse = −∞.

struct Params {
  Hq: u32, Hkv: u32, Sq: u32, Skv: u32, KB: u32, n_kv_blocks: u32, tb_stride_b: u32, tb_stride_h: u32,
  off_kv_num: u32, off_kv_idx: u32, off_full_num: u32, off_full_idx: u32, has_full: u32, q_scale: f32, B: u32, n_splits: u32,
  gq: u32, hp: u32, n_rtiles: u32, units: u32,
}

@group(0) @binding(0) var<storage, read> qg: array<${KT}>;
@group(0) @binding(1) var<storage, read> kg: array<${KT}>;
@group(0) @binding(2) var<storage, read> vg: array<${KT}>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
@group(0) @binding(4) var<storage, read> caps: array<u32>;
@group(0) @binding(5) var<storage, read_write> err: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> out: array<${outF16 ? "vec2<u32>" : "vec4<f32>"}>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<uniform> P: Params;

const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

var<workgroup> ms: array<f32, ${NSLOT * RT}>;       // [slot][row] slot maxima
var<workgroup> ls: array<f32, ${NSLOT * RT}>;       // [slot][row] slot sums, rescaled to the row max
var<workgroup> acc_s: array<vec4<f32>, ${RT * DV4}>; // [row][Dv / 4] merged accumulators
${c.subgroups || L === 1 ? "" : `var<workgroup> red_s: array<f32, ${NT * RT * KPS}>; // [entry][thread] dot partials`}

fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }
${f16 ? "fn unpack4h(x: vec2<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(x.x), unpack2x16float(x.y)); }" : ""}
${ERROR_BITS_DECL}
${c.prefetch ? `
// step st of the split's walk (blocks blk0 … as steps of ${STEP} keys, spb a block): (kb, tile, col_limit, partial)
fn step_at(trow: u32, blk0: u32, n_partial: u32, st: u32, spb: u32) -> vec4<u32> {
  let blk = blk0 + st / spb;
  let partial = blk < n_partial;
  var kb: u32;
  if (partial) { kb = u32(tables[P.off_kv_idx + trow * P.n_kv_blocks + blk]); }
  else { kb = u32(tables[P.off_full_idx + trow * P.n_kv_blocks + (blk - n_partial)]); }
  return vec4<u32>(kb, kb * P.KB + (st % spb) * ${STEP}u, min(kb * P.KB + P.KB, P.Skv), select(0u, 1u, partial));
}
` : ""}
${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}

// one score entry: on edge steps bounds and (partial blocks) the mask, then the score mod; base-2 units
fn entry(s: f32, edge: bool, ok: bool, partial: bool, b: i32, h: i32, qi: i32, kv: i32) -> f32 {
  if (edge && (!ok || (partial && !mask_mod(b, h, qi, kv)))) { return neg_inf(); }
  return ${c.identityScore ? "s" : "score_mod(s, b, h, qi, kv) * LOG2E"};
}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let NEG_INF = neg_inf();
  let b = wid.z / P.n_splits;
  let split = wid.z % P.n_splits;
  let hk = wid.y;
  let hg = wid.x / P.n_rtiles;
  let rt0 = (wid.x % P.n_rtiles) * ${RT}u;
  let h_wg = hk * P.gq + hg * P.hp;
  let slot = tid / ${L}u;
  let dl = tid % ${L}u;
  let trow = b * P.tb_stride_b + h_wg * P.tb_stride_h;
  let kv_base = (b * P.Hkv + hk) * P.Skv;
  let rows_total = P.B * P.Hq * P.Sq;

  // the tile's rows (clamped to the last unit row), their heads and q rows
${rows((r) => `  let rc${r} = min(rt0 + ${r}u, P.units - 1u);
  let h${r} = h_wg + rc${r} / P.Sq;
  let qi${r} = rc${r} % P.Sq;
  let qrow${r} = (b * P.Hq + h${r}) * P.Sq + qi${r};`)}

  // q units in registers, scaled once
${rows((r) => lines(CU, (j) => {
    const ok = unitOk(j, NU);
    const ps = pieces(`x`);
    return `  var q${r}_${j}_0: vec4<f32>;${W === 2 ? ` var q${r}_${j}_1: vec4<f32>;` : ""}
  {
    var x = ${KT}(0${f16 ? "u" : ".0"});
    ${ok ? `if (${ok}) { ` : ""}x = qg[qrow${r} * ${NU}u + dl + ${L * j}u];${ok ? " }" : ""}
${ps.map((p, w) => `    q${r}_${j}_${w} = ${p} * P.q_scale;`).join("\n")}
  }`;
  }))}

${rows((r) => `  var m${r} = NEG_INF;
  var l${r} = 0.0;
${lines(CUv, (j) => lines(W, (w) => `  var a${r}_${j}_${w} = vec4<f32>(0.0);`))}`)}

${c.prefetch ? prefetchWalk : `${BLOCK_WALK_OPEN}    for (var tile = kb * P.KB; tile < col_limit; tile += ${STEP}u) {
${loads("", "tile", "col_limit", true)}
${stepMath}
    }
  }`}

  // ---- merge the slots: row max, rescale to it, sum l and the accumulators
${rows((r) => `  if (dl == 0u) { ms[slot * ${RT}u + ${r}u] = m${r}; }`)}
  workgroupBarrier();
${rows((r) => `  {
    var mx = NEG_INF;
    for (var s = 0u; s < ${NSLOT}u; s++) { mx = max(mx, ms[s * ${RT}u + ${r}u]); }
    let w = select(exp2(m${r} - mx), 0.0, m${r} == NEG_INF);
    l${r} *= w;
${lines(CUv, (j) => lines(W, (w) => `    a${r}_${j}_${w} *= w;`))}
    if (dl == 0u) { ls[slot * ${RT}u + ${r}u] = l${r}; }
  }`)}
${slotBits.map((m) => rows((r) => lines(CUv, (j) => lines(W, (w) => `  a${r}_${j}_${w} += subgroupShuffleXor(a${r}_${j}_${w}, ${m}u);`)))).join("\n")}
  for (var rd = 0u; rd < ${ROUNDS}u; rd++) {
    if (tid / ${SGW}u == rd && tid % ${SGW}u < ${L}u) {
${rows((r) => lines(CUv, (j) => lines(W, (w) => {
    const ok = unitOk(j, NUv);
    const at = `acc_s[${r * DV4}u + (dl + ${L * j}u) * ${W}u + ${w}u]`;
    return `      ${ok ? `if (${ok}) { ` : ""}if (rd == 0u) { ${at} = a${r}_${j}_${w}; } else { ${at} += a${r}_${j}_${w}; }${ok ? " }" : ""}`;
  })))}
    }
    workgroupBarrier();
  }

  // ---- epilogue: normalize and write the valid rows (out, lse) once
  for (var idx = tid; idx < ${RT * DV4}u; idx += ${NT}u) {
    let r = idx / ${DV4}u;
    let d4 = idx % ${DV4}u;
    let rg = rt0 + r;
    if (rg < P.units) {
      var mx = NEG_INF;
      for (var s = 0u; s < ${NSLOT}u; s++) { mx = max(mx, ms[s * ${RT}u + r]); }
      var lt = 0.0;
      for (var s = 0u; s < ${NSLOT}u; s++) { lt += ls[s * ${RT}u + r]; }
      let empty = lt == 0.0;
      let o = select(acc_s[idx] / lt, vec4<f32>(0.0), empty);
      let row = (b * P.Hq + h_wg + rg / P.Sq) * P.Sq + rg % P.Sq;
      let slice_row = split * rows_total + row;
      out[slice_row * ${DV4}u + d4] = ${outF16 ? "vec2<u32>(pack2x16float(o.xy), pack2x16float(o.zw))" : "o"};
      if (d4 == 0u) { lse[slice_row] = select((mx + log2(lt)) * LN2, NEG_INF, empty); }
    }
  }
  ${FLUSH_ERRORS}
}
`;
}
