/**
 * The strided reduction kernel over a set of dims (sum, max, logsumexp; planned by lib/lower/
 * plan_tensor_ops.ts). A workgroup of 64 threads computes P = 64 / L outputs with L lanes each
 * (L ∈ {1, 2, 4, …, 32}, a uniform): lane l of output o folds the reduced elements r = l, l + L, l + 2L, …
 * in order, then the L partials of each output meet in a fixed tree in workgroup memory, so the result
 * depends only on the shapes (deterministic). The planner picks L = 32 when the reduced elements are
 * contiguous (coalesced reads along a row) or few outputs share a long reduction, else L = 1 (one thread
 * per output: coalesced when the reduced dims are the outer ones, as when summing a gradient over a batch).
 *
 * logsumexp is two passes over the row in one kernel: the max, then Σ exp(x − max); a row whose max is ±∞
 * gives that max (an all −∞ row: −∞, as PyTorch).
 *
 * Uniform words: 0 nOut, 1 x workgroups per row of the 2-D grid, 2 kept rank, 3 reduced rank, 4 reduced
 * size, 5 L; 8.. kept shape, 16.. kept strides, 24.. reduced shape, 32.. reduced strides (rank ≤ 6 each).
 * An f16 output is written a word (two outputs) per writer thread: P is even and every workgroup starts at
 * an even output, so no two workgroups share a word.
 */
import type { DType } from "../lib/tensor/tensor.ts";
import { loaderWgsl, mathType, storageType, uniformDecl } from "./strided.ts";

export type ReduceKind = "sum" | "max" | "lse";
export const REDUCE_WORKGROUP = 64;
export const REDUCE_MAX_LANES = 32;
export const REDUCE_UNIFORM_WORDS = 40;

// runtime values: WGSL refuses an infinite constant expression
const NEG_INF = "neg_inf()";
const POS_INF = "-neg_inf()";

/** Bindings: in, out, U. `inDtype` is the input's storage (bool sums read i32 0 / 1). */
export function reduceWgsl(kind: ReduceKind, inDtype: DType, outDtype: DType): string {
  const T = mathType(outDtype);
  const ident = kind === "sum" ? `${T}(0)` : T === "i32" ? "(-2147483647i - 1i)" : NEG_INF;
  const fold = (a: string, b: string) => (kind === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`);
  const load = T === mathType(inDtype) ? "ld_in0(at(base, r))" : `${T}(ld_in0(at(base, r)))`;
  const tree = (name: string) => `
  ${name}[t] = acc;
  for (var s = L / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lane < s) { ${name}[t] = ${kind === "sum" || name === "tree2" ? `${name}[t] + ${name}[t + s]` : `max(${name}[t], ${name}[t + s])`}; }
  }
  workgroupBarrier();`;
  const lse = kind === "lse"
    ? `
  let m = tree[j * L];
  let fin = m > ${NEG_INF} && m < ${POS_INF};
  acc = 0.0;
  if (valid && fin) { for (var r = lane; r < uw(4u); r += L) { acc += exp(${load} - m); } }
  ${tree("tree2")}
  if (lane == 0u) { tree[t] = select(m, m + log(tree2[t]), fin); }
  workgroupBarrier();`
    : "";
  const write = outDtype === "f16"
    ? `  if (t < P / 2u) {
    let w = wgFlat * (P / 2u) + t;
    let o0 = 2u * w;
    if (o0 < uw(0u)) {
      let hi = select(0.0, tree[(2u * t + 1u) * L], o0 + 1u < uw(0u));
      out[w] = pack2x16float(vec2<f32>(tree[2u * t * L], hi));
    }
  }`
    : `  if (t < P) {
    let o1 = wgFlat * P + t;
    if (o1 < uw(0u)) { out[o1] = tree[t * L]; }
  }`;
  return /* wgsl */ `${uniformDecl(REDUCE_UNIFORM_WORDS)}
@group(0) @binding(0) var<storage, read> in0: array<${storageType(inDtype)}>;
@group(0) @binding(1) var<storage, read_write> out: array<${storageType(outDtype)}>;
@group(0) @binding(2) var<uniform> u: U;
${loaderWgsl("in0", inDtype)}

var<workgroup> tree: array<${T}, ${REDUCE_WORKGROUP}>;
fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }
${kind === "lse" ? `var<workgroup> tree2: array<f32, ${REDUCE_WORKGROUP}>;` : ""}

/** The input offset of reduced element r of the output at \`base\`. */
fn at(base: u32, r: u32) -> u32 {
  var rem = r;
  var o = base;
  for (var d = i32(uw(3u)) - 1; d >= 0; d--) {
    let ud = u32(d);
    let s = uw(24u + ud);
    o += (rem % s) * uw(32u + ud);
    rem = rem / s;
  }
  return o;
}

@compute @workgroup_size(${REDUCE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let L = uw(5u);
  let P = ${REDUCE_WORKGROUP}u / L;
  let t = l.x;
  let j = t / L;
  let lane = t % L;
  let wgFlat = wg.y * uw(1u) + wg.x;
  let o = wgFlat * P + j;
  let valid = o < uw(0u);
  var base = 0u;
  if (valid) {
    var rem = o;
    for (var d = i32(uw(2u)) - 1; d >= 0; d--) {
      let ud = u32(d);
      let s = uw(8u + ud);
      base += (rem % s) * uw(16u + ud);
      rem = rem / s;
    }
  }
  var acc: ${T} = ${ident};
  if (valid) { for (var r = lane; r < uw(4u); r += L) { acc = ${fold("acc", load)}; } }
  ${tree("tree")}${lse}
${write}
}
`;
}
