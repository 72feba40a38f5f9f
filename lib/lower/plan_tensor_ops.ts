/**
 * Lowering of the tensor ops to three generic kernels:
 *
 *   kernels/strided.ts  every elementwise op (the broadcasting add … where, exp / log / tanh, neg,
 *                       mulScalar), every cast, and the copies (reshape, expand, transpose, repeat,
 *                       repeatInterleave, gather) through per-input index maps; scatterAdd beside it
 *   kernels/reduce.ts   sumDim / maxDim / logsumexp over any set of dims
 *   kernels/matmul.ts   batched matmul (a transposed operand — a `transpose` node of the last two dims — is
 *                       read in place through its source's strides, so q @ kᵀ copies nothing)
 *
 * One kernel per (expression, dtypes): shapes, strides and factors are uniforms. Before filling the
 * uniform the planner drops size-1 dims and merges dims that are contiguous for every input, so most
 * launches run at rank 1 or 2 (and ranks up to 6 remain after merging).
 */
import { type DType, isOp, type Tensor } from "../tensor/tensor.ts";
import type { TensorOp } from "../tensor/tensor_ops.ts";
import { broadcastStrides, contiguousStrides, sizeOf } from "../tensor/shape.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "./plan.ts";
import type { Lowering } from "./plan_node.ts";
import { InvalidArgument } from "../errors.ts";
import { FLEX_TANH_WGSL } from "./wgsl_expr.ts";
import {
  inputBase,
  mathType,
  NO_MOD,
  SCATTER_UNIFORM_WORDS,
  scatterAddWgsl,
  STRIDED_MAX_INPUTS,
  STRIDED_MAX_RANK,
  stridedUniformWords,
  STRIDED_WORKGROUP,
  stridedWgsl,
  SU,
} from "../../kernels/strided.ts";
import { REDUCE_MAX_LANES, REDUCE_UNIFORM_WORDS, REDUCE_WORKGROUP, type ReduceKind, reduceWgsl } from "../../kernels/reduce.ts";
import { MATMUL_TILE, MATMUL_UNIFORM_WORDS, matmulWgsl, packF16Wgsl } from "../../kernels/matmul.ts";

/** How one input is read at each output dim. */
interface InputMap {
  readonly strides: readonly number[];
  readonly divs?: readonly number[];
  readonly mods?: readonly number[];
}

interface Dim { size: number; maps: { stride: number; div: number; mod: number }[] }

/** Drops size-1 dims and merges neighbours that are contiguous (no div / mod) for every input. */
function coalesce(shape: readonly number[], maps: readonly InputMap[]): Dim[] {
  const dims: Dim[] = [];
  shape.forEach((size, d) => {
    if (size === 1) return;
    dims.push({ size, maps: maps.map((m) => ({ stride: m.strides[d], div: m.divs?.[d] ?? 1, mod: m.mods?.[d] ?? NO_MOD })) });
  });
  const out: Dim[] = [];
  for (const dim of dims) {
    const prev = out[out.length - 1];
    const plain = (x: { div: number; mod: number }) => x.div === 1 && x.mod === NO_MOD;
    if (prev && prev.maps.every((p, k) => plain(p) && plain(dim.maps[k]) && p.stride === dim.maps[k].stride * dim.size)) {
      prev.size *= dim.size;
      prev.maps.forEach((p, k) => { p.stride = dim.maps[k].stride; });
    } else out.push({ size: dim.size, maps: dim.maps.map((m) => ({ ...m })) });
  }
  return out;
}

/** Workgroups for `threads` threads of `perGroup`, split over x and y past the per-dimension limit. */
function grid(threads: number, perGroup: number, caps: Capabilities, what: string): { workgroups: [number, number, number]; rowGroups: number } {
  const groups = Math.max(1, Math.ceil(threads / perGroup));
  const x = Math.min(groups, caps.limits.maxComputeWorkgroupsPerDimension);
  const y = Math.ceil(groups / x);
  if (y > caps.limits.maxComputeWorkgroupsPerDimension) {
    throw new InvalidArgument({ message: `${what}: ${threads} threads exceed the device's dispatch limits` });
  }
  return { workgroups: [x, y, 1], rowGroups: x };
}

