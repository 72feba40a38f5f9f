/**
 * dQ from a stored dS' (tensor family, f16 operands, f32 accumulate): dQ = scale · dS'·K over the q block's kv
 * list, a block-sparse subgroup-matrix GEMM. The pipelined dK/dV kernel (kernels/flex_backward_tensor_pipe.ts,
 * `storeDs`) forms dS' in f16 on every tile it visits and stores it, so this kernel recomputes neither S, P nor dP
 * (the fused dQ kernel's two other products, its scalar pass and its two f32 round trips).
 *
 * The scratch holds dS'ᵀ per q head: kv rows, q columns (element (q, kv) at row kv, column q), so the dK/dV
 * kernel's quad pass stores the 4 consecutive q columns of a kv row it just formed as one vec4<f16>, coalesced,
 * with no extra workgroup-memory traffic or barrier. Two layouts (lib/lower/plan_flex_grad_ds.ts plans both):
 *   dense    [q heads of a chunk][Skv][Sq rounded up to 4]
 *   compact  one slot per visited (q block, kv block), [KB kv rows][QB q columns] each; the q block's list
 *            position blk is slot start[q block] + blk after its head's first slot (host tables in `caps`)
 * Blocks are walked full and partial alike (dS' is 0 wherever the mask or the sequence end removed an entry).
 *
 * A workgroup owns BA q rows (subgroups × R, R = 16·TR rows a subgroup) and all D columns: TR × D/16 result
 * matrices per subgroup. Per tile of BB kv rows, the K rows [BB][D] and the dS'ᵀ rows [BB][BA] are staged once
 * per workgroup in padded workgroup memory (rows D + 8 and BA + 8 f16: the conflict-free strides), two slots
 * (ping-pong), the next tile's global loads in registers while this tile computes (one register stage, the order
 * the H200 ran exact in the pipelined backward): one barrier a tile. dS' loads as left matrices (column-major from
 * the transposed slot), K as right matrices; the epilogue goes through `fs`, × scale, row-guarded, into the packed
 * gradient buffer at dq's place. The walk's counts and block indices are read by invocation 0 and broadcast with
 * workgroupUniformLoad (the H200's stale-load cure, kernels/block_walk.ts). Each dQ element is summed by one
 * subgroup in a fixed order: deterministic. `emulate`: the same template with plain-WGSL matrices (CI's lavapipe).
 *
 * Status (H200, 2026-12-01, one call): exact emulated; natively dq wrong (rel. L2 ≈ 1.4, dk / dv right) except D 128
 * with the compact scratch and `qMajor` slots, mechanism unknown — so natively the planner takes it only under a
 * probe override. Timed anyway at B4 H16 S4096 D64 (4 head chunks): this GEMM 1.25 ms a chunk at BA 128 / 4
 * subgroups / BB 32 (110 TF/s), 0.85–0.92 ms with 8 subgroups, 1.64 q-major, 2.36 with 2 subgroups.
 * Session 8: the native GEMM was wrong with the same rel. L2 in every tiling and in every diagnostic variant (one
 * f16 array for both slots, a second barrier, the grid width from a uniform: knobs since removed); `probe: "shiftDs"`
 * with bench/tensor_bwd_probe.ts FLEX_PROBE_MAP then showed dq[q][d] = dq[q][d - 6]: the K matrices read 12 bytes
 * early behind three lone u32 workgroup variables, fixed by the 16-byte walk_s array (exact natively since).
 * Session 12: the global loads bound it (BB 32: 0.786 ms a 16-head chunk, 0.262 without them); BB 16 tiles — half the
 * load registers and workgroup memory a workgroup — run 0.524 and are the default (lib/lower/flex_bwd_tensor_config.ts).
 */
import { reversedQTile } from "./flex_bwd_dq_from_ds.ts";
import { matrixNaming, SubgroupMatrixOps } from "./subgroup_matrix.ts";
import { tensorBwdWriteAcc, walkCountsWgsl } from "./flex_backward_tensor_parts.ts";

