/**
 * The fused FlexAttention forward kernel, portable family (f32 scalar FMA, any WebGPU adapter).
 * `flexForwardWgsl(config, hooks)` returns the WGSL module; lib/lower/plan_flex.ts fills config and uniforms.
 * `wide` configs take the wide register tile's template (kernels/flex_forward_wide.ts).
 */
import { BLOCK_WALK_OPEN } from "./block_walk.ts";
import { FLUSH_ERRORS } from "./error_bits.ts";
import { unroll } from "./unroll.ts";
import { PORTABLE_FORWARD_DECLS, portableForwardCoords, portableForwardFns } from "./flex_forward_decls.ts";
import { flexForwardWideWgsl } from "./flex_forward_wide.ts";

/** Compile-time shape of one kernel (lengths, batch and head counts are uniforms, never baked in). */
export interface FlexForwardConfig {
  /** "portable" here; a later "tensor" family (subgroup matrices) gets its own template beside this one. */
  readonly family: "portable";
  readonly D: number;
  readonly Dv: number;
  readonly BM: number;
  readonly BN: number;
  /** Rows per thread; 8 only with `wide`. */
  readonly TM: 1 | 2 | 4 | 8;
  readonly G: number;
  readonly DK: number;
  readonly NV: number;
  /** The score mod is the identity: fold log2(e) into Q and skip the hook. */
  readonly identityScore: boolean;
  /** Row max / sum across the G lanes of a row group with subgroup shuffles instead of workgroup memory
   * (needs the `subgroups` feature and subgroups of at least G invocations, numbered in local index order). */
  readonly subgroups?: boolean;
  /** kernelOptions.prescaleQk: q_scale multiplies Q once at load (else each score after Q·Kᵀ, PyTorch's default). */
  readonly prescaleQk?: boolean;
  /** kernelOptions.rowsGuaranteedSafe: skip the fully-masked-row checks (the caller promises none; never with split-KV). */
  readonly rowsSafe?: boolean;
  /** Dropout on P before ·V (uniforms drop_seed / drop_threshold / drop_scale; kernels/dropout_hash.ts). */
  readonly dropout?: boolean;
  /** returnAux: also write each row's max score (natural units) into the lse binding's second half, [n_splits][rows] after the lse slices. */
  readonly aux?: boolean;
  /** The wide register tile (flexForwardWideWgsl): TM 4 or 8 rows a thread as vec4 halves, the probabilities staged
   * per V chunk (NV × BLOCK_M words of workgroup memory instead of BLOCK_N × BLOCK_M), so larger tiles fit. */
  readonly wide?: boolean;
  /** Wide only: head-dim (Q·Kᵀ) and key (P·V) steps written out per inner-loop iteration; a power of 2, default 1. */
  readonly unroll?: number;
}

/** The generated mod code spliced in (see lib/lower/wgsl_expr.ts). */
export interface FlexForwardHooks {
  readonly preamble: string;
  readonly scoreMod: string;
  readonly maskMod: string;
}

/** Uniform layout, u32 words (q_scale is f32 bits), then DROPOUT_UNIFORMS. Keep in sync with `struct Params` below. */
export const FLEX_FORWARD_UNIFORMS = [
  "Hq", "Hkv", "Sq", "Skv", "QB", "KB", "m_tiles", "n_kv_blocks",
  "nq_blocks", "tb_stride_b", "tb_stride_h", "off_kv_num", "off_kv_idx", "off_full_num", "off_full_idx", "has_full",
  "q_scale", "B", "n_splits", "pad1",
] as const;

/** Workgroup memory of a config, in bytes (what the config search checks against the device limit).
 * K (Q·Kᵀ phase) and V (P·V phase) share one staging buffer: the phases are separated by barriers. */
export function flexForwardSmemBytes(c: Omit<FlexForwardConfig, "family" | "identityScore" | "prescaleQk" | "rowsSafe" | "dropout" | "aux">): number {
  if (c.wide) return 4 * (c.DK * c.BM + Math.max(c.DK * c.BN, c.NV * c.Dv) + c.NV * c.BM + (c.subgroups ? 0 : c.BM * c.G));
  const floats = c.DK * c.BM + Math.max(c.DK * c.BN, c.NV * c.Dv) + c.BN * c.BM + (c.subgroups ? 0 : c.BM * c.G);
  return floats * 4;
}