interface StridedOptions {
  readonly factor?: number;
  readonly gather?: { readonly len: number; readonly stride: number };
  readonly prelude?: string;
  readonly helpers?: string;
}

function stridedLaunch(node: Tensor, name: string, expr: string, inputs: readonly { tensor: Tensor; map: InputMap }[], caps: Capabilities, opt: StridedOptions = {}): NodePlan {
  const n = node.size;
  const dims = n === 0 ? [] : coalesce(node.shape, inputs.map((i) => i.map));
  if (dims.length > STRIDED_MAX_RANK) {
    throw new InvalidArgument({ message: `${node.op}: ${node} needs ${dims.length} dims after merging contiguous ones; the GPU kernels support ${STRIDED_MAX_RANK}` });
  }
  const perThread = node.dtype === "f16" ? 2 : 1;
  const { workgroups, rowGroups } = grid(Math.ceil(n / perThread), STRIDED_WORKGROUP, caps, node.op);
  const u = new Uint32Array(stridedUniformWords(inputs.length));
  const f = new Float32Array(u.buffer), i32 = new Int32Array(u.buffer);
  u[SU.n] = n;
  u[SU.rowThreads] = rowGroups * STRIDED_WORKGROUP;
  u[SU.rank] = dims.length;
  const factor = opt.factor ?? 1;
  u[SU.factorIsInt] = Number.isInteger(factor) ? 1 : 0;
  f[SU.factorF] = factor;
  i32[SU.factorI] = factor | 0;
  u[SU.gatherLen] = opt.gather?.len ?? 0;
  u[SU.gatherStride] = opt.gather?.stride ?? 0;
  dims.forEach((dim, d) => {
    u[SU.shape + d] = dim.size;
    dim.maps.forEach((m, k) => {
      u[inputBase(k) + d] = m.stride;
      u[inputBase(k) + 8 + d] = m.div;
      u[inputBase(k) + 16 + d] = m.mod;
    });
  });
  const dtypes = inputs.map((i) => i.tensor.dtype);
  const gather = opt.gather !== undefined;
  const launch: KernelLaunch = {
    label: `pointwise.${name}.${[...new Set(dtypes)].join(",")}${dtypes.every((d) => d === node.dtype) ? "" : `→${node.dtype}`}`,
    code: stridedWgsl({ inputs: dtypes, out: node.dtype, expr, gather, prelude: opt.prelude, helpers: opt.helpers }),
    entryPoint: "main",
    bindings: [
      ...inputs.map((i): Binding => ({ kind: "input", tensor: i.tensor })),
      { kind: "output", tensor: node },
      { kind: "uniform", data: u },
      ...(gather ? [{ kind: "scratch", name: "err", bytes: 4 } as const] : []),
    ],
    workgroups,
  };
  return { defines: [node], launches: [launch], checks: gather ? [{ scratch: "err", fail: () => indexOutOfRange(node) }] : [] };
}

function indexOutOfRange(node: Tensor): InvalidArgument {
  return new InvalidArgument({
    message: `${node.op}(): an index value is out of range for dim ${String(node.arg)} (expected 0 ≤ index < the size of that dim)`,
  });
}

/** Input `t` broadcast to the node's shape. */
function bcast(node: Tensor, t: Tensor): { tensor: Tensor; map: InputMap } {
  return { tensor: t, map: { strides: broadcastStrides(t.shape, node.shape) } };
}

