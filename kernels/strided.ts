/**
 * The strided n-ary elementwise kernel (planned by lib/lower/plan_tensor_ops.ts): every elementwise tensor
 * op, every cast and every data-movement op (reshape, expand, transpose, repeat, repeatInterleave, gather)
 * is one instance of
 *
 *   out[i] = EXPR(x0, x1, x2)   with xk = in_k[ Σ_d ((c_d / div_kd) % mod_kd) · stride_kd ]
 *
 * where c is the coordinate of output element i (row-major over the output shape). Broadcasting is a
 * stride 0, a transpose permuted strides, repeat a mod, repeatInterleave a div. gather reads input 1 (the
 * i32 index) first and adds `index · gatherStride` to input 0's offset (its stride along the dim is 0);
 * an index outside [0, gatherLen) is clamped and sets error bit ERR_CAPTURE_RANGE.
 *
 * Shapes, strides, divs, mods and the mulScalar factor travel in the uniform, so one kernel per
 * (expression, dtypes) serves every shape and rank ≤ 6 (the planner merges contiguous dims first). A fused
 * chain of elementwise ops is one expression over its leaves (intermediates as `let`s in `prelude`).
 * Uniform words (array<vec4<u32>>):
 *   0 n   1 rowThreads   2 rank   3 factorIsInt   4 factorF (f32 bits)   5 factorI   6 gatherLen   7 gatherStride
 *   8..13 out shape      16 + 24k: input k's strides (+0), divs (+8), mods (+16)
 *
 * Storage: f32 / i32 / bool (i32 0 / 1) as themselves; f16 as packed pairs in array<u32> (read with
 * unpack2x16float); an f16 output is written a word (two elements) per thread so no two threads share a
 * word. Math runs in f32 for f32 / f16 and in i32 for i32 / bool.
 */
import type { DType } from "../lib/tensor/tensor.ts";
import { ERROR_BITS_DECL, ERR_CAPTURE_RANGE, FLUSH_ERRORS } from "./error_bits.ts";

export const STRIDED_WORKGROUP = 256;
export const STRIDED_MAX_RANK = 6;
/** Most inputs of one launch (a fused chain's leaves; with out and err within WebGPU's 8 storage buffers). */
export const STRIDED_MAX_INPUTS = 6;
/** Uniform words for k inputs. */
export const stridedUniformWords = (k: number): number => 16 + 24 * Math.max(k, 1);
/** Word offsets in the uniform. */
export const SU = { n: 0, rowThreads: 1, rank: 2, factorIsInt: 3, factorF: 4, factorI: 5, gatherLen: 6, gatherStride: 7, shape: 8 } as const;
export const inputBase = (k: number): number => 16 + 24 * k;
/** A mod that never wraps. */
export const NO_MOD = 0xffffffff;

export interface StridedSpec {
  /** The inputs' dtypes (their storage). */
  readonly inputs: readonly DType[];
  readonly out: DType;
  /** A WGSL expression over x0, x1, … (math types: f32 for f32 / f16, i32 for i32 / bool), of the output's math type. */
  readonly expr: string;
  /** Statements before the expression (a fused chain's intermediate `let`s over the x's). */
  readonly prelude?: string;
  /** Module-scope WGSL functions the expression or the prelude calls (e.g. tanh's flex_tanh). */
  readonly helpers?: string;
  /** gather: input 1 is the i32 index replacing input 0's coordinate along the gathered dim. */
  readonly gather?: boolean;
}

/**
 * `f16r(x)`: x rounded to binary16 (nearest even; subnormals, overflow to ±∞, ∞ / NaN kept), as an f32: a
 * fused chain's f16 intermediate gets the value it would have had stored. Integer bit arithmetic, because
 * compilers fold unpack2x16float(pack2x16float(x)) to x (Mesa does).
 */
export const F16_ROUND = /* wgsl */ `fn f16r(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u) { return x; }
  if (abs(x) < 6.103515625e-05) { return round(x * 16777216.0) * 5.9604644775390625e-08; }
  let r = bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u);
  if (abs(r) > 65504.0) { return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); }
  return r;
}`;

export function mathType(d: DType): "f32" | "i32" { return d === "i32" || d === "bool" ? "i32" : "f32"; }
export function storageType(d: DType): string { return d === "f16" ? "u32" : mathType(d); }

/** `fn ld_NAME(i) -> T`: element i of buffer NAME as its math type. */
export function loaderWgsl(name: string, d: DType): string {
  const body = d === "f16" ? `unpack2x16float(${name}[i >> 1u])[i & 1u]` : `${name}[i]`;
  return `fn ld_${name}(i: u32) -> ${mathType(d)} { return ${body}; }`;
}

export function uniformDecl(words: number): string {
  return `struct U { w: array<vec4<u32>, ${Math.ceil(words / 4)}> }
fn uw(i: u32) -> u32 { return u.w[i >> 2u][i & 3u]; }`;
}

/**
 * The main of a kernel whose element i is `elem(i)` (a WGSL fn of the output's math type): one element per
 * thread, or one word of two for an f16 output. Errors are flushed last.
 */