export function flexForwardThreads(c: Pick<FlexForwardConfig, "BM" | "TM" | "G">): number {
  return (c.BM / c.TM) * c.G;
}

/** The dropout factors of the TM rows of a row group at key column `col` (a scalar or a row vector). */
function dropFactors(TM: number, col: string): string {
  const f = Array.from({ length: TM }, (_, i) => `drop_factor(rk${i}, ${col})`);
  return TM === 1 ? f[0] : `vec${TM}<f32>(${f.join(", ")})`;
}

export function flexForwardWgsl(c: FlexForwardConfig, hooks: FlexForwardHooks): string {
  if (c.wide) return flexForwardWideWgsl(c, hooks);
  const RG = c.BM / c.TM; // row groups
  const NT = RG * c.G; // threads
  const CN = c.BN / c.G; // score columns per thread
  const CV = c.Dv / c.G; // output columns per thread
  const RV = c.TM === 1 ? "f32" : `vec${c.TM}<f32>`;
  // component i of a row vector (TM = 1: the scalar itself)
  const at = (e: string, i: string) => (c.TM === 1 ? e : `${e}[${i}]`);
  const qResident = c.DK === c.D;
  // thread lane c owns the columns 4c + 4G·(j / 4) + j % 4 of the tile (score j) and of the output (acc j)
  const colOf = (j: number) => `${4 * c.G * Math.floor(j / 4) + (j % 4)}u + 4u * c`;
  const comp = (j: number) => "xyzw"[j % 4];
  const KV_VEC4 = Math.max(c.DK * c.BN, c.NV * c.Dv) / 4;

  // K and V go through registers one chunk ahead: the next chunk's global loads are issued before the
  // current chunk's FMAs (kp*, vp*: LK / LV vec4 per thread), so their latency hides behind the math
  const LK = Math.ceil((c.BN * c.DK) / 4 / NT);
  const LV = Math.ceil((c.NV * c.Dv) / 4 / NT);
  // `stmt`, under "this thread has item u" when the items do not fill every thread's last slot
  const guard = (total: number, u: number, stmt: string) => ((u + 1) * NT <= total ? stmt : `if (tid + ${u * NT}u < ${total}u) { ${stmt} }`);
  const loadK = (d0: string) => unroll(LK, (u) => `        {
          let idx = tid + ${u * NT}u;
          let col = tile + idx % ${c.BN}u; // key fastest across lanes: the transposing stores hit distinct banks
          kp${u} = vec4<f32>(0.0);
          if (${(u + 1) * NT <= c.BN * (c.DK / 4) ? "" : `idx < ${c.BN * (c.DK / 4)}u && `}col < col_limit) { kp${u} = kg[(kv_base + col) * ${c.D / 4}u + (${d0}) / 4u + idx / ${c.BN}u]; }
        }`);
  const loadV = (n0: string) => unroll(LV, (u) => `        {
          let idx = tid + ${u * NT}u;
          let col = tile + (${n0}) + idx / ${c.Dv / 4}u;
          vp${u} = vec4<f32>(0.0);
          if (${(u + 1) * NT <= c.NV * (c.Dv / 4) ? "" : `idx < ${c.NV * (c.Dv / 4)}u && `}col < col_limit) { vp${u} = vg[(kv_base + col) * ${c.Dv / 4}u + idx % ${c.Dv / 4}u]; }
        }`);

  const loadQ = (d0: string) => `
    for (var idx = tid; idx < ${c.BM * (c.DK / 4)}u; idx += ${NT}u) {
      let r = idx % ${c.BM}u; // row fastest across lanes: the transposing stores hit distinct banks
      let d4 = idx / ${c.BM}u;
      let row = row0 + r;
      var x = vec4<f32>(0.0);
      if (row < row_limit) { x = qg[(q_base + row) * ${c.D / 4}u + ${d0} / 4u + d4]${c.prescaleQk ? " * P.q_scale" : ""}; }
      for (var t = 0u; t < 4u; t++) { ${at(`q_s[(4u * d4 + t) * ${RG}u + r / ${c.TM}u]`, `r % ${c.TM}u`)} = x[t]; }
    }`;

  // one score entry (row component i of s_j) through bounds, mask and score mod
  const edgeEntry = (j: number) => `
        {
          let col = tile + ${colOf(j)};
          for (var i = 0u; i < ${c.TM}u; i++) {
            let row = row0 + rg * ${c.TM}u + i;
            var x = NEG_INF;
            if (row < row_limit && col < col_limit) {
              let qi = i32(row);
              let ki = i32(col);
              if (!partial || mask_mod(i32(b), i32(h), qi, ki)) {
                ${c.identityScore ? `x = ${at(`s${j}`, "i")};` : `x = score_mod(${at(`s${j}`, "i")}, i32(b), i32(h), qi, ki) * LOG2E;`}
              }
            }
            ${at(`s${j}`, "i")} = x;
          }
        }`;
  const scoreEntry = (j: number) => `
        {
          let ki = i32(tile + ${colOf(j)});
          for (var i = 0u; i < ${c.TM}u; i++) {
            let qi = i32(row0 + rg * ${c.TM}u + i);
            ${at(`s${j}`, "i")} = score_mod(${at(`s${j}`, "i")}, i32(b), i32(h), qi, ki) * LOG2E;
          }
        }`;

  // combine `v` across the G lanes of the row group (in place): subgroup butterflies or workgroup memory
  const rowReduce = (v: string, op: "max" | "add") => {
    const f = (a: string, b: string) => (op === "max" ? `max(${a}, ${b})` : `${a} + ${b}`);
    if (c.G === 1) return "";
    if (c.subgroups) {
      const steps: string[] = [];
      for (let mask = 1; mask < c.G; mask *= 2) steps.push(`      ${v} = ${f(v, `subgroupShuffleXor(${v}, ${mask}u)`)};`);
      return steps.join("\n");
    }
    return `      red[rg * ${c.G}u + c] = ${v};
      workgroupBarrier();
      ${v} = red[rg * ${c.G}u];
      for (var g = 1u; g < ${c.G}u; g++) { ${v} = ${f(v, `red[rg * ${c.G}u + g]`)}; }`;
  };

  return /* wgsl */ `${c.subgroups ? "enable subgroups;\n" : ""}
// FlexAttention forward, portable family (f32). Generated by kernels/flex_forward.ts.
//
// Glossary
//   B, Hq, Hkv      batch, query heads, key/value heads (uniforms); kv head = h / (Hq / Hkv) (GQA)
//   Sq, Skv         query / key lengths (uniforms): every row and column is bounds-checked against them
//   QB, KB          the BlockMask's q / kv block sizes (uniforms); tables give per q block the kv blocks
//                   to visit: first the partial ones (mask_mod applied), then the full ones (mask_mod skipped)
//   D = ${c.D}, Dv = ${c.Dv}    head dims of q/k and of v (compile time)
//   BLOCK_M = ${c.BM}     query rows per workgroup; a workgroup never straddles a mask q block
//                   (m_tiles = ceil(QB / BLOCK_M) workgroups per q block, the last one may be short)
//   BLOCK_N = ${c.BN}     key columns per tile; a kv block is walked in ceil(KB / BLOCK_N) tiles
//   TM = ${c.TM}          rows per thread (a row vector RV = ${RV}): each K / V value read from workgroup
//                   memory feeds TM FMAs
//   G = ${c.G}           threads sharing a row group; thread lane c owns the score columns and the output
//                   columns 4c + 4G·j + {0..3} (vec4 reads, few distinct addresses per warp: broadcast)
//   RG = ${RG}          row groups (BLOCK_M / TM); threads = RG · G = ${NT}
//   DK = ${c.DK}          the D chunk staged per step for Q·Kᵀ${qResident ? " (= D: Q stays resident for the whole workgroup)" : ""}
//   NV = ${c.NV}          key rows of V staged per step for P·V (K and V share the staging buffer kv_s)
//   s0..s${CN - 1}, a0..a${CV - 1}  the thread's scores and output accumulators (unrolled: registers, never local memory)
//   kp0.., vp0..    K / V staging through registers one chunk ahead (loads of chunk i+1 fly during the FMAs
//                   of chunk i; the first V chunk's during the softmax); stores transpose K with the key index
//                   fastest across lanes (no bank conflicts)
//   edge            a tile that needs per-entry work: a partial block (mask_mod), or rows / columns past the
//                   block or the sequence; interior tiles of full blocks skip it (and the score mod when identity)
//   subgroups = ${!!c.subgroups}  row max / sum across the G lanes by subgroup shuffles (else through \`red\`)
//   q_scale         scale (× log2 e when the score mod is the identity), ${c.prescaleQk ? "folded into Q once (prescaleQk)" : "multiplying each score after Q·Kᵀ"}
//   dropout = ${!!c.dropout}  P·z before ·V, z = 0 or 1/(1 − p) from a hash of (seed, b, h, q, kv) (rk*: the rows' keys)
//   aux = ${!!c.aux}      lse[n_splits·rows + split·rows + row] = the row's max score (m·ln 2, natural units)
//   rowsSafe = ${!!c.rowsSafe} the caller promised no fully masked row: the empty-row checks are skipped
//   Softmax is online in base 2: m (running max, base-2 units), l (running sum), acc (unnormalized out),
//   all f32. Masked entries are −∞; a row whose max is still −∞ uses 0 as reference so exp2 gives 0, not NaN.
//   Fully masked rows: out = 0, lse = −∞. A score mod returning −∞ masks like the mask does.
//   n_splits        split-KV (uniform, 1 = off): grid z = B · n_splits; split s walks the s-th share of its
//                   row's kv block list and writes (out, lse) of that share to slice s of out / lse

${PORTABLE_FORWARD_DECLS}

alias RV = ${RV};
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

var<workgroup> q_s: array<RV, ${c.DK * RG}>;          // [DK][RG] Q chunk, TM rows per element
var<workgroup> kv_s: array<vec4<f32>, ${KV_VEC4}>;   // Q·Kᵀ: [DK][BLOCK_N / 4] Kᵀ chunk; P·V: [NV][Dv / 4] V chunk
var<workgroup> p_s: array<RV, ${c.BN * RG}>;          // [BLOCK_N][RG] probabilities of the tile
${c.subgroups ? "" : `var<workgroup> red: array<RV, ${RG * c.G}>;           // [RG][G] row max / sum partials`}

${portableForwardFns(c, hooks)}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let NEG_INF = neg_inf();
  // split-KV (decoding): wid.z = b · n_splits + split; each split walks its share of the row's kv blocks and
  // writes (out, lse) of that share to its own slice; kernels/flex_combine.ts merges the slices
${portableForwardCoords(c)}

  var m = RV(NEG_INF);
  var l = RV(0.0);
${unroll(CV, (j) => `  var a${j} = RV(0.0);`)}
${unroll(LK, (u) => `  var kp${u}: vec4<f32>;`)}
${unroll(LV, (u) => `  var vp${u}: vec4<f32>;`)}
${qResident ? loadQ("0u") : ""}

${BLOCK_WALK_OPEN}    for (var tile = kb * P.KB; tile < col_limit; tile += ${c.BN}u) {
      // ---- S = (Q · scale) Kᵀ over D in chunks of DK
${unroll(CN, (j) => `      var s${j} = RV(0.0);`)}
${loadK("0u")}
      for (var d0 = 0u; d0 < ${c.D}u; d0 += ${c.DK}u) {
        workgroupBarrier();
${qResident ? "" : loadQ("d0")}
${unroll(LK, (u) => `        {
          let idx = tid + ${u * NT}u;
          let n = idx % ${c.BN}u;
          let d4 = idx / ${c.BN}u;
          ${guard(c.BN * (c.DK / 4), u, `for (var t = 0u; t < 4u; t++) { kv_s[(4u * d4 + t) * ${c.BN / 4}u + n / 4u][n % 4u] = kp${u}[t]; }`)}
        }`)}
        workgroupBarrier();
        if (d0 + ${c.DK}u < ${c.D}u) {
${loadK("d0 + " + c.DK + "u")}
        }
        for (var d = 0u; d < ${c.DK}u; d++) {
          let qv = q_s[d * ${RG}u + rg];
${unroll(CN / 4, (j4) => `          let k${j4} = kv_s[d * ${c.BN / 4}u + c + ${c.G * j4}u];`)}
${unroll(CN, (j) => `          s${j} += qv * k${Math.floor(j / 4)}.${comp(j)};`)}
        }
      }
${c.prescaleQk ? "" : unroll(CN, (j) => `      s${j} *= P.q_scale;`)}
      // the first V chunk's loads fly while the softmax runs
${loadV("0u")}
      // ---- mods and bounds on edge tiles only, then the tile's row max
      let edge = partial || rows_short || tile + ${c.BN}u > col_limit;
      if (edge) {${unroll(CN, edgeEntry, "")}
      }${c.identityScore ? "" : ` else {${unroll(CN, scoreEntry, "")}
      }`}
      var mx = RV(NEG_INF);
${unroll(CN, (j) => `      mx = max(mx, s${j});`)}
${rowReduce("mx", "max")}
      let m_new = max(m, mx);
      let m_ref = select(m_new, RV(0.0), m_new == RV(NEG_INF));
      // select, not exp2(−∞): some exp2 implementations clamp their input and return a denormal there
      let alpha = ${c.rowsSafe ? "exp2(m - m_ref); // m = −∞ only before the row's first key: l, acc are 0 then" : "select(exp2(m - m_ref), RV(0.0), m == RV(NEG_INF));"}
      m = m_new;
      l *= alpha;
${unroll(CV, (j) => `      a${j} *= alpha;`)}
${unroll(CN, (j) => `      {
        let p = select(exp2(s${j} - m_ref), RV(0.0), s${j} == RV(NEG_INF));
        l += p;
        p_s[(${colOf(j)}) * ${RG}u + rg] = p${c.dropout ? ` * ${dropFactors(c.TM, `tile + ${colOf(j)}`)}` : ""};
      }`)}
      // ---- acc += P · V over the tile in chunks of NV rows
      for (var n0 = 0u; n0 < ${c.BN}u; n0 += ${c.NV}u) {
        workgroupBarrier();
${unroll(LV, (u) => `        ${guard(c.NV * (c.Dv / 4), u, `kv_s[tid + ${u * NT}u] = vp${u};`)}`)}
        workgroupBarrier();
        if (n0 + ${c.NV}u < ${c.BN}u) {
${loadV(`n0 + ${c.NV}u`)}
        }
        for (var n = 0u; n < ${c.NV}u; n++) {
          let pv = p_s[(n0 + n) * ${RG}u + rg];
${unroll(CV / 4, (j4) => `          let v${j4} = kv_s[n * ${c.Dv / 4}u + c + ${c.G * j4}u];`)}
${unroll(CV, (j) => `          a${j} += pv * v${Math.floor(j / 4)}.${comp(j)};`)}
        }
      }
    }
  }

  // ---- epilogue: total row sum across the group, normalize, write out and lse once
  var l_tot = l;
