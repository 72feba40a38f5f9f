/**
 * The small launches around the fused backward kernels (kernels/flex_backward.ts):
 *   preprocess  ld[row] = (lse·log2 e, Δ) with Δ = Σ_d out·dOut − dLse (lse = −∞ rows: +∞, so P = 0)
 *   reduce      captured-tensor gradients, deterministic path: Σ over the dQ workgroups' partial slices
 *               (err[1 + wg·words + w]) in a fixed order → the packed gradients
 *   finalize    captured-tensor gradients, atomic fallback: u32-packed f32 accumulators (err[1 + i]) → the packed gradients
 *   copy        one gradient out of the packed buffer into its own node's buffer
 * All are 1-D over elements, split across (x, y) workgroups so large counts stay under the grid limit.
 */

export const AUX_THREADS = 64;

/** Uniform words of the preprocess launch. */
export const PREPROCESS_UNIFORMS = ["rows", "grid_x", "pad0", "pad1"] as const;

/** `storage` f16: out and dO are f16 (the tensor family's backward reads the f16 call's own out; f32 math). */
export function preprocessWgsl(Dv: number, hasDLse: boolean, storage: "f32" | "f16" = "f32"): string {
  const f16 = storage === "f16";
  const ld4 = (arr: string) => f16 ? `vec4<f32>(${arr}[row * ${Dv / 4}u + d4])` : `${arr}[row * ${Dv / 4}u + d4]`;
  return /* wgsl */ `${f16 ? "enable f16;" : ""}
// FlexAttention backward preprocess${f16 ? " (f16 out, dO)" : ""}: (lse·log2 e, rowsum(out∘dOut) − dLse) per query row.
struct Params { rows: u32, grid_x: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> outg: array<vec4<${storage}>>;
@group(0) @binding(1) var<storage, read> dog: array<vec4<${storage}>>;
@group(0) @binding(2) var<storage, read> lseg: array<f32>;
${hasDLse ? "@group(0) @binding(3) var<storage, read> dlseg: array<f32>;" : ""}
@group(0) @binding(${hasDLse ? 4 : 3}) var<storage, read_write> ld: array<vec2<f32>>;
@group(0) @binding(${hasDLse ? 5 : 4}) var<uniform> P: Params;

@compute @workgroup_size(${AUX_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x + gid.y * P.grid_x * ${AUX_THREADS}u;
  if (row >= P.rows) { return; }
  var acc = vec4<f32>(0.0);
  for (var d4 = 0u; d4 < ${Dv / 4}u; d4++) { acc += ${ld4("outg")} * ${ld4("dog")}; }
  var delta = acc.x + acc.y + acc.z + acc.w;
  ${hasDLse ? "delta -= dlseg[row];" : ""}
  let lse = lseg[row];
  var inf_bits = 0x7f800000u;
  var l2 = lse * 1.4426950408889634;
  if (bitcast<u32>(lse) == 0xff800000u) { l2 = bitcast<f32>(inf_bits); }
  ld[row] = vec2<f32>(l2, delta);
}
`;
}

/** Uniform words of the finalize and copy launches. */
export const MOVE_UNIFORMS = ["count", "src_off", "dst_off", "grid_x"] as const;

/** dst[dst_off + i] = f32(src[src_off + i]) for the capture accumulators (u32 bits). */
export function finalizeWgsl(): string {
  return /* wgsl */ `
// FlexAttention backward: captured-tensor gradient accumulators (u32-packed f32) → packed gradients.
struct Params { count: u32, src_off: u32, dst_off: u32, grid_x: u32 }
@group(0) @binding(0) var<storage, read_write> acc: array<u32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${AUX_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.grid_x * ${AUX_THREADS}u;
  if (i >= P.count) { return; }
  grads[P.dst_off + i] = bitcast<f32>(acc[P.src_off + i]);
}
`;
}

/** Uniform words of the reduce launch. */
export const REDUCE_UNIFORMS = ["count", "slices", "src_off", "dst_off", "grid_x", "pad0", "pad1", "pad2"] as const;

/** Threads of one reduce workgroup (one workgroup per accumulator word). */
export const REDUCE_THREADS = 64;

