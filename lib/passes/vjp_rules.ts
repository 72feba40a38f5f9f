/**
 * The reverse-mode rule of every Tensor op, as a table total over the op registry (`satisfies VjpTable`:
 * a new op without a rule does not compile).
 * A rule gets the node, its output cotangent `g` and a context, and returns one cotangent per input
 * (null: none or not needed). Broadcast operands get their cotangent summed back to their shape.
 */
import { constant, type Op, type Tensor } from "../tensor/tensor.ts";
import { add, cast, expand, mulScalar, neg, reshape } from "../tensor/ops.ts";
import { TENSOR_VJP_RULES } from "./vjp_tensor_ops.ts";
import { f32Call, type FlexCall, flexNodes } from "../attention/flex_attention.ts";
import "../attention/baselines.ts"; // registers denseAttention (its rule is below)
import "../blockmask/mask_blocks.ts"; // registers maskBlocks
import "../blockmask/block_tables.ts"; // registers blockTables
import { GradError } from "../errors.ts";
import { flexGradNode, type FlexBwd } from "./flex_grad.ts";

/** Every op has a rule (some say "no gradient" or refuse with a typed error). */
export type DiffOp = Op;

export interface VjpContext {
  /** Whether input `i` of the node needs a cotangent (it leads to a differentiated input). */
  readonly needs: (i: number) => boolean;
  /** The complete cotangent of a node (undefined: zero / not reached). */
  readonly cotangentOf: (t: Tensor) => Tensor | undefined;
}

export type VjpRule<O extends Op = Op> = (node: Tensor<O>, g: Tensor, ctx: VjpContext) => readonly (Tensor | null)[];

export type VjpTable = { readonly [O in Op]: VjpRule<O> };

function zerosLike(t: Tensor): Tensor {
  return constant(new Float32Array(t.size), t.shape, "f32");
}

const noGradient: VjpRule = (node) => node.inputs.map(() => null);

/**
 * flexOut and flexLse of one call share one backward: the rule runs once per call (the driver calls it
 * when both outputs' cotangents are complete) and builds one flexGrad node per needed gradient.
 * Inputs of the forward nodes: [q, k, v, ...block tables, ...scoreMod captures, ...maskMod captures].
 */
const flexRule: VjpRule<"flexOut" | "flexLse"> = (node, _g, ctx) => {
  const call: FlexCall = node.arg;
  const { out, lse } = flexNodes(call);
  // the backward runs in f32 (f16 inputs: f32 math on their values); gradients return in the inputs' dtypes
  const dOut = ctx.cotangentOf(out);
  const dLse = ctx.cotangentOf(lse) ?? null;
  // f16 inputs: the backward runs the call's f32 twin (f32 copies of q, k, v) and reads the twin's own out and
  // lse for Δ = rowsum(dO∘O): the f16-rounded out would spoil Δ on peaked rows (the fuzzer found it)
  const twin = f32Call(call);
  const fwd = twin === call ? { out, lse } : flexNodes(twin);
  const nScore = call.scoreMod.captures.length;
  const firstCapture = node.inputs.length - nScore - call.blockMask.tracedMask.captures.length;
  // the capture gradients asked for: with none, the backward may run a family without them (the tensor family)
  const capGradSlots = call.scoreMod.captures.flatMap((c, s) => c.dtype === "f32" && ctx.needs(firstCapture + s) ? [s] : []);
  const bwd: FlexBwd = {
    call: twin, out: fwd.out, lse: fwd.lse,
    dOut: dOut ? cast(dOut, "f32") : zerosLike(out), dLse: dLse ? cast(dLse, "f32") : null, capGradSlots,
  };
  if (node.inputs[0] !== call.q || node.inputs[1] !== call.k || node.inputs[2] !== call.v ||
    call.scoreMod.captures.some((c, s) => node.inputs[firstCapture + s] !== c)) {
    throw new GradError({ message: "flex attention node: its inputs are not laid out as flexNodes() builds them" });
  }
  return node.inputs.map((_, i) => {
    if (!ctx.needs(i)) return null;
    if (i === 0) return cast(flexGradNode(bwd, "dq"), call.q.dtype);
    if (i === 1) return cast(flexGradNode(bwd, "dk"), call.k.dtype);
    if (i === 2) return cast(flexGradNode(bwd, "dv"), call.v.dtype);
    const slot = i - firstCapture;
    if (slot >= 0 && slot < nScore && call.scoreMod.captures[slot].dtype === "f32") return flexGradNode(bwd, `dcap:${slot}`);
    return null; // block tables, mask-mod captures: no gradient
  });
};

export const VJP_RULES = {
  // a constant is a leaf
  const: noGradient,
  // d(−a) = −g
  neg: (_n, g) => [neg(g)],
  // d(c·a) = c·g
  mulScalar: (n, g) => [mulScalar(g, n.arg)],
  // d Σa = g broadcast to a's shape
  sum: (n, g) => [expand(g, n.inputs[0].shape)],
  // reshape is a relabeling: reshape g back
  reshape: (n, g) => [reshape(g, n.inputs[0].shape)],
  flexOut: flexRule,
  flexLse: flexRule,
  // maxScore is a constant to autodiff (as PyTorch's max_scores): no gradient flows through it
  flexMaxScore: noGradient,
  // second order would need the derivative of the backward itself
  flexGrad: () => {
    throw new GradError({ message: "differentiating a flex attention gradient (second order) is not supported" });
  },
  flexGradPart: () => {
    throw new GradError({ message: "differentiating a flex attention gradient (second order) is not supported" });
  },
  // d cast(a) = cast(g) back to a's dtype
  cast: (n, g) => [cast(g, n.inputs[0].dtype)],
  // i32 block states: no gradient flows through them
  maskBlocks: noGradient,
  blockTables: noGradient,
  // a probe measures hardware
  fmaProbe: noGradient,
  denseAttention: () => {
    throw new GradError({
      message: "denseAttention is the unfused benchmark baseline and has no backward; differentiate flexAttention instead",
    });
  },
  // the tensor ops, and the broadcasting add / sub / mul / expand (lib/passes/vjp_tensor_ops.ts)
  ...TENSOR_VJP_RULES,
} satisfies VjpTable;

export function ruleFor(op: string): VjpRule {
  const rule = (VJP_RULES as Readonly<Record<string, VjpRule | undefined>>)[op];
  if (!rule) throw new GradError({ message: `autodiff: no derivative rule for tensor op "${op}"` });
  return rule;
}

/** Sum of two cotangents of the same node. */
export function accumulate(prev: Tensor | undefined, part: Tensor): Tensor {
  return prev ? add(prev, part) : part;
}