export interface DqFromDsTensorConfig {
  /** Head dim (a multiple of 16). */
  readonly D: number;
  /** q rows per workgroup = subgroups · R (R = 16 or 32 or 64). */
  readonly BA: number;
  readonly subgroups: number;
  /** kv rows per tile (a multiple of 16 dividing KB). */
  readonly BB: number;
  readonly emulate: boolean;
  /** The dS' slot staged q-major ([BA][BB + 8], 4 scalar stores per vec4 read) and its left matrices loaded
   * row-major, instead of kv-major ([BB][BA + 8]) with column-major left loads (a device probe's alternative). */
  readonly qMajor?: boolean;
  /** Device diagnostic (wrong dq by design): the staged dS' is the shift permutation dS'(q, kv) = [kv = (q + 1) mod Skv]
   * instead of the scratch, so dq[q] = scale·K[q + 1]; with K built from its row (or column) indices the output names
   * the K element each dq element came from (bench/tensor_bwd_probe.ts FLEX_PROBE_MAP), i.e. the intrinsics' mapping.
   * Timing only (wrong dq): "noLoad" issues no global loads after tile 0's (what the loads cost), "noMma" no products. */
  readonly probe?: "shiftDs" | "noLoad" | "noMma";
  /** Two register sets (the loop two tiles a trip): tile t + 2's loads in flight beside tile t + 1's, so a tile's
   * global latency hides behind two tiles of products instead of one. Measured (session 12, H200) slower than one set
   * at the same BB 16 (noop 0.590 against 0.524 ms a 16-head chunk): a knob, not searched. */
  readonly prefetch2?: boolean;
  /** Dense scratch: f16 elements added to each row's stride (a multiple of 4; device probes of the power-of-two stride). */
  readonly dsPad?: number;
}

/** The storeDs / dQ-from-dS' uniform words after FLEX_BWD_TENSOR_UNIFORMS (both kernels' Params end with them). */
export const DS_TENSOR_UNIFORMS = ["ds_head0", "off_ds_start", "off_ds_slot", "off_ds_head", "ds_base", "ds_pad0", "ds_pad1", "ds_pad2"] as const;
export const DS_TENSOR_PARAMS = "ds_head0: u32, off_ds_start: u32, off_ds_slot: u32, off_ds_head: u32, ds_base: u32, ds_pad0: u32, ds_pad1: u32, ds_pad2: u32,";
/** The dense scratch's row stride (f16 elements: Sq rounded up to 4, whole vec4s a row). */
export const dsTStrideWgsl = (pad = 0) => pad ? `(((P.Sq + 3u) & ~3u) + ${pad}u)` : "((P.Sq + 3u) & ~3u)";
export const dsTRowStride = (Sq: number, pad = 0) => ((Sq + 3) & ~3) + pad;

export function checkDqFromDsTensorConfig(c: DqFromDsTensorConfig): void {
  const bad = (why: string) => { throw new Error(`dQ-from-dS' tensor config ${JSON.stringify(c)}: ${why}`); };
  if (!Number.isInteger(c.D) || c.D % 16 !== 0 || c.D < 16 || c.D > 256) bad("D must be a multiple of 16 in 16..256");
  const R = c.BA / c.subgroups;
  if (!Number.isInteger(R) || ![16, 32, 64].includes(R)) bad("BA / subgroups must be 16, 32 or 64");
  if (c.BB % 16 !== 0 || c.BB < 16) bad("BB must be a positive multiple of 16");
  if (c.prefetch2 && c.probe === "noLoad") bad("probe noLoad is the one-set walk's");
  if (c.dsPad !== undefined && (!Number.isInteger(c.dsPad) || c.dsPad < 0 || c.dsPad % 4 !== 0)) bad("dsPad: a multiple of 4 f16 elements");
}

function layout(c: DqFromDsTensorConfig) {
  const R = c.BA / c.subgroups, NT = c.subgroups * 32;
  const ST = c.D + 8, DST = c.qMajor ? c.BB + 8 : c.BA + 8, SST = 16 + 4;
  return { R, TR: R / 16, NT, ST, DST, SST, KSLOT: c.BB * ST, DSLOT: (c.qMajor ? c.BA : c.BB) * DST };
}

