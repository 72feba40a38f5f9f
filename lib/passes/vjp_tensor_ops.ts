/**
 * Reverse-mode rules of the tensor ops (lib/tensor/ops_*.ts) and of the broadcasting add / sub / mul /
 * expand: a broadcast operand's cotangent is summed back to its shape (`sumToShape`).
 *
 *   div        (g / b, −g·out / b)             exp    g·out          log   g / a      tanh  g·(1 − out²)
 *   where      (—, g where cond, g where ¬cond)  comparisons, and / or / not: no gradient (bool results)
 *   sumDim     g broadcast back over the dims   maxDim g split evenly among the tied maxima (torch.amax)
 *   logsumexp  g · exp(a − out)                 softmax: through its composite (max / sub / exp / sum / div)
 *   matmul     (g @ bᵀ, aᵀ @ g), each summed over broadcast batch dims
 *   transpose  transpose(g)                     repeat / repeatInterleave: g summed over the copies
 *   gather     scatterAdd of g (deterministic)  scatterAdd: gather of g
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { TensorOp } from "../tensor/tensor_ops.ts";
import { cast, expand, neg, reshape } from "../tensor/ops.ts";
import { div, eq, exp, mul, sub, whereTensor } from "../tensor/ops_elementwise.ts";
import { reducedShape, sum, sumToShape } from "../tensor/ops_reduce.ts";
import { matmul } from "../tensor/ops_matmul.ts";
import { gather, scatterAdd, transpose } from "../tensor/ops_shape.ts";
import type { VjpRule } from "./vjp_rules.ts";

const none: VjpRule = (node) => node.inputs.map(() => null);

/** g of a reduction's output reshaped to keepdim form (size-1 dims where reduced). */
function keepShape(node: Tensor<"sumDim" | "maxDim" | "logsumexp">, t: Tensor): Tensor {
  const shape = reducedShape(node.inputs[0].shape, { dims: node.arg.dims, keepdim: true });
  return node.arg.keepdim ? t : reshape(t, shape);
}

/** Sums g over the `copies` axes of its view `split` (one copy axis per input dim) back to `shape`. */
function sumCopies(g: Tensor, split: readonly number[], copyAxes: readonly number[], shape: readonly number[]): Tensor {
  const axes = copyAxes.filter((d) => split[d] !== 1);
  const v = reshape(g, split);
  const s = axes.length ? sum(v, axes) : v;
  return reshape(s, shape);
}

export const TENSOR_VJP_RULES = {
  // d(a + b) = (g, g), d(a − b) = (g, −g), d(a·b) = (g·b, g·a), each summed to its operand's shape
  add: (n, g) => [sumToShape(g, n.inputs[0].shape), sumToShape(g, n.inputs[1].shape)],
  sub: (n, g) => [sumToShape(g, n.inputs[0].shape), sumToShape(neg(g), n.inputs[1].shape)],
  mul: (n, g, ctx) => {
    const [a, b] = n.inputs;
    return [ctx.needs(0) ? sumToShape(mul(g, b), a.shape) : null, ctx.needs(1) ? sumToShape(mul(g, a), b.shape) : null];
  },
  div: (n, g, ctx) => {
    const [a, b] = n.inputs;
    return [ctx.needs(0) ? sumToShape(div(g, b), a.shape) : null, ctx.needs(1) ? sumToShape(neg(div(mul(g, n), b)), b.shape) : null];
  },
  exp: (n, g) => [mul(g, n)],
  log: (n, g) => [div(g, n.inputs[0])],
  tanh: (n, g) => [mul(g, sub(1, mul(n, n)))],
  eq: none, ne: none, lt: none, le: none, gt: none, ge: none, and: none, or: none, not: none,
  where: (n, g, ctx) => {
    const [c, a, b] = n.inputs;
    return [
      null,
      ctx.needs(1) ? sumToShape(whereTensor(c, g, 0), a.shape) : null,
      ctx.needs(2) ? sumToShape(whereTensor(c, 0, g), b.shape) : null,
    ];
  },
  // expand copies: its cotangent is summed over the broadcast dims (a scalar's: everything)
  expand: (n, g) => [sumToShape(g, n.inputs[0].shape)],
  sumDim: (n, g) => [expand(keepShape(n, g), n.inputs[0].shape)],
  maxDim: (n, g) => {
    const x = n.inputs[0];
    const hit = eq(x, expand(keepShape(n, n), x.shape));
    const ties = cast(sum(hit, n.arg.dims, { keepdim: true }), x.dtype);
    return [whereTensor(hit, expand(div(keepShape(n, g), ties), x.shape), 0)];
  },
  logsumexp: (n, g) => {
    const x = n.inputs[0];
    return [mul(expand(keepShape(n, g), x.shape), exp(sub(x, expand(keepShape(n, n), x.shape))))];
  },
  matmul: (n, g, ctx) => {
    const [a, b] = n.inputs;
    return [
      ctx.needs(0) ? sumToShape(matmul(g, transpose(b, -1, -2)), a.shape) : null,
      ctx.needs(1) ? sumToShape(matmul(transpose(a, -1, -2), g), b.shape) : null,
    ];
  },
  transpose: (n, g) => [transpose(g, n.arg[0], n.arg[1])],
  repeat: (n, g) => {
    // view g as [r0, s0, r1, s1, …] (s the input's size left-padded with 1s) and sum the r axes
    const x = n.inputs[0];
    const padded = [...new Array(n.rank - x.rank).fill(1), ...x.shape];
    const split = padded.flatMap((s, d) => [n.arg[d], s]);
    return [sumCopies(g, split, padded.map((_, d) => 2 * d), x.shape)];
  },
  repeatInterleave: (n, g) => {
    const x = n.inputs[0];
    const { dim, repeats } = n.arg;
    const split = [...x.shape.slice(0, dim), x.shape[dim], repeats, ...x.shape.slice(dim + 1)];
    return [sumCopies(g, split, [dim + 1], x.shape)];
  },
  gather: (n, g) => [scatterAdd(n.inputs[0].shape, n.arg, n.inputs[1], g), null],
  scatterAdd: (n, g) => [gather(g, n.arg, n.inputs[1]), null],
} satisfies { readonly [O in TensorOp | "add" | "sub" | "mul" | "expand"]: VjpRule<O> };
