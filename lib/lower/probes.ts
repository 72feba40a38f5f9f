/**
 * Device probes as ordinary lazy nodes, so the benchmark measures them through the same executor, provider
 * and submit path as the attention kernels. `fmaProbe(workgroups, iters)` → its FLOP count is `fmaProbeFlops`.
 */
import { Tensor } from "../tensor/tensor.ts";
import type { FmaProbeArg } from "../tensor/op.ts";
import type { NodePlan } from "./plan.ts";
import { fmaProbeWgsl } from "../../kernels/probe_fma.ts";

export type { FmaProbeArg };

export function fmaProbe(workgroups = 8192, iters = 2048): Tensor<"fmaProbe"> {
  return new Tensor("fmaProbe", [], [workgroups * 256], "f32", { workgroups, iters });
}

export function fmaProbeFlops(node: Tensor<"fmaProbe">): number {
  const a = node.arg;
  return a.workgroups * 256 * a.iters * 8 * 4 * 2;
}

export function planFmaProbe(node: Tensor<"fmaProbe">): NodePlan {
  const a = node.arg;
  const u = new Uint32Array(4);
  u[0] = a.iters;
  new Float32Array(u.buffer, 4, 2).set([0.999, 0.001]);
  const x = Math.min(a.workgroups, 32768);
  return {
    defines: [node],
    checks: [],
    launches: [{
      label: "probe.fma", code: fmaProbeWgsl(), entryPoint: "main",
      bindings: [{ kind: "output", tensor: node }, { kind: "uniform", data: u }],
      workgroups: [x, Math.ceil(a.workgroups / x), 1],
    }],
  };
}