export function dqFromDsTensorThreads(c: DqFromDsTensorConfig): number {
  return c.subgroups * 32;
}

/** Workgroup memory in bytes (+ 64: the compiler aligns each variable). */
export function dqFromDsTensorSmemBytes(c: DqFromDsTensorConfig): number {
  const d = layout(c);
  return 2 * 2 * (d.KSLOT + d.DSLOT) + 4 * c.BA * d.SST + 16 + 64;
}

export function dqFromDsTensorKey(c: DqFromDsTensorConfig): string {
  return `BA${c.BA} SG${c.subgroups} BB${c.BB}${c.qMajor ? " q-major" : ""}${c.dsPad ? ` pad${c.dsPad}` : ""}${c.prefetch2 ? " prefetch2" : ""}${c.probe ? ` DIAGNOSTIC ${c.probe}` : ""}`;
}

/** Bindings: 0 k (f16), 1 caps (block tables ‖ captures ‖ compact slot tables), 2 ds (f16, read), 3 packed
 * gradients (f32, dq at 0), 4 uniform (FLEX_BWD_TENSOR_UNIFORMS ‖ DS_TENSOR_UNIFORMS). */
export function dqFromDsTensorWgsl(c: DqFromDsTensorConfig, opts: { compact: boolean }): string {
  checkDqFromDsTensorConfig(c);
  const E = c.emulate;
  const mx = new SubgroupMatrixOps(E);
  const { lit, each, fr, decl } = matrixNaming(E, " + zero");
  const { R, TR, NT, ST, DST, SST, KSLOT, DSLOT } = layout(c);
  const K1 = c.D / 16, BB16 = c.BB / 16, D4 = c.D / 4, BA4 = c.BA / 4;
  const cp = opts.compact;
  const KR = Math.ceil((c.BB * D4) / NT), DR = Math.ceil((c.BB * BA4) / NT);

  // the tile starting at kv row `kt` of block `sbx` (list position `blkx`) into registers: K rows and dS'ᵀ rows
  // (zero past the block end and past the q block's rows)
  const dsRowBase = (kt: string, sbx: string, blkx: string) => cp
    ? `(ds_first + ${blkx}) * P.QB * P.KB + (${kt} - ${sbx} * P.KB) * P.QB + row0 - ablk * P.QB`
    : `(ds_rows + ${kt}) * ${"ds_stride"} + row0`;
  const regLoad = (kt: string, lim: string, sbx: string, blkx: string, set = "") => [
    ...Array.from({ length: KR }, (_, i) => {
      const total = c.BB * D4;
      return `      {
        let idx = tid + ${i * NT}u;
        let n = idx / ${D4}u;
        rk${set}${i} = vec4<f16>(0.0h);
        if (${(i + 1) * NT > total ? `idx < ${total}u && ` : ""}${kt} + n < ${lim}) { rk${set}${i} = kg[(b_base + ${kt} + n) * ${D4}u + idx % ${D4}u]; }
      }`;
    }),
    ...Array.from({ length: DR }, (_, i) => {
      const total = c.BB * BA4;
      return `      {
        let idx = tid + ${i * NT}u;
        let n = idx / ${BA4}u;
        let i4 = idx % ${BA4}u;
        rd${set}${i} = vec4<f16>(0.0h);
        if (${(i + 1) * NT > total ? `idx < ${total}u && ` : ""}${kt} + n < ${lim} && row0 + 4u * i4 < row_limit) {
          ${c.probe === "shiftDs"
    ? `rd${set}${i} = vec4<f16>(select(vec4<f32>(0.0), vec4<f32>(1.0), (vec4<u32>(1u, 2u, 3u, 4u) + row0 + 4u * i4) % P.Skv == vec4<u32>(${kt} + n))) + ` +
      `dsg[(${dsRowBase(`${kt}`, sbx, blkx)} + n * ${cp ? "P.QB" : "ds_stride"}) / 4u + i4] * 0.0h; // (the binding stays used)`
    : `rd${set}${i} = dsg[(${dsRowBase(`${kt}`, sbx, blkx)} + n * ${cp ? "P.QB" : "ds_stride"}) / 4u + i4];`}
        }
      }`;
    }),
  ].join("\n");
  const put4 = (arr: string, o: string, x: string) => `${arr}[${o}] = ${x}.x; ${arr}[${o} + 1u] = ${x}.y; ${arr}[${o} + 2u] = ${x}.z; ${arr}[${o} + 3u] = ${x}.w;`;
  const regStore = (slot: string, set = "") => [
    ...Array.from({ length: KR }, (_, i) => {
      const total = c.BB * D4;
      const st = `{ let idx = tid + ${i * NT}u; let o = ${slot} * ${KSLOT}u + (idx / ${D4}u) * ${ST}u + 4u * (idx % ${D4}u); ${put4("ks", "o", `rk${set}${i}`)} }`;
      return `      ${(i + 1) * NT > total ? `if (tid + ${i * NT}u < ${total}u) ` : ""}${st}`;
    }),
    ...Array.from({ length: DR }, (_, i) => {
      const total = c.BB * BA4;
      const st = c.qMajor
        ? `{ let idx = tid + ${i * NT}u; let o = ${slot} * ${DSLOT}u + 4u * (idx % ${BA4}u) * ${DST}u + idx / ${BA4}u; ` +
          `dss[o] = rd${set}${i}.x; dss[o + ${DST}u] = rd${set}${i}.y; dss[o + ${2 * DST}u] = rd${set}${i}.z; dss[o + ${3 * DST}u] = rd${set}${i}.w; }`
        : `{ let idx = tid + ${i * NT}u; let o = ${slot} * ${DSLOT}u + (idx / ${BA4}u) * ${DST}u + 4u * (idx % ${BA4}u); ${put4("dss", "o", `rd${set}${i}`)} }`;
      return `      ${(i + 1) * NT > total ? `if (tid + ${i * NT}u < ${total}u) ` : ""}${st}`;
    }),
  ].join("\n");

  // acc += dS'(rows of the subgroup, the tile's kv) · K(tile's kv rows): left matrices column-major from the dS'ᵀ slot
  const products = each([["tk", 0, BB16]], (k) => `      {
${E ? `        var lf: array<LM, ${TR}>;` : ""}
${each([["ti", 0, TR]], (i) => `        ${E ? `lf[${i}]` : `let l${lit(i)}`} = ${c.qMajor
    ? mx.load("left", "dss", "row_major", `slot * ${DSLOT}u + (sg * ${R}u + 16u * (${i})) * ${DST}u + 16u * (${k})`, `${DST}u`)
    : mx.load("left", "dss", "col_major", `slot * ${DSLOT}u + 16u * (${k}) * ${DST}u + sg * ${R}u + 16u * (${i})`, `${DST}u`)};`)}
${each([["tj", 0, K1]], (j) => `        {
          let br = ${mx.load("right", "ks", "row_major", `slot * ${KSLOT}u + 16u * (${k}) * ${ST}u + 16u * (${j})`, `${ST}u`)};
${each([["ti", 0, TR]], (i) => `          ${fr("acc", K1, i, j)} = ${mx.mma(E ? `lf[${i}]` : `l${lit(i)}`, "br", fr("acc", K1, i, j))};`)}
        }`)}
      }`);

  const lookup = (blk: string, into: string) => `
      if (tid == 0u) {
        if (${blk} < n_partial) { walk_s[2] = caps[P.off_idx + trow * P.row_width + ${blk}]; }
        else { walk_s[2] = caps[P.off_full_idx + trow * P.row_width + (${blk} - n_partial)]; }
      }
      ${into} = workgroupUniformLoad(&walk_s[2]);`;
  const tileStart = (sb: string, t: string) => `${sb} * P.KB + (${t} % tpb) * ${c.BB}u`;
  const limitOf = (sb: string) => `min(${sb} * P.KB + P.KB, P.Skv)`;
  const productsOrProbe = c.probe === "noMma" ? "    // DIAGNOSTIC (probe noMma, wrong dq): no products" : products;
  // one register set: tile t + 1's loads at the top of tile t, stored into the other slot after its products
  const walkOneSet = () => `  var sb_cur = 0u;
  if (n_tiles > 0u) {${lookup("0u", "sb_cur")}
${regLoad(tileStart("sb_cur", "0u"), limitOf("sb_cur"), "sb_cur", "0u")}
${regStore("0u")}
  }
  workgroupBarrier(); // slot 0 visible
  for (var t = 0u; t < n_tiles; t++) {
    let slot = t & 1u;
    // tile t + 1's loads now, into the other slot after this tile's products
    var sb_nxt = sb_cur;
    if (t + 1u < n_tiles && (t + 1u) % tpb == 0u) {${lookup("(t + 1u) / tpb", "sb_nxt")}
    }
${c.probe === "noLoad" ? "    // DIAGNOSTIC (probe noLoad, wrong dq): no global loads after tile 0's, the slots get stale registers" : `    if (t + 1u < n_tiles) {
${regLoad(tileStart("sb_nxt", "(t + 1u)"), limitOf("sb_nxt"), "sb_nxt", "((t + 1u) / tpb)")}
    }`}
${productsOrProbe}
    if (t + 1u < n_tiles) {
${regStore("(1u - slot)")}
    }
    workgroupBarrier(); // slot t + 1 visible; every subgroup is past tile t's products (slot t free for tile t + 2)
    sb_cur = sb_nxt;
  }
`;
  // two register sets (prefetch2): sets A and B alternate, tile t + 2's loads in flight while tile t + 1's land; the
  // loop runs two tiles a trip (slot 0, then slot 1); a tile's block is its predecessor's unless it opens a block
  const nextBlock = (tt: string, prev: string, into: string) => `
      ${into} = ${prev};
      if (${tt} < n_tiles && (${tt}) % tpb == 0u) {${lookup(`(${tt}) / tpb`, into)}
      }`;
  const walkTwoSets = () => `  var sb_a = 0u; // block of the tile in set A (tile 0, then t + 2)
  var sb_b = 0u; // block of the tile in set B (t + 1)
  if (n_tiles > 0u) {${lookup("0u", "sb_a")}
${regLoad(tileStart("sb_a", "0u"), limitOf("sb_a"), "sb_a", "0u")}
${regStore("0u")}
  }
${nextBlock("1u", "sb_a", "sb_b")}
  if (n_tiles > 1u) {
${regLoad(tileStart("sb_b", "1u"), limitOf("sb_b"), "sb_b", "(1u / tpb)", "b")}
  }
${nextBlock("2u", "sb_b", "sb_a")}
  if (n_tiles > 2u) {
${regLoad(tileStart("sb_a", "2u"), limitOf("sb_a"), "sb_a", "(2u / tpb)")}
  }
  workgroupBarrier(); // slot 0 visible
  for (var t = 0u; t < n_tiles; t += 2u) {
    {
      // tile t in slot 0; set B holds tile t + 1, set A tile t + 2
      let slot = 0u;
${productsOrProbe}
      if (t + 1u < n_tiles) {
${regStore("1u", "b")}
      }${nextBlock("t + 3u", "sb_a", "sb_b")}
      if (t + 3u < n_tiles) {
${regLoad(tileStart("sb_b", "(t + 3u)"), limitOf("sb_b"), "sb_b", "((t + 3u) / tpb)", "b")}
      }
      workgroupBarrier(); // slot 1 visible; every subgroup is past tile t's products (slot 0 free)
    }
    if (t + 1u < n_tiles) {
      // tile t + 1 in slot 1; set A holds tile t + 2, set B tile t + 3
      let slot = 1u;
${productsOrProbe}
      if (t + 2u < n_tiles) {
${regStore("0u")}
      }${nextBlock("t + 4u", "sb_b", "sb_a")}
      if (t + 4u < n_tiles) {
${regLoad(tileStart("sb_a", "(t + 4u)"), limitOf("sb_a"), "sb_a", "((t + 4u) / tpb)")}
      }
      workgroupBarrier(); // slot 0 visible; every subgroup is past tile t + 1's products (slot 1 free)
    }
  }`;
  // (generated before the module text: the emulation's helpers list what the epilogue uses)
  const epilogue = tensorBwdWriteAcc({ mx, each, fr, BA: c.BA, R, TR, BB16: 1, NT, SST })("acc", K1, c.D, "0u", " * P.scale");

  return `${mx.directives()}
// FlexAttention backward dQ = scale·dS'·K from the dK/dV kernel's stored dS'ᵀ (${cp ? "compact" : "dense"} scratch), tensor family
// (${E ? "EMULATED subgroup matrices" : "subgroup matrices"}, f16 operands, f32 accumulate). Generated by kernels/flex_bwd_dq_from_ds_tensor.ts.
//   D = ${c.D}; BA = ${c.BA} q rows = ${c.subgroups} subgroups × ${R}; BB = ${c.BB} kv rows a tile
//   ks [2][BB][${ST}] K rows, dss ${c.qMajor ? `[2][BA][${DST}] dS' rows` : `[2][BB][${DST}] dS'ᵀ rows`} (f16, padded), fs [BA][${SST}] the epilogue's chunks (f32)
struct Params {
  B: u32, Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, a_tiles: u32,
  row_width: u32, tb_stride_b: u32, tb_stride_h: u32, off_num: u32, off_idx: u32, off_full_num: u32,
  off_full_idx: u32, has_full: u32, scale: f32, off_dk: u32, off_dv: u32, pad0: u32,
  ${DS_TENSOR_PARAMS}
}

@group(0) @binding(0) var<storage, read> kg: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> caps: array<u32>;
@group(0) @binding(2) var<storage, read> dsg: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;

${mx.prelude()}

var<workgroup> ks: array<f16, ${2 * KSLOT}>;
var<workgroup> dss: array<f16, ${2 * DSLOT}>;
var<workgroup> fs: array<f32, ${c.BA * SST}>;
// the walk's words (n_partial, n_full, block index) as ONE 16-byte variable: every workgroup variable of this
// kernel is a multiple of 16 bytes, so the K and dS' arrays start 16-byte aligned in any layout the driver picks
// (three separate u32 were seen, natively, to leave the K matrices read 12 bytes early: dq[q][d] = dq[q][d - 6])
var<workgroup> walk_s: array<u32, 4>;

${mx.helpers()}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32${E ? "" : ", @builtin(subgroup_id) sgid: u32"}) {
  ${mx.entry("tid")}
  let sg = ${E ? "tid / 32u" : "sgid"};
  let zero = P.pad0; // 0 (the host writes 0): an opaque bound for the emulation's loops
  let group = P.Hq / P.Hkv;
  let fq = P.ds_head0 * group + wid.y; // flattened (batch, q head)
  let b = fq / P.Hq;
  let h = fq % P.Hq;
  let hk = h / group;
${reversedQTile(c.BA)}
  let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;
${cp ? "  let ds_first = caps[P.off_ds_head + fq] - P.ds_base + caps[P.off_ds_start + trow]; // the q block's first slot"
    : `  let ds_rows = wid.y * P.Skv; // this head's first kv row in the chunk's scratch
  let ds_stride = ${dsTStrideWgsl(c.dsPad)};`}
  ${decl("acc", TR, K1, "CM")}
${Array.from({ length: KR }, (_, i) => `  var rk${i} = vec4<f16>(0.0h);`).join("\n")}
${Array.from({ length: DR }, (_, i) => `  var rd${i} = vec4<f16>(0.0h);`).join("\n")}${c.prefetch2 ? `
${Array.from({ length: KR }, (_, i) => `  var rkb${i} = vec4<f16>(0.0h);`).join("\n")}
${Array.from({ length: DR }, (_, i) => `  var rdb${i} = vec4<f16>(0.0h);`).join("\n")}` : ""}
${walkCountsWgsl("P.KB", c.BB, "  ", { np: "walk_s[0]", nf: "walk_s[1]" })}${c.prefetch2 ? walkTwoSets() : walkOneSet()}${epilogue}
}
`;
}