${c.subgroups ? "" : "  workgroupBarrier();"}
${rowReduce("l_tot", "add")}
${c.rowsSafe ? `  let inv = RV(1.0) / l_tot;
  let lse_v = (m + log2(l_tot)) * LN2;` : `  let empty = l_tot == RV(0.0);
  let inv = select(RV(1.0) / l_tot, RV(0.0), empty);
  let lse_v = select((m + log2(l_tot)) * LN2, RV(NEG_INF), empty);`}
${unroll(CV, (j) => `  a${j} *= inv;`)}
  for (var i = 0u; i < ${c.TM}u; i++) {
    let row = row0 + rg * ${c.TM}u + i;
    if (row < row_limit) {
      let rows_total = P.B * P.Hq * P.Sq;
      let o = (split * rows_total + q_base + row) * ${c.Dv / 4}u;
${unroll(CV / 4, (j4) => `      out[o + c + ${c.G * j4}u] = vec4<f32>(${unroll(4, (t) => at(`a${4 * j4 + t}`, "i"), ", ")});`)}
      if (c == 0u) {
        lse[split * rows_total + q_base + row] = ${at("lse_v", "i")};${c.aux ? `
        lse[(P.n_splits + split) * rows_total + q_base + row] = ${at("m", "i")} * LN2;` : ""}
      }
    }
  }
  ${FLUSH_ERRORS}
}
`;
}
