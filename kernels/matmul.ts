/**
 * Tiled batched matmul (planned by lib/lower/plan_tensor_ops.ts): out[z] = A[z] @ B[z], one workgroup of
 * 16×16 threads per 32×32 output tile of one batch element (workgroup z), K in steps of 16 through
 * workgroup memory; each thread accumulates a 2×2 micro-tile in f32 (rows ty, ty + 16; cols tx, tx + 16, so
 * stores stay coalesced). Operands are read through strides (row, col and per-batch-dim: 0 broadcasts a
 * batch dim), so a transposed operand is read in place. f16 operands are read with unpack2x16float.
 *
 * An f16 result is written as f32 into a scratch and packed by `packF16Wgsl` (two elements per word: a
 * 32-column tile does not align with words when N is odd).
 *
 * Uniform words: 0 M, 1 N, 2 K, 3 batch rank; 4..7 batch shape; 8..11 A's batch strides; 12..15 B's;
 * 16 A row stride (m), 17 A col stride (k), 18 B row stride (k), 19 B col stride (n).
 */
import type { DType } from "../lib/tensor/tensor.ts";
import { loaderWgsl, storageType, uniformDecl } from "./strided.ts";

export const MATMUL_TILE = 32;
export const MATMUL_UNIFORM_WORDS = 20;

/** Bindings: a, b, out (f32, or an f32 scratch for an f16 result), U. */
export function matmulWgsl(inDtype: DType): string {
  return /* wgsl */ `${uniformDecl(MATMUL_UNIFORM_WORDS)}
@group(0) @binding(0) var<storage, read> in0: array<${storageType(inDtype)}>;
@group(0) @binding(1) var<storage, read> in1: array<${storageType(inDtype)}>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${loaderWgsl("in0", inDtype)}
${loaderWgsl("in1", inDtype)}

var<workgroup> As: array<f32, 512>;
var<workgroup> Bs: array<f32, 512>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let M = uw(0u);
  let N = uw(1u);
  let K = uw(2u);
  var rem = wg.z;
  var aB = 0u;
  var bB = 0u;
  for (var d = i32(uw(3u)) - 1; d >= 0; d--) {
    let ud = u32(d);
    let s = uw(4u + ud);
    let c = rem % s;
    rem = rem / s;
    aB += c * uw(8u + ud);
    bB += c * uw(12u + ud);
  }
  let aR = uw(16u); let aC = uw(17u); let bR = uw(18u); let bC = uw(19u);
  let row0 = wg.y * 32u;
  let col0 = wg.x * 32u;
  let tx = l.x;
  let ty = l.y;
  let tid = ty * 16u + tx;
  var c00 = 0.0; var c01 = 0.0; var c10 = 0.0; var c11 = 0.0;
  for (var k0 = 0u; k0 < K; k0 += 16u) {
    for (var h = 0u; h < 2u; h++) {
      let e = tid + 256u * h;
      // A tile: 32 rows × 16 k
      let ar = e / 16u; let ak = e % 16u;
      var av = 0.0;
      if (row0 + ar < M && k0 + ak < K) { av = ld_in0(aB + (row0 + ar) * aR + (k0 + ak) * aC); }
      As[e] = av;
      // B tile: 16 k × 32 cols
      let bk = e / 32u; let bc = e % 32u;
      var bv = 0.0;
      if (k0 + bk < K && col0 + bc < N) { bv = ld_in1(bB + (k0 + bk) * bR + (col0 + bc) * bC); }
      Bs[e] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let a0 = As[ty * 16u + kk];
      let a1 = As[(ty + 16u) * 16u + kk];
      let b0 = Bs[kk * 32u + tx];
      let b1 = Bs[kk * 32u + tx + 16u];
      c00 = fma(a0, b0, c00); c01 = fma(a0, b1, c01);
      c10 = fma(a1, b0, c10); c11 = fma(a1, b1, c11);
    }
    workgroupBarrier();
  }
  let ob = wg.z * M * N;
  let r0 = row0 + ty; let r1 = r0 + 16u;
  let q0 = col0 + tx; let q1 = q0 + 16u;
  if (r0 < M && q0 < N) { out[ob + r0 * N + q0] = c00; }
  if (r0 < M && q1 < N) { out[ob + r0 * N + q1] = c01; }
  if (r1 < M && q0 < N) { out[ob + r1 * N + q0] = c10; }
  if (r1 < M && q1 < N) { out[ob + r1 * N + q1] = c11; }
}
`;
}

/** f32 scratch → f16 words, a word per thread. Bindings: src (scratch), out, U (words 0 n, 1 rowThreads). */
export function packF16Wgsl(): string {
  return /* wgsl */ `${uniformDecl(4)}
@group(0) @binding(0) var<storage, read_write> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> u: U;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let w = g.y * uw(1u) + g.x;
  let i0 = 2u * w;
  if (i0 < uw(0u)) {
    let hi = select(0.0, src[min(i0 + 1u, uw(0u) - 1u)], i0 + 1u < uw(0u));
    out[w] = pack2x16float(vec2<f32>(src[i0], hi));
  }
}
`;
}
