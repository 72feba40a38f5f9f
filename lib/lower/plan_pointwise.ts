/**
 * Lowering of the autodiff glue ops (lib/tensor/ops.ts: add, sub, mul, neg, mulScalar, sum, reshape, expand)
 * to the kernels of kernels/pointwise.ts. planNode now sends only `sum` here (and flex plans use
 * `convertLaunch`); the other glue ops go to the strided kernel of plan_tensor_ops.ts, which also
 * broadcasts. One kernel per (op, dtype); sizes, broadcast strides and the mulScalar factor are uniforms,
 * so a new length or factor compiles nothing.
 *
 * reshape is a copy (the executor has no zero-copy aliasing); expand copies its scalar with stride 0.
 * sum is two launches over a scratch of W partials: W = min(⌈n/256⌉, 1024) grid-striding workgroups, then
 * one final workgroup; the order of every addition depends only on n, so the result is deterministic.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { GradTensorOp } from "../tensor/ops.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Binding, KernelLaunch, NodePlan } from "./plan.ts";
import { InvalidArgument } from "../errors.ts";
import {
  elementsPerThread,
  elementwiseWgsl,
  type ElementwiseOp,
  POINTWISE_UNIFORM_WORDS,
  POINTWISE_WORKGROUP,
  sumFinalWgsl,
  sumPartialsWgsl,
} from "../../kernels/pointwise.ts";

/** The ops this file lowers (planNode dispatches exactly these here). */
export const POINTWISE_OPS: readonly GradTensorOp[] = ["add", "sub", "mul", "neg", "mulScalar", "sum", "reshape", "expand", "cast"];

/** Most first-pass workgroups of a sum: enough to fill a GPU, few enough for one final workgroup's loop. */
const MAX_SUM_PARTIALS = 1024;

interface UniformFields {
  n: number;
  rowThreads?: number;
  strideA?: number;
  strideB?: number;
  factor?: number;
  partials?: number;
}

function uniformData(f: UniformFields): Uint32Array {
  const u = new Uint32Array(POINTWISE_UNIFORM_WORDS);
  const factor = f.factor ?? 1;
  u[0] = f.n;
  u[1] = f.rowThreads ?? 0;
  u[2] = f.strideA ?? 1;
  u[3] = f.strideB ?? 1;
  new Float32Array(u.buffer)[4] = factor;
  new Int32Array(u.buffer)[5] = factor | 0; // ToInt32: an integer factor modulo 2³², as i32 arithmetic wraps
  u[6] = Number.isInteger(factor) ? 1 : 0;
  u[7] = f.partials ?? 0;
  return u;
}

/** Workgroups covering `n` threads of 256, split over x and y when x alone would exceed the device's limit. */
function grid(n: number, caps: Capabilities): { workgroups: [number, number, number]; rowThreads: number } {
  const groups = Math.max(1, Math.ceil(n / POINTWISE_WORKGROUP));
  const x = Math.min(groups, caps.limits.maxComputeWorkgroupsPerDimension);
  const y = Math.ceil(groups / x);
  if (y > caps.limits.maxComputeWorkgroupsPerDimension) {
    throw new InvalidArgument({ message: `pointwise: ${n} elements exceed the device's dispatch limits` });
  }
  return { workgroups: [x, y, 1], rowThreads: x * POINTWISE_WORKGROUP };
}

function elementwise(node: Tensor, op: ElementwiseOp, caps: Capabilities, factor?: number): NodePlan {
  const n = node.size;
  const { workgroups, rowThreads } = grid(Math.ceil(n / elementsPerThread(node.dtype)), caps);
  const inDtype = node.inputs[0].dtype;
  // a rank-0 operand (binary scalar broadcast, or expand's input) is read at index 0 for every element
  const stride = (t: Tensor) => (t.rank === 0 ? 0 : 1);
  // only equal shapes or a rank-0 operand here: the executor lowers these ops through plan_tensor_ops.ts (any broadcast)
  if (node.inputs.some((t) => t.rank !== 0 && t.size !== n)) {
    throw new InvalidArgument({ message: `planPointwise: ${node} broadcasts a non-scalar operand; plan it with planNode (plan_tensor_ops.ts)` });
  }
  const [a, b] = node.inputs;
  const inputs: Binding[] = node.inputs.map((t) => ({ kind: "input", tensor: t }));
  const launch: KernelLaunch = {
    label: `pointwise.${op}.${inDtype === node.dtype ? node.dtype : `${inDtype}→${node.dtype}`}`,
    code: elementwiseWgsl(op, node.dtype, inDtype),
    entryPoint: "main",
    bindings: [
      ...inputs,
      { kind: "output", tensor: node },
      { kind: "uniform", data: uniformData({ n, rowThreads, strideA: stride(a), strideB: b ? stride(b) : 1, factor }) },
    ],
    workgroups,
  };
  return { defines: [node], checks: [], launches: [launch] };
}

/** One launch copying (and converting, f16 ⇄ f32) all of `src` into `dst` (same size): lowerings that
 * compute a node through another one (the portable forward of an f16 call through its f32 twin). */
export function convertLaunch(src: Tensor, dst: Tensor, caps: Capabilities): KernelLaunch {
  const n = dst.size;
  const { workgroups, rowThreads } = grid(Math.ceil(n / elementsPerThread(dst.dtype)), caps);
  return {
    label: `pointwise.copy.${src.dtype === dst.dtype ? dst.dtype : `${src.dtype}→${dst.dtype}`}`,
    code: elementwiseWgsl("copy", dst.dtype, src.dtype),
    entryPoint: "main",
    bindings: [{ kind: "input", tensor: src }, { kind: "output", tensor: dst }, { kind: "uniform", data: uniformData({ n, rowThreads }) }],
    workgroups,
  };
}

function sumPlan(node: Tensor): NodePlan {
  const input = node.inputs[0];
  const n = input.size;
  const partials = Math.max(1, Math.min(MAX_SUM_PARTIALS, Math.ceil(n / POINTWISE_WORKGROUP)));
  const uniform: Binding = { kind: "uniform", data: uniformData({ n, partials }) };
  const scratch: Binding = { kind: "scratch", name: "partials", bytes: partials * 4 };
  return {
    defines: [node],
    checks: [],
    launches: [
      {
        label: `pointwise.sumPartials.${node.dtype}`, code: sumPartialsWgsl(node.dtype), entryPoint: "main",
        bindings: [{ kind: "input", tensor: input }, scratch, uniform],
        workgroups: [partials, 1, 1],
      },
      {
        label: `pointwise.sumFinal.${node.dtype}`, code: sumFinalWgsl(node.dtype), entryPoint: "main",
        bindings: [scratch, { kind: "output", tensor: node }, uniform],
        workgroups: [1, 1, 1],
      },
    ],
  };
}

/** The NodePlan of one glue-op node. */
export function planPointwise(node: Tensor, caps: Capabilities): NodePlan {
  switch (node.op) {
    case "add":
    case "sub":
    case "mul":
    case "neg":
      return elementwise(node, node.op as ElementwiseOp, caps);
    case "mulScalar":
      return elementwise(node, "mulScalar", caps, node.arg as number);
    case "reshape":
    case "expand":
    case "cast":
      return elementwise(node, "copy", caps);
    case "sum":
      return sumPlan(node);
    default:
      throw new InvalidArgument({ message: `planPointwise: "${node.op}" is not a pointwise op (${node})` });
  }
}
