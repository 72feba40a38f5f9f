/**
 * Lowering entry point: a computed Tensor node → the NodePlan the GPU executor runs, through `LOWERINGS`,
 * a table total over the op registry (`satisfies LoweringTable`: a new op without a lowering does not
 * compile; each entry sees its own `node.arg` type).
 */
import type { Op, Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { NodePlan } from "./plan.ts";
import type { FlexCall } from "../attention/flex_attention.ts";
import "../attention/baselines.ts"; // registers denseAttention
import { planFlex } from "./plan_flex.ts";
import { planMaskBlocks } from "./plan_mask_blocks.ts";
import { planBlockTables } from "./plan_block_tables.ts";
import { planPointwise } from "./plan_pointwise.ts";
import { TENSOR_LOWERINGS } from "./plan_tensor_ops.ts";
import { planDenseAttention } from "./plan_dense.ts";
import { planFmaProbe } from "./probes.ts";
import { planFlexGrad, planFlexGradPart } from "./plan_flex_grad.ts";
import { InvalidArgument } from "../errors.ts";
import { blockMaskTables } from "../blockmask/block_mask.ts";

export interface Lowering<O extends Op> {
  /** The node's plan; null for constants (uploaded by the executor, no kernel). */
  readonly plan: ((node: Tensor<O>, caps: Capabilities) => NodePlan) | null;
  /**
   * The tensors whose VALUES planning reads on the host (BlockMask tables, captured tensors). Computed ones
   * (a bias produced by other ops, a lazily built BlockMask) are realized by the executor before it plans,
   * and recorded (lib/tensor/host_values.ts), so any tensor may be captured, as in PyTorch.
   */
  readonly hostInputs?: (node: Tensor<O>) => Tensor[];
}

export type LoweringTable = { readonly [O in Op]: Lowering<O> };

/** The BlockMask tables and captured tensors of a call: packed on the host into one kernel buffer. */
function flexHostTensors(call: FlexCall): Tensor[] {
  const m = call.blockMask;
  return [
    ...blockMaskTables(m).filter((t): t is Tensor => t !== null),
    ...(call.scoreMod.captures as unknown as Tensor[]),
    ...(m.tracedMask.captures as unknown as Tensor[]),
  ];
}

const pointwise = { plan: planPointwise };

export const LOWERINGS = {
  const: { plan: null },
  flexOut: { plan: (n, caps) => planFlex(n.arg, caps), hostInputs: (n) => flexHostTensors(n.arg) },
  flexLse: { plan: (n, caps) => planFlex(n.arg, caps), hostInputs: (n) => flexHostTensors(n.arg) },
  flexMaxScore: { plan: (n, caps) => planFlex(n.arg, caps), hostInputs: (n) => flexHostTensors(n.arg) },
  flexGrad: { plan: planFlexGrad, hostInputs: (n) => flexHostTensors(n.arg.bwd.call) },
  flexGradPart: { plan: planFlexGradPart },
  maskBlocks: { plan: planMaskBlocks, hostInputs: (n) => [...n.inputs] },
  blockTables: { plan: planBlockTables },
  // the all-elements sum keeps its two-pass kernel; every other glue op is an instance of the tensor ops' kernels
  sum: pointwise,
  ...TENSOR_LOWERINGS,
  denseAttention: { plan: planDenseAttention },
  fmaProbe: { plan: planFmaProbe },
} satisfies LoweringTable;

function loweringOf(node: Tensor): Lowering<Op> | undefined {
  return (LOWERINGS as Readonly<Record<string, Lowering<Op> | undefined>>)[node.op];
}

/** See `Lowering.hostInputs`. */
export function hostInputs(node: Tensor): Tensor[] {
  return loweringOf(node)?.hostInputs?.(node) ?? [];
}

export function planNode(node: Tensor, caps: Capabilities): NodePlan {
  const plan = loweringOf(node)?.plan;
  if (!plan) {
    throw new InvalidArgument({
      message: `the GPU executor has no kernel for op "${node.op}" (${node}); ` +
        `supported: ${Object.keys(LOWERINGS).filter((k) => k !== "const").join(", ")} (run other graphs on the CPU executor)`,
    });
  }
  return plan(node, caps);
}
