/**
 * Packing the flex backward (graph → graph): every gradient node of one flex call (dq, dk, dv, a capture's
 * gradient) becomes a read (`flexGradPart`) of ONE node that computes them all (`flexGrad` "packed"), so asking
 * for dq, dk and dv runs one backward, not three, on every executor. A required pass: the lowering plans
 * only packed backward nodes. A gradient cast to f16 (an f16 input's) becomes an f16 read of the packed node:
 * one launch that rounds while it copies, the same values as the copy and the cast.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { flexGradPart, type FlexGradArg, type FlexGradWhich } from "./flex_grad.ts";
import { rebuild } from "./rebuild.ts";

export function packFlexGrads(roots: readonly Tensor[]): Tensor[] {
  return rebuild(roots, (node) => {
    if (node.op === "cast" && node.dtype === "f16" && node.inputs[0].op === "flexGrad") {
      const arg = node.inputs[0].arg as FlexGradArg;
      if (arg.which !== "packed") return flexGradPart(arg.bwd, arg.which as FlexGradWhich, "f16");
    }
    if (node.op !== "flexGrad") return undefined;
    const arg = node.arg as FlexGradArg;
    return arg.which === "packed" ? undefined : flexGradPart(arg.bwd, arg.which as FlexGradWhich);
  });
}
