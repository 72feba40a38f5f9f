/**
 * Realizes graphs for the grad tests on the CPU executor, with the autodiff ops merged into its table
 * exactly as the integrator will (`{ ...CPU_OPS, ...GRAD_CPU_OPS }`): no device, synchronous.
 */
import type { Tensor, TypedData } from "../../lib/tensor/tensor.ts";
import { realizeCpu } from "../../lib/runtime/cpu/executor.ts";
import { CPU_OPS, type CpuOpTable } from "../../lib/runtime/cpu/ops.ts";
import { GRAD_CPU_OPS } from "../../lib/runtime/cpu/grad_ops.ts";

export const OPS: CpuOpTable = { ...CPU_OPS, ...GRAD_CPU_OPS };

export function realize(...roots: Tensor[]): TypedData[] {
  return realizeCpu(roots, OPS);
}
