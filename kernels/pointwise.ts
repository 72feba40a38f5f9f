/**
 * WGSL for the autodiff glue ops of lib/tensor/ops.ts (planned by lib/lower/plan_pointwise.ts):
 *
 *   elementwise   out[i] = f(a[i·strideA], b[i·strideB])   one thread per element, 256 per workgroup
 *                 f ∈ add, sub, mul (binary), neg, mulScalar, copy (unary; copy serves reshape and expand)
 *   sum           two passes, deterministic: `sumPartials` has W workgroups each reduce a fixed grid-stride
 *                 slice to one partial; `sumFinal` (one workgroup) reduces the W partials in a fixed order
 *
 * Every length, stride and factor travels in the uniform U, so one kernel per (op, dtype) serves every size:
 *   n           elements of the output (sum: of the input)
 *   rowThreads  threads per dispatch row (x workgroups · 256): the flat index of a 2-D dispatch
 *   strideA/B   1, or 0 for a broadcast scalar operand (rank-0 add/sub/mul operand, expand's input)
 *   factorF     mulScalar's factor as f32; factorI / factorIsInt the same as i32 when it is an integer
 *   partials    sum: the number W of first-pass workgroups (= of partials)
 *
 * f16 tensors live as packed binary16 pairs in array<u32> (no `shader-f16` needed): elements are read with
 * unpack2x16float and math runs in f32; an f16 output is written one u32 word (two elements) per thread,
 * so no two threads store into the same word. `cast` is `copy` with different input and output dtypes.
 */
import type { DType } from "../lib/tensor/tensor.ts";

export type ElementwiseOp = "add" | "sub" | "mul" | "neg" | "mulScalar" | "copy";

/** Threads per workgroup of every kernel here (WebGPU guarantees 256 invocations). */
export const POINTWISE_WORKGROUP = 256;

/** Words of the uniform U (a multiple of 4: uniform buffers are 16-byte aligned). */
export const POINTWISE_UNIFORM_WORDS = 8;

const UNIFORMS = /* wgsl */ `
struct U {
  n: u32, rowThreads: u32, strideA: u32, strideB: u32,
  factorF: f32, factorI: i32, factorIsInt: u32, partials: u32,
}`;

const BINARY: Partial<Record<ElementwiseOp, string>> = { add: "+", sub: "-", mul: "*" };

function scalarType(dtype: DType): string {
  return dtype === "i32" ? "i32" : "f32";
}

/** The storage element type of a dtype's buffer. */
function storageType(dtype: DType): string {
  return dtype === "f16" ? "u32" : scalarType(dtype);
}

/** `fn ld_NAME(i) -> T`: element i of buffer NAME as its math type. */
function loader(name: string, dtype: DType): string {
  const body = dtype === "f16" ? `unpack2x16float(${name}[i >> 1u])[i & 1u]` : `${name}[i]`;
  return `fn ld_${name}(i: u32) -> ${scalarType(dtype)} { return ${body}; }`;
}

/** The expression of one element, reading `x` (and `y` for binary ops). */
function body(op: ElementwiseOp, dtype: DType): string {
  const sym = BINARY[op];
  if (sym) return `x ${sym} y`;
  if (op === "neg") return "-x";
  if (op === "copy") return "x";
  // mulScalar: an i32 tensor times an integer stays integer (wrapping like the CPU's Int32Array store);
  // a fractional factor goes through f32 and truncates toward zero
  return dtype === "i32" ? "select(i32(f32(x) * u.factorF), x * u.factorI, u.factorIsInt != 0u)" : "x * u.factorF";
}

export function isBinary(op: ElementwiseOp): boolean {
  return BINARY[op] !== undefined;
}

/**
 * `out[i] = op(a[i·strideA], b[i·strideB])`. Bindings: a, (b,) out, U.
 */
