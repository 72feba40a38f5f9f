/**
 * The portable forward's wide register tile (`wide` configs of kernels/flex_forward.ts, session 9): its own template
 * beside the narrow one, with the same config type, uniforms, bindings, block walk, hooks and flags.
 */
import { BLOCK_WALK_OPEN } from "./block_walk.ts";
import { FLUSH_ERRORS } from "./error_bits.ts";
import type { FlexForwardConfig, FlexForwardHooks } from "./flex_forward.ts";
import { unroll } from "./unroll.ts";
import { PORTABLE_FORWARD_DECLS, portableForwardCoords, portableForwardFns } from "./flex_forward_decls.ts";

/** Why a wide config cannot be generated, or undefined when it can (the config search and the template check it). */
export function flexForwardWideProblem(c: Pick<FlexForwardConfig, "D" | "Dv" | "BM" | "BN" | "TM" | "G" | "DK" | "NV" | "unroll">): string | undefined {
  const G4 = 4 * c.G;
  if (c.TM !== 4 && c.TM !== 8) return `TM ${c.TM}: the wide tile takes 4 or 8 rows a thread`;
  if (c.BM % c.TM !== 0) return `BLOCK_M ${c.BM} is not a multiple of TM ${c.TM}`;
  if (c.BN % G4 !== 0 || c.Dv % G4 !== 0) return `BLOCK_N ${c.BN} and Dv ${c.Dv} must be multiples of 4·G = ${G4}`;
  if (c.D % c.DK !== 0 || c.DK % 4 !== 0) return `DK ${c.DK} must be a multiple of 4 dividing D ${c.D}`;
  const u = c.unroll ?? 1;
  if (!Number.isInteger(Math.log2(u)) || u > 16) return `unroll ${u} must be a power of 2 up to 16`;
  if (c.DK % Math.min(u, c.DK) !== 0 || c.NV % Math.min(u, c.NV) !== 0) return `unroll ${u} must divide DK ${c.DK} and NV ${c.NV}`;
  if (c.BN % c.NV !== 0 || c.NV % 4 !== 0 || (c.NV % G4 !== 0 && G4 % c.NV !== 0)) return `NV ${c.NV} must divide BLOCK_N ${c.BN} and divide or be a multiple of 4·G = ${G4}`;
  return undefined;
}

/**
 * The wide register tile of the portable forward: each thread owns TM = 4 or 8 query rows (vec4 halves h, rows
 * 4h..4h+3 of its row group) by BLOCK_N / G score columns and Dv / G output columns, so per head-dim step TM / 4 Q
 * reads and CN / 4 K reads feed TM · CN FMAs (the narrow template: 1 + CN / 4 reads for 4 · CN). The tile's
 * probabilities go through workgroup memory one V chunk at a time (p_s holds NV columns, not BLOCK_N), which is
 * what lets BLOCK_M 128 fit 48 KiB. Same uniforms, bindings, block walk, hooks and flags as `flexForwardWgsl`.
 */