/** The WGSL of each fusible elementwise op over its operands' expressions (math types). */
const EXPRS = {
  add: ([a, b]) => `(${a} + ${b})`,
  sub: ([a, b]) => `(${a} - ${b})`,
  mul: ([a, b]) => `(${a} * ${b})`,
  div: ([a, b]) => `(${a} / ${b})`,
  neg: ([a]) => `(-${a})`,
  exp: ([a]) => `exp(${a})`,
  log: ([a]) => `log(${a})`,
  // the score mods' flex_tanh (lib/lower/wgsl_expr.ts): relatively accurate near 0 (an odd polynomial below 1/4;
  // WGSL's builtin was 19 % off at 1e-7 on llvmpipe), one exp2 that never overflows above
  tanh: ([a]) => `flex_tanh(${a})`,
  eq: ([a, b]) => `select(0i, 1i, ${a} == ${b})`,
  ne: ([a, b]) => `select(0i, 1i, ${a} != ${b})`,
  lt: ([a, b]) => `select(0i, 1i, ${a} < ${b})`,
  le: ([a, b]) => `select(0i, 1i, ${a} <= ${b})`,
  gt: ([a, b]) => `select(0i, 1i, ${a} > ${b})`,
  ge: ([a, b]) => `select(0i, 1i, ${a} >= ${b})`,
  and: ([a, b]) => `select(0i, 1i, ${a} != 0i && ${b} != 0i)`,
  or: ([a, b]) => `select(0i, 1i, ${a} != 0i || ${b} != 0i)`,
  not: ([a]) => `select(0i, 1i, ${a} == 0i)`,
  where: ([c, a, b]) => `select(${b}, ${a}, ${c} != 0i)`,
  // a conversion is the target type's constructor (applied to every node's value below)
  cast: ([a]) => a,
  expand: ([a]) => a,
} satisfies Record<string, (x: readonly string[]) => string>;

type FusibleOp = keyof typeof EXPRS;
const isFusible = (t: Tensor): t is Tensor<FusibleOp> => Object.hasOwn(EXPRS, t.op);

/** Most elementwise nodes inlined into one launch (shared ones become one `let`). */
export const MAX_FUSED_NODES = 12;

/**
 * An elementwise node, fused with the elementwise nodes that produce its inputs (inductor-style: a
 * producer used elsewhere too is recomputed there; reductions, matmuls, copies with div / mod maps and
 * constants stay launch inputs). The chain becomes one expression over at most STRIDED_MAX_INPUTS leaves,
 * each read through the composition of the broadcasts on its way to the output; every intermediate is
 * converted to its node's dtype exactly as if stored (an f16 one is rounded to binary16), so the fused
 * launch computes the values of the unfused graph.
 */
