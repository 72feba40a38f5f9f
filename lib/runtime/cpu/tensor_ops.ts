/**
 * The CPU oracle's rules for the tensor ops (lib/tensor/ops_elementwise.ts, ops_reduce.ts, ops_matmul.ts,
 * ops_shape.ts, and the broadcasting add / sub / mul / expand): float64 math on the stored input values,
 * stored in the node's dtype (f16 rounds to nearest even, i32 wraps, bool is 0 / 1). Index maps are written
 * out per element: this is the reference, not a fast path.
 */
import type { Op, Tensor, TypedData } from "../../tensor/tensor.ts";
import type { ReduceArg } from "../../tensor/op.ts";
import type { TensorOp } from "../../tensor/tensor_ops.ts";
import { broadcastStrides, contiguousStrides, sizeOf } from "../../tensor/shape.ts";
import { InvalidArgument } from "../../errors.ts";
import { fromValues } from "../../tensor/dtype.ts";
import type { GradCpuOp } from "./grad_ops.ts";

/** Calls `f(coords, flat)` for every element of `shape`, row-major (coords is reused: copy to keep). */
export function forEachCoord(shape: readonly number[], f: (c: readonly number[], flat: number) => void): void {
  const n = sizeOf(shape);
  const c = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    f(c, i);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++c[d] < shape[d]) break;
      c[d] = 0;
    }
  }
}

/** The input offset of every output element under per-output-dim strides. */
function offsets(outShape: readonly number[], strides: readonly number[]): Float64Array {
  const out = new Float64Array(sizeOf(outShape));
  forEachCoord(outShape, (c, i) => {
    let o = 0;
    for (let d = 0; d < c.length; d++) o += c[d] * strides[d];
    out[i] = o;
  });
  return out;
}

type Fn = (...xs: number[]) => number;

/** n-ary elementwise with broadcasting: float64, stored as the node's dtype. */
function elementwise<O extends Op>(f: Fn, i32?: Fn): GradCpuOp<O> {
  return ({ node, inputs }) => {
    const g = node.dtype === "i32" && i32 ? i32 : f;
    const maps = node.inputs.map((t) => offsets(node.shape, broadcastStrides(t.shape, node.shape)));
    const out = new Float64Array(node.size);
    const xs = new Array<number>(inputs.length);
    for (let i = 0; i < out.length; i++) {
      for (let k = 0; k < inputs.length; k++) xs[k] = inputs[k][maps[k][i]];
      out[i] = g(...xs);
    }
    return fromValues(node.dtype, out);
  };
}

const b = (c: boolean) => (c ? 1 : 0);

/** A reduction over arg.dims: `init`, `step(acc, x)` per element, `finish(acc)` per output. */
function reduce(ctx: { node: Tensor<"sumDim" | "maxDim" | "logsumexp">; inputs: readonly TypedData[] }, kind: "sum" | "max" | "lse"): TypedData {
  const { node, inputs } = ctx;
  const input = node.inputs[0], x = inputs[0];
  const arg: ReduceArg = node.arg;
  // output flat index of each input element: contiguous strides of the kept dims, 0 on reduced dims
  const keptShape = input.shape.map((n, d) => (arg.dims.includes(d) ? 1 : n));
  const ks = contiguousStrides(keptShape).map((s, d) => (arg.dims.includes(d) ? 0 : s));
  const o = offsets(input.shape, ks);
  const nOut = sizeOf(keptShape);
  const m = new Float64Array(nOut).fill(kind === "sum" ? 0 : -Infinity);
  for (let i = 0; i < x.length; i++) {
    if (kind === "sum") m[o[i]] += x[i];
    else m[o[i]] = Math.max(m[o[i]], x[i]);
  }
  if (kind === "lse") {
    const s = new Float64Array(nOut);
    for (let i = 0; i < x.length; i++) if (Number.isFinite(m[o[i]])) s[o[i]] += Math.exp(x[i] - m[o[i]]);
    for (let j = 0; j < nOut; j++) if (Number.isFinite(m[j])) m[j] = m[j] + Math.log(s[j]);
  }
  return fromValues(node.dtype, m);
}

function matmulCpu({ node, inputs }: { node: Tensor<"matmul">; inputs: readonly TypedData[] }): TypedData {
  const [A, B] = node.inputs;
  const [M, K] = A.shape.slice(-2), N = B.shape[B.rank - 1];
  const batch = node.shape.slice(0, -2);
  const aOff = offsets(batch, broadcastStrides(A.shape.slice(0, -2), batch).map((s) => s * M * K));
  const bOff = offsets(batch, broadcastStrides(B.shape.slice(0, -2), batch).map((s) => s * K * N));
  const a = inputs[0], bb = inputs[1];
  const out = new Float64Array(node.size);
  for (let z = 0; z < aOff.length; z++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += a[aOff[z] + i * K + k] * bb[bOff[z] + k * N + j];
        out[(z * M + i) * N + j] = acc;
      }
    }
  }
  return fromValues(node.dtype, out);
}

