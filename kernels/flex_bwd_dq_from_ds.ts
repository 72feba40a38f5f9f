/**
 * dQ from a stored dS' (portable family, f32): dQ = scale · dS'·K over the q block's kv list, a plain
 * block-sparse product. The dK/dV kernel (kernels/flex_backward.ts, `writeDs`) already forms dS' = P∘(dP − Δ)
 * · ∂score_mod/∂score for every (q tile, kv tile) it visits and stores it in the `ds` scratch laid out
 * [q heads of a chunk][Sq][Skv rounded up to 4]; this kernel reads only the tiles its q block's kv tables list (the same pairs
 * the dK/dV kernel's q-major tables visit), so no P, dP or softmax statistic is recomputed.
 *
 * A register-tiled GEMM: a workgroup owns BA query rows of one flattened q head (head0·group + wid.y over
 * (batch, q head)) and all D output columns; thread (rg, cg) holds a TA × TD tile of dQ in TA·TD/4 vec4
 * accumulators: rows rg + RG·i (i < TA) and column vec4s cg + CG·j (j < TD/4), strided so that the lanes of a
 * warp read consecutive rows / vec4s of workgroup memory (no bank conflicts; lanes sharing a row broadcast).
 * Per tile of BB kv columns: the dS' tile is copied row-major (lanes consecutive along kv: coalesced global
 * reads, conflict-free scalar stores) into rows of BB + 4 floats (the pad puts neighbouring rows 4 banks apart
 * for the vec4 reads), the BB K rows as vec4s; then per 4 kv columns a thread reads TA dS' vec4s (4 columns of
 * one row each) and 4·TD/4 K vec4s for 4·TA·TD FMAs. The grid runs the q blocks last to first (causal masks: the
 * longest workgroups first). Each dQ element is written once by one thread, summed in a
 * fixed order: bit-reproducible.
 */
import { backwardBlockWalk } from "./block_walk.ts";
import { DS_COMPACT_PARAMS, DS_ROW_STRIDE_WGSL } from "./flex_backward.ts";

/** Compile-time shape (lengths, heads and the chunk's first head are uniforms: FLEX_BWD_UNIFORMS, `pad0` = head0). */
export interface DqFromDsConfig {
  readonly D: number;
  /** q rows per workgroup. */
  readonly BA: number;
  /** dQ rows per thread. */
  readonly TA: 4 | 8;
  /** dQ columns per thread (TD / 4 vec4s). */
  readonly TD: 4 | 8;
  /** kv columns per staged tile (a multiple of 4). */
  readonly BB: number;
}

export function dqFromDsThreads(c: Pick<DqFromDsConfig, "D" | "BA" | "TA" | "TD">): number {
  return (c.BA / c.TA) * (c.D / c.TD);
}

/** Floats of one staged dS' row (BB + 4: neighbouring rows 4 banks apart). */
function dsRow(BB: number): number {
  return BB + 4;
}

export function dqFromDsSmemBytes(c: DqFromDsConfig): number {
  return (c.BA * dsRow(c.BB) + c.BB * c.D) * 4;
}

/** The launch label's config part (tests and the probe match it). */
export function dqFromDsKey(c: DqFromDsConfig): string {
  return `BA${c.BA} TA${c.TA} TD${c.TD} BB${c.BB}`;
}

function unroll(n: number, f: (j: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, j) => f(j)).join(sep);
}

/** Bindings: 0 k, 1 caps (block tables ‖ captures), 2 ds (read), 3 packed gradients (dq at 0), 4 uniform. */
/** Both dQ-from-dS' kernels' tile of rows (ablk, row0, row_limit) and bases (a_base, b_base), taken last q block
 * first; needs nwg, wid, fq, b, hk in scope. */
export function reversedQTile(BA: number): string {
  return `  // the last q blocks first: under a causal mask they list the most kv blocks, and the longest workgroups
  // started first leave the shortest for the launch's tail
  let wx = nwg.x - 1u - wid.x;
  let ablk = wx / P.a_tiles;
  let row0 = ablk * P.QB + (wx % P.a_tiles) * ${BA}u;
  let row_limit = min(ablk * P.QB + P.QB, P.Sq);
  let a_base = fq * P.Sq;
  let b_base = (b * P.Hkv + hk) * P.Skv;`;
}