/**
 * grads[dst_off + w] = Σ_g bits→f32(part[src_off + g·count + w]) over g < slices, for w < count: one workgroup
 * per word w; thread t sums g = t, t + 64, … in order, then a fixed pairwise tree over the 64 threads. The
 * order depends only on `slices`, so the result is bit-reproducible.
 */
export function reduceWgsl(): string {
  return /* wgsl */ `
// FlexAttention backward: captured-tensor gradients, fixed-order sum of the dQ workgroups' partial slices.
struct Params { count: u32, slices: u32, src_off: u32, dst_off: u32, grid_x: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> part: array<u32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> sums: array<f32, ${REDUCE_THREADS}>;

@compute @workgroup_size(${REDUCE_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let w = wid.x + wid.y * P.grid_x;
  var acc = 0.0;
  if (w < P.count) {
    for (var g = t; g < P.slices; g += ${REDUCE_THREADS}u) { acc += bitcast<f32>(part[P.src_off + g * P.count + w]); }
  }
  sums[t] = acc;
  for (var half = ${REDUCE_THREADS / 2}u; half > 0u; half /= 2u) {
    workgroupBarrier();
    if (t < half) { sums[t] += sums[t + half]; }
  }
  if (t == 0u && w < P.count) { grads[P.dst_off + w] = sums[0]; }
}
`;
}

/** One workgroup per word: a 2-D grid of `count` workgroups. */
export function reduceGrid(count: number, maxPerDim: number): { grid: [number, number, number]; gridX: number } {
  const n = Math.max(1, count);
  const gridX = Math.min(n, maxPerDim);
  return { grid: [gridX, Math.ceil(n / gridX), 1], gridX };
}

/** dst[dst_off + i] = src[src_off + i]; `vec4`: count and offsets in vec4s (a part whose offset and size are multiples of 4). */
export function copyWgsl(vec4 = false): string {
  const T = vec4 ? "vec4<f32>" : "f32";
  return /* wgsl */ `
// FlexAttention backward: one gradient out of the packed buffer.
struct Params { count: u32, src_off: u32, dst_off: u32, grid_x: u32 }
@group(0) @binding(0) var<storage, read> src: array<${T}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${T}>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${AUX_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.grid_x * ${AUX_THREADS}u;
  if (i >= P.count) { return; }
  dst[P.dst_off + i] = src[P.src_off + i];
}
`;
}

/** The f16 twin of copyWgsl (dst f16, two a u32 word): word w = elements 2w, 2w + 1 rounded as the f16 cast rounds
 * (pack2x16float); the second past `count` is 0. dst_off is in words. `vec4`: count, src_off in vec4s, dst_off in
 * word pairs (4 elements a thread). */
export function copyF16Wgsl(vec4 = false): string {
  if (vec4) {
    return /* wgsl */ `
// FlexAttention backward: one f16 gradient out of the packed f32 buffer, 4 elements a thread.
struct Params { count: u32, src_off: u32, dst_off: u32, grid_x: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${AUX_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.grid_x * ${AUX_THREADS}u;
  if (i >= P.count) { return; }
  let x = src[P.src_off + i];
  dst[P.dst_off + i] = vec2<u32>(pack2x16float(x.xy), pack2x16float(x.zw));
}
`;
  }
  return /* wgsl */ `
// FlexAttention backward: one f16 gradient out of the packed f32 buffer.
struct Params { count: u32, src_off: u32, dst_off: u32, grid_x: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${AUX_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x + gid.y * P.grid_x * ${AUX_THREADS}u;
  let i = 2u * w;
  if (i >= P.count) { return; }
  var r = vec2<f32>(src[P.src_off + i], 0.0);
  if (i + 1u < P.count) { r.y = src[P.src_off + i + 1u]; }
  dst[P.dst_off + w] = pack2x16float(r);
}
`;
}

/** A 2-D grid of AUX_THREADS-wide workgroups covering `count` elements. */
export function auxGrid(count: number, maxPerDim: number): { grid: [number, number, number]; gridX: number } {
  const groups = Math.max(1, Math.ceil(count / AUX_THREADS));
  const gridX = Math.min(groups, maxPerDim);
  return { grid: [gridX, Math.ceil(groups / gridX), 1], gridX };
}
