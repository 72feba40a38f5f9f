/**
 * Lowering entry point: a computed Tensor node → the NodePlan the GPU executor runs.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { NodePlan } from "./plan.ts";
import type { FlexCall } from "../attention/flex_attention.ts";
import { planFlex } from "./plan_flex.ts";
import { planMaskBlocks } from "./plan_mask_blocks.ts";
import { planPointwise } from "./plan_pointwise.ts";
import { planDenseAttention } from "./plan_dense.ts";
import { planFmaProbe } from "./probes.ts";
import { planFlexGrad } from "./plan_flex_grad.ts";
import { InvalidArgument } from "../errors.ts";
import type { FlexGradArg } from "../passes/flex_grad.ts";
import { blockMaskTables } from "../blockmask/block_mask.ts";

/** The BlockMask tables and captured tensors of a call: packed on the host into one kernel buffer. */
function flexHostTensors(call: FlexCall): Tensor[] {
  const m = call.blockMask;
  return [
    ...blockMaskTables(m).filter((t): t is Tensor => t !== null),
    ...(call.scoreMod.captures as unknown as Tensor[]),
    ...(m.tracedMask.captures as unknown as Tensor[]),
  ];
}

/**
 * The tensors whose VALUES planning `node` reads on the host (BlockMask tables, captured tensors). Computed
 * ones (a bias produced by other ops, a lazily built BlockMask) are realized by the executor before it
 * plans, and recorded (lib/tensor/host_values.ts), so any tensor may be captured, as in PyTorch.
 */
export function hostInputs(node: Tensor): Tensor[] {
  switch (node.op) {
    case "flexOut":
    case "flexLse":
      return flexHostTensors(node.arg as FlexCall);
    case "flexGrad":
      return flexHostTensors((node.arg as FlexGradArg).bwd.call);
    case "maskBlocks":
      return [...node.inputs];
    default:
      return [];
  }
}

export function planNode(node: Tensor, caps: Capabilities): NodePlan {
  switch (node.op) {
    case "flexOut":
    case "flexLse":
      return planFlex(node.arg as FlexCall, caps);
    case "flexGrad":
      return planFlexGrad(node, caps);
    case "maskBlocks":
      return planMaskBlocks(node, caps);
    case "add":
    case "sub":
    case "mul":
    case "neg":
    case "mulScalar":
    case "sum":
    case "reshape":
    case "expand":
      return planPointwise(node, caps);
    case "denseAttention":
      return planDenseAttention(node);
    case "fmaProbe":
      return planFmaProbe(node);
    default:
      throw new InvalidArgument({
        message: `the GPU executor has no kernel for op "${node.op}" (${node}); ` +
          `supported: flexOut, flexLse, maskBlocks, add, sub, mul, neg, mulScalar, sum, reshape, expand, denseAttention, ` +
          `fmaProbe (run other graphs on the CPU executor)`,
      });
  }
}