export function elementMain(out: DType, withErrors: boolean): string {
  const flush = withErrors ? `\n  ${FLUSH_ERRORS}` : "";
  const body = out === "f16"
    ? `  let w = g.y * uw(1u) + g.x;
  let i0 = 2u * w;
  if (i0 < uw(0u)) {
    var r = vec2<f32>(elem(i0), 0.0);
    if (i0 + 1u < uw(0u)) { r.y = elem(i0 + 1u); }
    out[w] = pack2x16float(r);
  }`
    : `  let i = g.y * uw(1u) + g.x;
  if (i < uw(0u)) { out[i] = elem(i); }`;
  return `@compute @workgroup_size(${STRIDED_WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3u) {
${body}${flush}
}`;
}

/** The kernel of `spec`. Bindings: in0 … in(k−1), out, U, (gather: err). */
export function stridedWgsl(spec: StridedSpec): string {
  const k = spec.inputs.length;
  const outBinding = k;
  const ins = spec.inputs.map((d, i) => `@group(0) @binding(${i}) var<storage, read> in${i}: array<${storageType(d)}>;`).join("\n");
  const loaders = spec.inputs.map((d, i) => loaderWgsl(`in${i}`, d)).join("\n");
  const offs = spec.inputs.map((_, i) => `var o${i} = 0u;`).join(" ");
  const steps = spec.inputs.map((_, i) => {
    const b = inputBase(i);
    return `o${i} += ((c / uw(${b + 8}u + ud)) % uw(${b + 16}u + ud)) * uw(${b}u + ud);`;
  }).join("\n    ");
  const gather = spec.gather
    ? `
  let gi = ld_in1(o1);
  let glen = uw(${SU.gatherLen}u);
  if (gi < 0 || u32(gi) >= glen) { flex_err |= ${ERR_CAPTURE_RANGE}u; }
  o0 += u32(clamp(gi, 0, max(i32(glen), 1) - 1)) * uw(${SU.gatherStride}u);`
    : "";
  const reads = spec.inputs.map((_, i) => `let x${i} = ld_in${i}(o${i});`).join(" ");
  const T = mathType(spec.out);
  return /* wgsl */ `${uniformDecl(stridedUniformWords(k))}
${ins}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<${storageType(spec.out)}>;
@group(0) @binding(${outBinding + 1}) var<uniform> u: U;
${spec.gather ? `@group(0) @binding(${outBinding + 2}) var<storage, read_write> err: array<atomic<u32>>;\n${ERROR_BITS_DECL}` : ""}
${loaders}
${F16_ROUND}
${spec.helpers ? `${spec.helpers}
` : ""}
fn elem(i: u32) -> ${T} {
  var rem = i;
  ${offs}
  for (var d = i32(uw(${SU.rank}u)) - 1; d >= 0; d--) {
    let ud = u32(d);
    let s = uw(${SU.shape}u + ud);
    let c = rem % s;
    rem = rem / s;
    ${steps}
  }${gather}
  ${reads}${spec.prelude ? `
  ${spec.prelude}` : ""}
  return ${T}(${spec.expr});
}

${elementMain(spec.out, spec.gather === true)}
`;
}

/** scatterAdd's uniform words: 0 n, 1 rowThreads, 2 rank, 3 dim, 4 J (index extent along dim); 8.. out shape; 16.. index shape; 24.. index strides. */
export const SCATTER_UNIFORM_WORDS = 32;

/**
 * gather's adjoint, deterministic (no atomics): output element c sums, for j = 0 … J−1 in order, the
 * src elements at (c with dim = j) whose index equals c_dim (0 where c lies outside the index's extent).
 * Bindings: src, index, out, U, err.
 */
export function scatterAddWgsl(d: DType): string {
  const T = mathType(d);
  return /* wgsl */ `${uniformDecl(SCATTER_UNIFORM_WORDS)}
@group(0) @binding(0) var<storage, read> in0: array<${storageType(d)}>;
@group(0) @binding(1) var<storage, read> in1: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<${storageType(d)}>;
@group(0) @binding(3) var<uniform> u: U;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>>;
${ERROR_BITS_DECL}
${loaderWgsl("in0", d)}

fn elem(i: u32) -> ${T} {
  let dim = uw(3u);
  var rem = i;
  var base = 0u;
  var tgt = 0u;
  var inside = true;
  for (var d = i32(uw(2u)) - 1; d >= 0; d--) {
    let ud = u32(d);
    let s = uw(8u + ud);
    let c = rem % s;
    rem = rem / s;
    if (ud == dim) { tgt = c; } else {
      if (c >= uw(16u + ud)) { inside = false; }
      base += c * uw(24u + ud);
    }
  }
  var acc = ${T}(0);
  if (inside) {
    let step = uw(24u + dim);
    let len = uw(8u + dim);
    for (var j = 0u; j < uw(4u); j++) {
      let o = base + j * step;
      let v = in1[o];
      if (v < 0 || u32(v) >= len) { flex_err |= ${ERR_CAPTURE_RANGE}u; }
      if (v >= 0 && u32(v) == tgt) { acc += ld_in0(o); }
    }
  }
  return acc;
}

${elementMain(d, true)}
`;
}