export function elementwiseWgsl(op: ElementwiseOp, dtype: DType, inDtype: DType = dtype): string {
  const binary = isBinary(op);
  const outBinding = binary ? 2 : 1;
  const el = (i: string) => `let x = ld_a(${i} * u.strideA);${binary ? ` let y = ld_b(${i} * u.strideB);` : ""}`;
  // an f16 output: thread i writes the word of elements 2i and 2i + 1 (the second past n is written as 0)
  const main = dtype === "f16"
    ? `  let w = g.y * u.rowThreads + g.x;
  let i0 = 2u * w;
  if (i0 >= u.n) { return; }
  var r = vec2<f32>(0.0);
  { ${el("i0")} r.x = f32(${body(op, dtype)}); }
  if (i0 + 1u < u.n) { let i1 = i0 + 1u; ${el("i1")} r.y = f32(${body(op, dtype)}); }
  out[w] = pack2x16float(r);`
    : `  let i = g.y * u.rowThreads + g.x;
  if (i >= u.n) { return; }
  ${el("i")}
  out[i] = ${scalarType(dtype)}(${body(op, dtype)});`;
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> a: array<${storageType(inDtype)}>;
${binary ? `@group(0) @binding(1) var<storage, read> b: array<${storageType(inDtype)}>;` : ""}
@group(0) @binding(${outBinding}) var<storage, read_write> out: array<${storageType(dtype)}>;
@group(0) @binding(${outBinding + 1}) var<uniform> u: U;
${loader("a", inDtype)}
${binary ? loader("b", inDtype) : ""}

@compute @workgroup_size(${POINTWISE_WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3u) {
${main}
}
`;
}

/** Elements one thread of `elementwiseWgsl` writes (an f16 output: a word of two). */
export function elementsPerThread(dtype: DType): number { return dtype === "f16" ? 2 : 1; }

/** The workgroup tree reduction of `acc` (one value per thread) into `tree[0]`, shared by both passes. */
function treeReduce(): string {
  return /* wgsl */ `
  tree[t] = acc;
  workgroupBarrier();
  for (var half = ${POINTWISE_WORKGROUP / 2}u; half > 0u; half = half / 2u) {
    if (t < half) { tree[t] = tree[t] + tree[t + half]; }
    workgroupBarrier();
  }`;
}

/**
 * First pass of `sum`: workgroup w's threads add the elements w·256 + t, + W·256, + 2·W·256, … (a fixed
 * order for a given n and W), then reduce to `partials[w]`. Bindings: a, partials (scratch), U.
 */
export function sumPartialsWgsl(dtype: DType): string {
  const T = scalarType(dtype);
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read> a: array<${storageType(dtype)}>;
@group(0) @binding(1) var<storage, read_write> partials: array<${T}>;
@group(0) @binding(2) var<uniform> u: U;
${loader("a", dtype)}

var<workgroup> tree: array<${T}, ${POINTWISE_WORKGROUP}>;

@compute @workgroup_size(${POINTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = l.x;
  let step = u.partials * ${POINTWISE_WORKGROUP}u;
  var acc: ${T} = ${T}(0);
  for (var i = wg.x * ${POINTWISE_WORKGROUP}u + t; i < u.n; i += step) { acc += ld_a(i); }
  ${treeReduce()}
  if (t == 0u) { partials[wg.x] = tree[0]; }
}
`;
}

/** Second pass of `sum`: one workgroup reduces the W partials to `out[0]`. Bindings: partials, out, U. */
export function sumFinalWgsl(dtype: DType): string {
  const T = scalarType(dtype);
  return /* wgsl */ `${UNIFORMS}
@group(0) @binding(0) var<storage, read_write> partials: array<${T}>;
@group(0) @binding(1) var<storage, read_write> out: array<${storageType(dtype)}>;
@group(0) @binding(2) var<uniform> u: U;

var<workgroup> tree: array<${T}, ${POINTWISE_WORKGROUP}>;

@compute @workgroup_size(${POINTWISE_WORKGROUP})
fn main(@builtin(local_invocation_id) l: vec3u) {
  let t = l.x;
  var acc: ${T} = ${T}(0);
  for (var i = t; i < u.partials; i += ${POINTWISE_WORKGROUP}u) { acc += partials[i]; }
  ${treeReduce()}
  if (t == 0u) { out[0] = ${dtype === "f16" ? "pack2x16float(vec2<f32>(tree[0], 0.0))" : "tree[0]"}; }
}
`;
}