/** A copy through an index map: `inOffset(coords)` for each output coordinate. */
function copyBy<O extends Op>(inOffset: (node: Tensor<O>) => (c: readonly number[]) => number): GradCpuOp<O> {
  return ({ node, inputs }) => {
    const f = inOffset(node);
    const out = new Float64Array(node.size);
    forEachCoord(node.shape, (c, i) => { out[i] = inputs[0][f(c)]; });
    return fromValues(node.dtype, out);
  };
}

function indexError(op: string, v: number, n: number, dim: number): InvalidArgument {
  return new InvalidArgument({ message: `${op}(): index value ${v} is out of range for dim ${dim} of size ${n} (expected 0 ≤ index < ${n})` });
}

export const TENSOR_CPU_OPS = {
  add: elementwise((x, y) => x + y),
  sub: elementwise((x, y) => x - y),
  mul: elementwise((x, y) => x * y, (x, y) => Math.imul(x, y)),
  div: elementwise((x, y) => x / y),
  exp: elementwise(Math.exp),
  log: elementwise(Math.log),
  tanh: elementwise(Math.tanh),
  eq: elementwise((x, y) => b(x === y)),
  ne: elementwise((x, y) => b(x !== y)),
  lt: elementwise((x, y) => b(x < y)),
  le: elementwise((x, y) => b(x <= y)),
  gt: elementwise((x, y) => b(x > y)),
  ge: elementwise((x, y) => b(x >= y)),
  and: elementwise((x, y) => b(x !== 0 && y !== 0)),
  or: elementwise((x, y) => b(x !== 0 || y !== 0)),
  not: elementwise((x) => b(x === 0)),
  where: elementwise((c, x, y) => (c !== 0 ? x : y)),
  // expand: a broadcast read of its one input
  expand: elementwise((x) => x),
  sumDim: (ctx) => reduce(ctx, "sum"),
  maxDim: (ctx) => reduce(ctx, "max"),
  logsumexp: (ctx) => reduce(ctx, "lse"),
  matmul: matmulCpu,
  transpose: copyBy<"transpose">((node) => {
    const s = contiguousStrides(node.inputs[0].shape);
    const [a, bb] = node.arg;
    [s[a], s[bb]] = [s[bb], s[a]];
    return (c) => c.reduce((o, x, d) => o + x * s[d], 0);
  }),
  repeat: copyBy<"repeat">((node) => {
    const inShape = node.inputs[0].shape;
    const padded = [...new Array(node.rank - inShape.length).fill(1), ...inShape];
    const s = contiguousStrides(padded);
    return (c) => c.reduce((o, x, d) => o + (x % padded[d]) * s[d], 0);
  }),
  repeatInterleave: copyBy<"repeatInterleave">((node) => {
    const s = contiguousStrides(node.inputs[0].shape);
    const { repeats, dim } = node.arg;
    return (c) => c.reduce((o, x, d) => o + (d === dim ? Math.floor(x / repeats) : x) * s[d], 0);
  }),
  gather: ({ node, inputs }) => {
    const src = node.inputs[0], dim = node.arg;
    const s = contiguousStrides(src.shape);
    const out = new Float64Array(node.size);
    forEachCoord(node.shape, (c, i) => {
      const v = inputs[1][i];
      if (v < 0 || v >= src.shape[dim]) throw indexError("gather", v, src.shape[dim], dim);
      out[i] = inputs[0][c.reduce((o, x, d) => o + (d === dim ? v : x) * s[d], 0)];
    });
    return fromValues(node.dtype, out);
  },
  scatterAdd: ({ node, inputs }) => {
    const dim = node.arg, idx = node.inputs[1];
    const s = contiguousStrides(node.shape);
    const out = new Float64Array(node.size);
    forEachCoord(idx.shape, (c, i) => {
      const v = inputs[1][i];
      if (v < 0 || v >= node.shape[dim]) throw indexError("scatterAdd", v, node.shape[dim], dim);
      out[c.reduce((o, x, d) => o + (d === dim ? v : x) * s[d], 0)] += inputs[0][i];
    });
    return fromValues(node.dtype, out);
  },
} satisfies { readonly [O in TensorOp | "add" | "sub" | "mul" | "expand"]: GradCpuOp<O> };
