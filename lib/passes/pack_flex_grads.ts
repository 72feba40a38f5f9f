/**
 * Packing the flex backward (graph → graph): every gradient node of one flex call (dq, dk, dv, a capture's
 * gradient) becomes a read (`flexGradPart`) of ONE node that computes them all (`flexGrad` "packed"), so asking
 * for dq, dk and dv runs one backward, not three, on every executor. A required pass: the lowering plans
 * only packed backward nodes.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { flexGradPart, type FlexGradArg, type FlexGradWhich } from "./flex_grad.ts";
import { rebuild } from "./rebuild.ts";

export function packFlexGrads(roots: readonly Tensor[]): Tensor[] {
  return rebuild(roots, (node) => {
    if (node.op !== "flexGrad") return undefined;
    const arg = node.arg as FlexGradArg;
    return arg.which === "packed" ? undefined : flexGradPart(arg.bwd, arg.which as FlexGradWhich);
  });
}
