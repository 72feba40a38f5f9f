/**
 * Device probes as ordinary lazy nodes, so the benchmark measures them through the same executor, provider
 * and submit path as the attention kernels. `fmaProbe(workgroups, iters)` → its FLOP count is `fmaProbeFlops`.
 */
import { Tensor } from "../tensor/tensor.ts";
import type { NodePlan } from "./plan.ts";
import { fmaProbeWgsl } from "../../kernels/probe_fma.ts";

export interface FmaProbeArg { readonly workgroups: number; readonly iters: number }

export function fmaProbe(workgroups = 8192, iters = 2048): Tensor {
  return new Tensor("fmaProbe", [], [workgroups * 256], "f32", { workgroups, iters } satisfies FmaProbeArg);
}

export function fmaProbeFlops(node: Tensor): number {
  const a = node.arg as FmaProbeArg;
  return a.workgroups * 256 * a.iters * 8 * 4 * 2;
}

export function planFmaProbe(node: Tensor): NodePlan {
  const a = node.arg as FmaProbeArg;
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