export function flexForwardWideWgsl(c: FlexForwardConfig, hooks: FlexForwardHooks): string {
  const why = flexForwardWideProblem(c);
  if (why) throw new Error(`flexForwardWideWgsl: ${why}`);
  const RH = c.TM / 4; // vec4 halves of a thread's rows
  const RG = c.BM / c.TM;
  const NT = RG * c.G;
  const CN = c.BN / c.G;
  const CV = c.Dv / c.G;
  const BM4 = c.BM / 4;
  const G4 = 4 * c.G;
  const qResident = c.DK === c.D;
  // head-dim / key steps written out per loop iteration (the loop stays; the compiler sees U independent steps)
  const U = Math.min(c.unroll ?? 1, c.DK), UV = Math.min(c.unroll ?? 1, c.NV);
  const colOf = (j: number) => `${G4 * Math.floor(j / 4) + (j % 4)}u + 4u * c`;
  const comp = (j: number) => "xyzw"[j % 4];
  const halves = (f: (h: number) => string, sep = "\n") => unroll(RH, f, sep);
  // every (score or accumulator column j, half h) pair
  const grid = (n: number, f: (j: number, h: number) => string, sep = "\n") => unroll(n, (j) => halves((h) => f(j, h), sep), sep);
  const KV_VEC4 = Math.max(c.DK * c.BN, c.NV * c.Dv) / 4;
  const LK = Math.ceil((c.BN * c.DK) / 4 / NT);
  const LV = Math.ceil((c.NV * c.Dv) / 4 / NT);
  const guard = (total: number, u: number, stmt: string) => ((u + 1) * NT <= total ? stmt : `if (tid + ${u * NT}u < ${total}u) { ${stmt} }`);
  const loadK = (d0: string) => unroll(LK, (u) => `        {
          let idx = tid + ${u * NT}u;
          let col = tile + idx % ${c.BN}u;
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
      for (var t = 0u; t < 4u; t++) { q_s[(4u * d4 + t) * ${BM4}u + r / 4u][r % 4u] = x[t]; }
    }`;
  const rowOf = (h: number) => `row0 + rg * ${c.TM}u + ${4 * h}u + i`;
  const edgeEntry = (j: number, h: number) => `
        {
          let col = tile + ${colOf(j)};
          for (var i = 0u; i < 4u; i++) {
            let row = ${rowOf(h)};
            var x = NEG_INF;
            if (row < row_limit && col < col_limit) {
              let qi = i32(row);
              let ki = i32(col);
              if (!partial || mask_mod(i32(b), i32(h), qi, ki)) {
                ${c.identityScore ? `x = s${j}_${h}[i];` : `x = score_mod(s${j}_${h}[i], i32(b), i32(h), qi, ki) * LOG2E;`}
              }
            }
            s${j}_${h}[i] = x;
          }
        }`;
  const scoreEntry = (j: number, h: number) => `
        {
          let ki = i32(tile + ${colOf(j)});
          for (var i = 0u; i < 4u; i++) {
            let qi = i32(${rowOf(h)});
            s${j}_${h}[i] = score_mod(s${j}_${h}[i], i32(b), i32(h), qi, ki) * LOG2E;
          }
        }`;
  // combine `v`_h across the G lanes of the row group, every half at once
  const rowReduce = (v: string, op: "max" | "add") => {
    const f = (a: string, b: string) => (op === "max" ? `max(${a}, ${b})` : `${a} + ${b}`);
    if (c.G === 1) return "";
    if (c.subgroups) {
      const steps: string[] = [];
      for (let mask = 1; mask < c.G; mask *= 2) steps.push(halves((h) => `      ${v}_${h} = ${f(`${v}_${h}`, `subgroupShuffleXor(${v}_${h}, ${mask}u)`)};`));
      return steps.join("\n");
    }
    return `${halves((h) => `      red[(rg * ${c.G}u + c) * ${RH}u + ${h}u] = ${v}_${h};`)}
      workgroupBarrier();
${halves((h) => `      ${v}_${h} = red[rg * ${c.G * RH}u + ${h}u];
      for (var g = 1u; g < ${c.G}u; g++) { ${v}_${h} = ${f(`${v}_${h}`, `red[(rg * ${c.G}u + g) * ${RH}u + ${h}u]`)}; }`)}`;
  };
  const dropOf = (h: number, col: string) => `vec4<f32>(${unroll(4, (i) => `drop_factor(rk${4 * h + i}, ${col})`, ", ")})`;
  // the probabilities of V chunk k into p_s: the score columns of lane c that fall in [k·NV, (k + 1)·NV)
  const storeP = (k: number) => {
    const lines: string[] = [];
    for (let j4 = 0; j4 < CN / 4; j4++) {
      const lo = G4 * j4, hi = lo + G4; // the columns of j4 across the lanes
      if (hi <= k * c.NV || lo >= (k + 1) * c.NV) continue;
      const body = unroll(4, (t) => halves((h) => {
        const j = 4 * j4 + t;
        return `          p_s[(${colOf(j)} - ${k * c.NV}u) * ${BM4}u + rg * ${RH}u + ${h}u] = s${j}_${h}${c.dropout ? ` * ${dropOf(h, `tile + ${colOf(j)}`)}` : ""};`;
      }));
      // NV < 4·G: only the lanes whose columns lie in this chunk
      lines.push(c.NV >= G4 ? body : `        if (c / ${c.NV / 4}u == ${(k * c.NV - lo) / c.NV}u) {\n${body}\n        }`);
    }
    return lines.join("\n");
  };
  // the register tile's rank-1 updates over `count` rows of a staged pair, `step` of them written out per iteration:
  // acc<j>_<h> += (the thread's TM rows of leftArr[i], as vec4 halves) × (its columns of kv_s[i]) — Q·Kᵀ over the
  // head dim (q_s × Kᵀ) and P·V over a chunk's keys (p_s × V)
  const outerSteps = (o: { loop: string; at: string; count: number; step: number; left: string; leftArr: string; right: string; rightRow: number; cols: number; acc: string }) => `        for (var ${o.loop} = 0u; ${o.loop} < ${o.count}u; ${o.loop} += ${o.step}u) {
${unroll(o.step, (u) => `          {
            let ${o.at} = ${o.loop} + ${u}u;
${halves((h) => `            let ${o.left}${h} = ${o.leftArr}[${o.at} * ${BM4}u + rg * ${RH}u + ${h}u];`)}
${unroll(o.cols / 4, (j4) => `            let ${o.right}${j4} = kv_s[${o.at} * ${o.rightRow}u + c + ${c.G * j4}u];`)}
${grid(o.cols, (j, h) => `            ${o.acc}${j}_${h} += ${o.left}${h} * ${o.right}${Math.floor(j / 4)}.${comp(j)};`)}
          }`)}
        }`;
  const chunks = c.BN / c.NV;
  const pvChunk = (k: number) => `        // ---- V chunk ${k}: key rows ${k * c.NV}..${(k + 1) * c.NV - 1} of the tile
        workgroupBarrier();
${unroll(LV, (u) => `        ${guard(c.NV * (c.Dv / 4), u, `kv_s[tid + ${u * NT}u] = vp${u};`)}`)}
${storeP(k)}
        workgroupBarrier();
${k + 1 < chunks ? loadV(`${(k + 1) * c.NV}u`) : ""}
${outerSteps({ loop: "n0i", at: "n", count: c.NV, step: UV, left: "pv", leftArr: "p_s", right: "v", rightRow: c.Dv / 4, cols: CV, acc: "a" })}`;

  return /* wgsl */ `${c.subgroups ? "enable subgroups;\n" : ""}
// FlexAttention forward, portable family (f32), wide register tile. Generated by kernels/flex_forward.ts.
//
// Glossary (the rest as in the narrow template's header)
//   D = ${c.D}, Dv = ${c.Dv}; BLOCK_M = ${c.BM}, BLOCK_N = ${c.BN}; threads = ${NT} = (BLOCK_M / TM) · G
//   TM = ${c.TM}          rows per thread as ${RH} vec4 half(s): half h holds rows rg·TM + 4h + {0..3}
//   G = ${c.G}           lanes per row group; lane c owns score / output columns 4c + 4G·j + {0..3}
//   s<j>_<h>        score column j of half h (unrolled registers); a<j>_<h> output column j of half h
//   DK = ${c.DK}          D chunk staged per step for Q·Kᵀ${qResident ? " (= D: Q stays resident)" : " (Q re-staged per chunk)"}
//   NV = ${c.NV}          key rows per P·V chunk: V and that chunk's probabilities (p_s: [NV][BLOCK_M]) are staged together
//   unroll = ${U} / ${UV}     head-dim / key steps written out per inner-loop iteration
//   subgroups = ${!!c.subgroups}  prescaleQk = ${!!c.prescaleQk}  rowsSafe = ${!!c.rowsSafe}  dropout = ${!!c.dropout}  aux = ${!!c.aux}

${PORTABLE_FORWARD_DECLS}

const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

var<workgroup> q_s: array<vec4<f32>, ${(c.DK * c.BM) / 4}>;   // [DK][BLOCK_M / 4] Q chunk
var<workgroup> kv_s: array<vec4<f32>, ${KV_VEC4}>;   // Q·Kᵀ: [DK][BLOCK_N / 4] Kᵀ chunk; P·V: [NV][Dv / 4] V chunk
var<workgroup> p_s: array<vec4<f32>, ${(c.NV * c.BM) / 4}>;   // [NV][BLOCK_M / 4] probabilities of the V chunk
${c.subgroups ? "" : `var<workgroup> red: array<vec4<f32>, ${RG * c.G * RH}>;   // [RG][G][halves] row max / sum partials`}

${portableForwardFns(c, hooks)}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let NEG_INF = neg_inf();
${portableForwardCoords(c)}

${halves((h) => `  var m_${h} = vec4<f32>(NEG_INF);
  var l_${h} = vec4<f32>(0.0);`)}
${grid(CV, (j, h) => `  var a${j}_${h} = vec4<f32>(0.0);`)}
${unroll(LK, (u) => `  var kp${u}: vec4<f32>;`)}
${unroll(LV, (u) => `  var vp${u}: vec4<f32>;`)}
${qResident ? loadQ("0u") : ""}

${BLOCK_WALK_OPEN}    for (var tile = kb * P.KB; tile < col_limit; tile += ${c.BN}u) {
      // ---- S = (Q · scale) Kᵀ over D in chunks of DK
${grid(CN, (j, h) => `      var s${j}_${h} = vec4<f32>(0.0);`)}
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
${outerSteps({ loop: "d0i", at: "d", count: c.DK, step: U, left: "q", leftArr: "q_s", right: "k", rightRow: c.BN / 4, cols: CN, acc: "s" })}
      }
${c.prescaleQk ? "" : grid(CN, (j, h) => `      s${j}_${h} *= P.q_scale;`)}
      // the first V chunk's loads fly while the softmax runs
${loadV("0u")}
      let edge = partial || rows_short || tile + ${c.BN}u > col_limit;
      if (edge) {${grid(CN, edgeEntry, "")}
      }${c.identityScore ? "" : ` else {${grid(CN, scoreEntry, "")}
      }`}
${halves((h) => `      var mx_${h} = vec4<f32>(NEG_INF);`)}
${grid(CN, (j, h) => `      mx_${h} = max(mx_${h}, s${j}_${h});`)}
${rowReduce("mx", "max")}
${halves((h) => `      let m_new_${h} = max(m_${h}, mx_${h});
      let m_ref_${h} = select(m_new_${h}, vec4<f32>(0.0), m_new_${h} == vec4<f32>(NEG_INF));
      let alpha_${h} = ${c.rowsSafe ? `exp2(m_${h} - m_ref_${h});` : `select(exp2(m_${h} - m_ref_${h}), vec4<f32>(0.0), m_${h} == vec4<f32>(NEG_INF));`}
      m_${h} = m_new_${h};
      l_${h} *= alpha_${h};`)}
${grid(CV, (j, h) => `      a${j}_${h} *= alpha_${h};`)}
${grid(CN, (j, h) => `      s${j}_${h} = select(exp2(s${j}_${h} - m_ref_${h}), vec4<f32>(0.0), s${j}_${h} == vec4<f32>(NEG_INF));
      l_${h} += s${j}_${h};`)}
      // ---- acc += P · V, chunk by chunk (generated unrolled: which score registers feed a chunk is static)
      {
${unroll(chunks, pvChunk)}
      }
    }
  }

  // ---- epilogue: total row sum across the group, normalize, write out and lse once