function planElementwise(node: Tensor<FusibleOp>, caps: Capabilities): NodePlan {
  type Proj = readonly number[]; // per output dim: the tensor's dim read there, or −1 (broadcast)
  let leaves: { tensor: Tensor; proj: Proj }[] = [];
  let lets: string[] = [];
  let memo = new Map<string, string>();
  let fused = 0;
  const projOf = (t: Tensor, parent: Proj, parentRank: number): Proj =>
    parent.map((j) => {
      const k = j < 0 ? -1 : j - (parentRank - t.rank);
      return k < 0 || t.shape[k] === 1 ? -1 : k;
    });
  const leaf = (t: Tensor, proj: Proj): string => {
    let i = leaves.findIndex((l) => l.tensor === t && l.proj.join() === proj.join());
    if (i < 0) { i = leaves.length; leaves.push({ tensor: t, proj }); }
    return `x${i}`;
  };
  // leaf slots the operands still to be visited (of every node on the current path) may need
  let reserve = 0;
  const operandsOf = (t: Tensor, proj: Proj): string[] =>
    t.inputs.map((u, i) => {
      const later = t.inputs.length - 1 - i;
      reserve += later;
      const x = ref(u, projOf(u, proj, t.rank));
      reserve -= later;
      return x;
    });
  const ref = (t: Tensor, proj: Proj): string => {
    const key = `${t.id}|${proj.join()}`;
    const hit = memo.get(key);
    if (hit) return hit;
    if (isFusible(t) && fused < MAX_FUSED_NODES) {
      const saved = { leaves: [...leaves], lets: [...lets], memo: new Map(memo), fused };
      fused++;
      const e = EXPRS[t.op](operandsOf(t, proj));
      if (leaves.length + reserve <= STRIDED_MAX_INPUTS) {
        const name = `t${lets.length}`;
        lets.push(t.dtype === "f16" ? `let ${name} = f16r(f32(${e}));` : `let ${name} = ${mathType(t.dtype)}(${e});`);
        memo.set(key, name);
        return name;
      }
      ({ leaves, lets, memo, fused } = saved); // too many leaves: keep t as an input
    }
    return leaf(t, proj);
  };
  const identity = node.shape.map((_, d) => d);
  const expr = EXPRS[node.op](operandsOf(node, identity));
  if (leaves.length > STRIDED_MAX_INPUTS) {
    throw new InvalidArgument({ message: `${node.op}: ${node} has more than ${STRIDED_MAX_INPUTS} inputs` });
  }
  const inputs = leaves.map(({ tensor, proj }) => {
    const s = contiguousStrides(tensor.shape);
    return { tensor, map: { strides: proj.map((k) => (k < 0 ? 0 : s[k])) } };
  });
  const name = fused === 0 ? (node.op === "expand" ? "copy" : node.op) : `fused.${node.op}`;
  const prelude = lets.join("\n  ");
  const helpers = /\bflex_tanh\(/.test(prelude + expr) ? FLEX_TANH_WGSL : undefined;
  return stridedLaunch(node, name, expr, inputs, caps, { prelude, helpers });
}

const elementwise = { plan: planElementwise };
const isInt = (d: DType) => d === "i32" || d === "bool";

const reduceKind = { sumDim: "sum", maxDim: "max", logsumexp: "lse" } as const satisfies Record<string, ReduceKind>;

function planReduce(node: Tensor<"sumDim" | "maxDim" | "logsumexp">, caps: Capabilities): NodePlan {
  const input = node.inputs[0];
  const s = contiguousStrides(input.shape);
  const { dims } = node.arg;
  const pick = (reduced: boolean) =>
    coalesce(input.shape.map((n, d) => (dims.includes(d) === reduced ? n : 1)), [{ strides: s }]);
  const kept = pick(false), red = pick(true);
  if (kept.length > 6 || red.length > 6) throw new InvalidArgument({ message: `${node.op}: ${node} has too many non-contiguous dims for the GPU kernel (6 each)` });
  const nOut = node.size;
  const redSize = red.reduce((a, d) => a * d.size, 1);
  const contiguous = red.length > 0 && red[red.length - 1].maps[0].stride === 1;
  const lanes = (contiguous && redSize >= 16) || (redSize >= 512 && nOut < 8192) ? REDUCE_MAX_LANES : 1;
  const perGroup = REDUCE_WORKGROUP / lanes;
  const { workgroups, rowGroups } = grid(nOut, perGroup, caps, node.op);
  const u = new Uint32Array(REDUCE_UNIFORM_WORDS);
  u[0] = nOut; u[1] = rowGroups; u[2] = kept.length; u[3] = red.length; u[4] = redSize; u[5] = lanes;
  kept.forEach((d, i) => { u[8 + i] = d.size; u[16 + i] = d.maps[0].stride; });
  red.forEach((d, i) => { u[24 + i] = d.size; u[32 + i] = d.maps[0].stride; });
  const kind = reduceKind[node.op];
  return {
    defines: [node],
    checks: [],
    launches: [{
      label: `reduce.${kind}.${input.dtype}${input.dtype === node.dtype ? "" : `→${node.dtype}`}`,
      code: reduceWgsl(kind, input.dtype, node.dtype),
      entryPoint: "main",
      bindings: [{ kind: "input", tensor: input }, { kind: "output", tensor: node }, { kind: "uniform", data: u }],
      workgroups,
    }],
  };
}

/** A matmul operand as (buffer, row / col strides): a transpose of the last two dims is read in place. */
function operandView(x: Tensor): { tensor: Tensor; row: number; col: number } {
  const [rows, cols] = x.shape.slice(-2);
  if (isOp(x, "transpose")) {
    const [a, b] = x.arg;
    if (a === x.rank - 2 && b === x.rank - 1) return { tensor: x.inputs[0], row: 1, col: rows };
  }
  return { tensor: x, row: cols, col: 1 };
}

function planMatmul(node: Tensor<"matmul">, caps: Capabilities): NodePlan {
  const [A, B] = node.inputs;
  const [M, K] = A.shape.slice(-2), N = B.shape[B.rank - 1];
  const batch = node.shape.slice(0, -2);
  const count = sizeOf(batch);
  const maxDim = caps.limits.maxComputeWorkgroupsPerDimension;
  if (count > maxDim) throw new InvalidArgument({ message: `matmul: ${count} batch elements exceed the device's ${maxDim} workgroups per dimension` });
  const a = operandView(A), b = operandView(B);
  const u = new Uint32Array(MATMUL_UNIFORM_WORDS);
  u[0] = M; u[1] = N; u[2] = K; u[3] = batch.length;
  const aS = broadcastStrides(A.shape.slice(0, -2), batch), bS = broadcastStrides(B.shape.slice(0, -2), batch);
  batch.forEach((n, d) => { u[4 + d] = n; u[8 + d] = aS[d] * M * K; u[12 + d] = bS[d] * K * N; });
  u[16] = a.row; u[17] = a.col; u[18] = b.row; u[19] = b.col;
  const f16 = node.dtype === "f16";
  const target: Binding = f16 ? { kind: "scratch", name: "mm", bytes: Math.max(4, node.size * 4) } : { kind: "output", tensor: node };
  const launches: KernelLaunch[] = [{
    label: `matmul.${A.dtype}`,
    code: matmulWgsl(A.dtype),
    entryPoint: "main",
    bindings: [{ kind: "input", tensor: a.tensor }, { kind: "input", tensor: b.tensor }, target, { kind: "uniform", data: u }],
    workgroups: [Math.ceil(N / MATMUL_TILE), Math.ceil(M / MATMUL_TILE), count],
  }];
  if (f16) {
    const { workgroups, rowGroups } = grid(Math.ceil(node.size / 2), 256, caps, "matmul");
    launches.push({
      label: "matmul.pack.f16",
      code: packF16Wgsl(),
      entryPoint: "main",
      bindings: [target, { kind: "output", tensor: node }, { kind: "uniform", data: new Uint32Array([node.size, rowGroups * 256, 0, 0]) }],
      workgroups,
    });
  }
  return { defines: [node], checks: [], launches };
}

function planScatterAdd(node: Tensor<"scatterAdd">, caps: Capabilities): NodePlan {
  const [src, index] = node.inputs;
  const dim = node.arg;
  if (node.rank > 6) throw new InvalidArgument({ message: `scatterAdd: rank ${node.rank} exceeds the GPU kernel's 6` });
  const perThread = node.dtype === "f16" ? 2 : 1;
  const { workgroups, rowGroups } = grid(Math.ceil(node.size / perThread), STRIDED_WORKGROUP, caps, "scatterAdd");
  const u = new Uint32Array(SCATTER_UNIFORM_WORDS);
  const is = contiguousStrides(index.shape);
  u[0] = node.size; u[1] = rowGroups * STRIDED_WORKGROUP; u[2] = node.rank; u[3] = dim; u[4] = index.shape[dim];
  node.shape.forEach((n, d) => { u[8 + d] = n; u[16 + d] = index.shape[d]; u[24 + d] = is[d]; });
  return {
    defines: [node],
    checks: [{ scratch: "err", fail: () => indexOutOfRange(node) }],
    launches: [{
      label: `pointwise.scatterAdd.${node.dtype}`,
      code: scatterAddWgsl(node.dtype),
      entryPoint: "main",
      bindings: [
        { kind: "input", tensor: src }, { kind: "input", tensor: index }, { kind: "output", tensor: node },
        { kind: "uniform", data: u }, { kind: "scratch", name: "err", bytes: 4 },
      ],
      workgroups,
    }],
  };
}

const contiguous = (t: Tensor, shape: readonly number[]) => ({ tensor: t, map: { strides: contiguousStrides(shape) } });

/** The lowerings of the tensor ops and of the glue ops they generalize (add sub mul neg mulScalar reshape expand cast). */
export const TENSOR_LOWERINGS = {
  add: elementwise, sub: elementwise, mul: elementwise, div: elementwise, neg: elementwise,
  mulScalar: {
    plan: (node, caps) => {
      // an i32 tensor times an integer stays integer (wrapping); a fractional factor goes through f32 (truncating)
      const expr = isInt(node.dtype)
        ? `select(i32(f32(x0) * bitcast<f32>(uw(${SU.factorF}u))), x0 * bitcast<i32>(uw(${SU.factorI}u)), uw(${SU.factorIsInt}u) != 0u)`
        : `x0 * bitcast<f32>(uw(${SU.factorF}u))`;
      return stridedLaunch(node, "mulScalar", expr, [bcast(node, node.inputs[0])], caps, { factor: node.arg });
    },
  },
  exp: elementwise, log: elementwise, tanh: elementwise,
  eq: elementwise, ne: elementwise, lt: elementwise, le: elementwise, gt: elementwise, ge: elementwise,
  and: elementwise, or: elementwise, not: elementwise, where: elementwise, cast: elementwise, expand: elementwise,
  reshape: { plan: (node, caps) => stridedLaunch(node, "copy", "x0", [contiguous(node.inputs[0], node.shape)], caps) },
  transpose: {
    plan: (node, caps) => {
      const s = contiguousStrides(node.inputs[0].shape);
      const [a, b] = node.arg;
      [s[a], s[b]] = [s[b], s[a]];
      return stridedLaunch(node, "copy", "x0", [{ tensor: node.inputs[0], map: { strides: s } }], caps);
    },
  },
  repeat: {
    plan: (node, caps) => {
      const x = node.inputs[0];
      const padded = [...new Array(node.rank - x.rank).fill(1), ...x.shape];
      const mods = padded.map((n, d) => (node.arg[d] === 1 ? NO_MOD : n));
      return stridedLaunch(node, "copy", "x0", [{ tensor: x, map: { strides: contiguousStrides(padded), mods } }], caps);
    },
  },
  repeatInterleave: {
    plan: (node, caps) => {
      const x = node.inputs[0];
      const divs = x.shape.map((_, d) => (d === node.arg.dim ? Math.max(1, node.arg.repeats) : 1));
      return stridedLaunch(node, "copy", "x0", [{ tensor: x, map: { strides: contiguousStrides(x.shape), divs } }], caps);
    },
  },
  gather: {
    plan: (node, caps) => {
      const [x, index] = node.inputs;
      const dim = node.arg;
      const s = contiguousStrides(x.shape);
      const strides = s.map((v, d) => (d === dim ? 0 : v));
      return stridedLaunch(node, "gather", "x0", [{ tensor: x, map: { strides } }, contiguous(index, node.shape)], caps, {
        gather: { len: x.shape[dim], stride: s[dim] },
      });
    },
  },
  scatterAdd: { plan: planScatterAdd },
  sumDim: { plan: planReduce },
  maxDim: { plan: planReduce },
  logsumexp: { plan: planReduce },
  matmul: { plan: planMatmul },
} satisfies { readonly [O in TensorOp | "neg" | "mulScalar" | "cast" | "reshape" | "expand" | "add" | "sub" | "mul"]: Lowering<O> };