export function dqFromDsWgsl(c: DqFromDsConfig, opts: { headsFastest?: boolean; compact?: boolean } = {}): string {
  // compact: the scratch holds one QB × KB slot per visited block (kernels/flex_backward.ts dsCompact); the q block's
  // list position blk is its slot after the block's first (caps[off_ds_start + trow]) and the head's base
  const cp = opts.compact === true;
  // headsFastest: the grid is (q heads of the chunk, row tiles): every head's longest workgroups start first
  const hf = opts.headsFastest === true;
  const D4 = c.D / 4, CG = c.D / c.TD, RG = c.BA / c.TA, NT = RG * CG, TJ = c.TD / 4;
  const SP = dsRow(c.BB), SP4 = SP / 4, BB4 = c.BB / 4;
  const comp = (t: number) => "xyzw"[t];
  const DS_LOADS = Math.ceil((c.BA * c.BB) / NT), K_LOADS = Math.ceil((c.BB * D4) / NT);
  const guard = (total: number, u: number, stmt: string) => ((u + 1) * NT <= total ? stmt : `if (tid + ${u * NT}u < ${total}u) { ${stmt} }`);
  const body = `
      workgroupBarrier();
${unroll(DS_LOADS, (u) => `      {
        let e = tid + ${u * NT}u;
        let r = e / ${c.BB}u;
        let n = e % ${c.BB}u;
        ${guard(c.BA * c.BB, u, `var x = 0.0;
        if (row0 + r < row_limit && tile + n < col_limit) { x = dsg[${cp ? "(ds_head + blk) * P.QB * P.KB + (row0 - ablk * P.QB + r) * P.KB + tile - sb * P.KB + n" : "(ds_head + row0 + r) * ds_stride + tile + n"}]; }
        ds_s[r * ${SP4}u + n / 4u][n % 4u] = x;`)}
      }`)}
${unroll(K_LOADS, (u) => `      {
        let e = tid + ${u * NT}u;
        let n = e / ${D4}u;
        ${guard(c.BB * D4, u, `var x = vec4<f32>(0.0);
        if (tile + n < col_limit) { x = kg[(b_base + tile + n) * ${D4}u + e % ${D4}u]; }
        k_s[e] = x;`)}
      }`)}
      workgroupBarrier();
      for (var n4 = 0u; n4 < ${BB4}u; n4++) {
${unroll(c.TA, (i) => `        let a${i} = ds_s[(rg + ${RG * i}u) * ${SP4}u + n4];`)}
${unroll(4, (t) => `        {
${unroll(TJ, (j) => `          let k${j} = k_s[(4u * n4 + ${t}u) * ${D4}u + cg + ${CG * j}u];`)}
${unroll(c.TA * TJ, (x) => `          acc${Math.floor(x / TJ)}_${x % TJ} += a${Math.floor(x / TJ)}.${comp(t)} * k${x % TJ};`)}
        }`)}
      }`;
  return /* wgsl */ `
// FlexAttention backward dQ = scale·dS'·K from the dK/dV kernel's stored dS'. Generated by kernels/flex_bwd_dq_from_ds.ts.
// BA = ${c.BA} q rows per workgroup, thread tile TA × TD = ${c.TA} × ${c.TD} (RG = ${RG} row groups, CG = ${CG} column
// groups, ${NT} threads), BB = ${c.BB} kv columns per staged tile.
struct Params {
  B: u32, Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, a_tiles: u32,
  row_width: u32, tb_stride_b: u32, tb_stride_h: u32, off_num: u32, off_idx: u32, off_full_num: u32,
  off_full_idx: u32, has_full: u32, scale: f32, off_dk: u32, off_dv: u32, head0: u32,${cp ? `
  ${DS_COMPACT_PARAMS}` : ""}
}

@group(0) @binding(0) var<storage, read> kg: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> caps: array<u32>;
@group(0) @binding(2) var<storage, read> dsg: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> P: Params;

var<workgroup> ds_s: array<vec4<f32>, ${c.BA * SP4}>;   // [BA][BB + 4] dS' tile, row-major
var<workgroup> k_s: array<vec4<f32>, ${c.BB * D4}>;     // [BB][D / 4] K rows

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) ${hf ? "wid_grid" : "wid"}: vec3<u32>, @builtin(num_workgroups) ${hf ? "nwg_grid" : "nwg"}: vec3<u32>, @builtin(local_invocation_index) tid: u32) {${hf ? `
  let wid = vec3<u32>(wid_grid.y, wid_grid.x, 0u); // the grid runs the heads fastest
  let nwg = vec3<u32>(nwg_grid.y, nwg_grid.x, 1u);` : ""}
  let fq = P.head0 * (P.Hq / P.Hkv) + wid.y; // flattened (batch, q head)
  let b = fq / P.Hq;
  let h = fq % P.Hq;
  let hk = h / (P.Hq / P.Hkv);
  let rg = tid / ${CG}u;
  let cg = tid % ${CG}u;
${reversedQTile(c.BA)}
${cp ? "" : `  let ds_head = wid.y * P.Sq;
  let ds_stride = ${DS_ROW_STRIDE_WGSL};`}
${unroll(c.TA * TJ, (x) => `  var acc${Math.floor(x / TJ)}_${x % TJ} = vec4<f32>(0.0);`)}
  {
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;${cp ? `
    let ds_head = caps[P.off_ds_head + fq] - P.ds_base + caps[P.off_ds_start + trow]; // the block's first slot` : ""}${backwardBlockWalk(true, c.BB, body)}
  }
${unroll(c.TA, (i) => `  if (row0 + rg + ${RG * i}u < row_limit) {
    let o = (a_base + row0 + rg + ${RG * i}u) * ${D4}u + cg;
${unroll(TJ, (j) => `    grads[o + ${CG * j}u] = acc${i}_${j} * P.scale;`)}
  }`)}
}
`;
}