${halves((h) => `  var l_tot_${h} = l_${h};`)}
${c.subgroups ? "" : "  workgroupBarrier();"}
${rowReduce("l_tot", "add")}
${halves((h) => c.rowsSafe ? `  let inv_${h} = vec4<f32>(1.0) / l_tot_${h};
  let lse_v_${h} = (m_${h} + log2(l_tot_${h})) * LN2;` : `  let empty_${h} = l_tot_${h} == vec4<f32>(0.0);
  let inv_${h} = select(vec4<f32>(1.0) / l_tot_${h}, vec4<f32>(0.0), empty_${h});
  let lse_v_${h} = select((m_${h} + log2(l_tot_${h})) * LN2, vec4<f32>(NEG_INF), empty_${h});`)}
${grid(CV, (j, h) => `  a${j}_${h} *= inv_${h};`)}
  let rows_total = P.B * P.Hq * P.Sq;
${halves((h) => `  for (var i = 0u; i < 4u; i++) {
    let row = ${rowOf(h)};
    if (row < row_limit) {
      let o = (split * rows_total + q_base + row) * ${c.Dv / 4}u;
${unroll(CV / 4, (j4) => `      out[o + c + ${c.G * j4}u] = vec4<f32>(${unroll(4, (t) => `a${4 * j4 + t}_${h}[i]`, ", ")});`)}
      if (c == 0u) {
        lse[split * rows_total + q_base + row] = lse_v_${h}[i];${c.aux ? `
        lse[(P.n_splits + split) * rows_total + q_base + row] = m_${h}[i] * LN2;` : ""}
      }
    }
  }`)}
  ${FLUSH_ERRORS}
}
`;
}
