/**
 * The materialized-mask baseline as three plain kernels (see lib/attention/baselines.ts):
 *
 *   scores   S[bh, i, j] = mask ? (q_i · k_j)·scale : −∞      64×64 output tile per workgroup, 4×4 per thread
 *   softmax  row-wise, in place, one workgroup (256 threads) per row; a fully masked row becomes 0
 *   pv       out[bh, i, :] = Σ_j P[i, j] v_j                  64 rows × 64 value columns per workgroup
 *
 * Glossary: D / DV head dims (compile-time); uniforms U carry every length (no rebuild for a new length).
 * TILE = 64 rows/cols per workgroup, KC = 16 reduction chunk, each of the 16×16 threads owns a 4×4 sub-tile.
 */

const UNIFORMS = /* wgsl */ `
struct U {
  B: u32, H: u32, Hkv: u32, Sq: u32,
  Skv: u32, maskB: u32, maskH: u32, hasMask: u32,
  scale: f32, rowsPerY: u32, _p1: u32, _p2: u32,
}
// −∞ through a function-scope var: a const bitcast of the inf pattern is rejected by Tint's const evaluation.
fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }`;

export function denseScoresWgsl(D: number): string {
  return /* wgsl */ `${UNIFORMS}
const D: u32 = ${D}u;
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<i32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;
@group(0) @binding(4) var<uniform> u: U;

var<workgroup> tq: array<array<f32, 64>, 16>;
var<workgroup> tk: array<array<f32, 64>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let bh = wg.z;
  let b = bh / u.H;
  let h = bh % u.H;
  let hk = h / (u.H / u.Hkv);
  let row0 = wg.y * 64u;
  let col0 = wg.x * 64u;
  let tid = l.y * 16u + l.x;
  var acc: array<array<f32, 4>, 4>;
  for (var d0 = 0u; d0 < D; d0 += 16u) {
    for (var t = 0u; t < 4u; t++) {
      let idx = tid + t * 256u;
      let r = idx / 16u;
      let c = idx % 16u;
      let qi = row0 + r;
      let kj = col0 + r;
      var qv = 0.0;
      var kv = 0.0;
      if (qi < u.Sq && d0 + c < D) { qv = q[((b * u.H + h) * u.Sq + qi) * D + d0 + c]; }
      if (kj < u.Skv && d0 + c < D) { kv = k[((b * u.Hkv + hk) * u.Skv + kj) * D + d0 + c]; }
      tq[c][r] = qv;
      tk[c][r] = kv;
    }
    workgroupBarrier();
    for (var c = 0u; c < 16u; c++) {
      var a: array<f32, 4>;
      var bb: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = tq[c][l.y * 4u + i]; bb[i] = tk[c][l.x * 4u + i]; }
      for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], bb[j], acc[i][j]); } }
    }
    workgroupBarrier();
  }
  let mb = select(0u, b, u.maskB > 1u);
  let mh = select(0u, h, u.maskH > 1u);
  for (var i = 0u; i < 4u; i++) {
    let qi = row0 + l.y * 4u + i;
    if (qi >= u.Sq) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let kj = col0 + l.x * 4u + j;
      if (kj >= u.Skv) { continue; }
      var keep = true;
      if (u.hasMask != 0u) { keep = mask[((mb * max(u.maskH, 1u) + mh) * u.Sq + qi) * u.Skv + kj] != 0; }
      let v = select(neg_inf(), acc[i][j] * u.scale, keep);
      s[((bh * u.Sq) + qi) * u.Skv + kj] = v;
    }
  }
}
`;
}

export function denseSoftmaxWgsl(): string {
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<uniform> u: U;
var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.y * u.rowsPerY + wg.x;
  if (row >= u.B * u.H * u.Sq) { return; }   // uniform per workgroup: the barrier below is still safe
  let base = row * u.Skv;
  var m = neg_inf();
  for (var j = l.x; j < u.Skv; j += 256u) { m = max(m, s[base + j]); }
  red[l.x] = m;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (l.x < w) { red[l.x] = max(red[l.x], red[l.x + w]); }
    workgroupBarrier();
  }
  m = red[0];
  workgroupBarrier();
  var sum = 0.0;
  if (m > neg_inf()) {
    for (var j = l.x; j < u.Skv; j += 256u) { sum += exp(s[base + j] - m); }
  }
  red[l.x] = sum;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (l.x < w) { red[l.x] += red[l.x + w]; }
    workgroupBarrier();
  }
  let total = red[0];
  for (var j = l.x; j < u.Skv; j += 256u) {
    var p = 0.0;
    if (total > 0.0) { p = exp(s[base + j] - m) / total; }
    s[base + j] = p;
  }
}
`;
}

export function densePvWgsl(DV: number): string {
  return /* wgsl */ `${UNIFORMS}
const DV: u32 = ${DV}u;
@group(0) @binding(0) var<storage, read_write> p: array<f32>;   // the scratch scores (bound read_write)
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<uniform> u: U;

var<workgroup> tp: array<array<f32, 64>, 16>;   // [j][row]
var<workgroup> tv: array<array<f32, 64>, 16>;   // [j][col]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let bh = wg.z;
  let b = bh / u.H;
  let h = bh % u.H;
  let hk = h / (u.H / u.Hkv);
  let row0 = wg.y * 64u;
  let col0 = wg.x * 64u;
  let tid = l.y * 16u + l.x;
  var acc: array<array<f32, 4>, 4>;
  for (var j0 = 0u; j0 < u.Skv; j0 += 16u) {
    for (var t = 0u; t < 4u; t++) {
      let idx = tid + t * 256u;
      // P tile: 64 rows × 16 js, read along j (contiguous)
      let r = idx / 16u;
      let c = idx % 16u;
      var pv = 0.0;
      if (row0 + r < u.Sq && j0 + c < u.Skv) { pv = p[(bh * u.Sq + row0 + r) * u.Skv + j0 + c]; }
      tp[c][r] = pv;
      // V tile: 16 js × 64 cols, read along cols (contiguous)
      let jr = idx / 64u;
      let cc = idx % 64u;
      var vv = 0.0;
      if (j0 + jr < u.Skv && col0 + cc < DV) { vv = v[((b * u.Hkv + hk) * u.Skv + j0 + jr) * DV + col0 + cc]; }
      tv[jr][cc] = vv;
    }
    workgroupBarrier();
    for (var c = 0u; c < 16u; c++) {
      var a: array<f32, 4>;
      var bb: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = tp[c][l.y * 4u + i]; bb[i] = tv[c][l.x * 4u + i]; }
      for (var i = 0u; i < 4u; i++) { for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], bb[j], acc[i][j]); } }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let qi = row0 + l.y * 4u + i;
    if (qi >= u.Sq) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let c = col0 + l.x * 4u + j;
      if (c < DV) { o[(bh * u.Sq + qi) * DV + c] = acc[i][j]; }
    }
  }
}
`;
}
