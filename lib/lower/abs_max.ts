/**
 * The launch before an x3 tensor forward (f32 q / k / v through the f16 matrices, kernels/flex_forward_tensor_pipe.ts):
 * the max |x| of q, k and v (kernels/abs_max.ts) into words 1..3 of the forward's `err` scratch, which the forward
 * turns into the power-of-two scales of its f16 hi + lo split. Reads the three inputs once (≈ 0.05 ms for B4 H16
 * S4096 D64 f32 on the H200's 4.8 TB/s); word 0 stays the forward's error flag.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Binding, KernelLaunch } from "./plan.ts";
import { ABS_MAX_MAX_WORKGROUPS, ABS_MAX_THREADS, ABS_MAX_UNIFORMS, absMax3Wgsl } from "../../kernels/abs_max.ts";

/** The forward's err scratch when an abs-max launch fills words 1..3. */
export const X3_ERR: Binding = { kind: "scratch", name: "err", bytes: 16 };

export function absMaxLaunch(call: FlexCall, maxGrid: number): KernelLaunch {
  const n4 = [call.q, call.k, call.v].map((t) => t.size / 4);
  const groups = Math.max(1, Math.min(ABS_MAX_MAX_WORKGROUPS, maxGrid, Math.ceil(Math.max(...n4) / ABS_MAX_THREADS)));
  const u: Record<(typeof ABS_MAX_UNIFORMS)[number], number> = { n_q: n4[0], n_k: n4[1], n_v: n4[2], stride: groups * ABS_MAX_THREADS };
  return {
    label: "abs_max q k v (x3 scales)",
    code: absMax3Wgsl(),
    entryPoint: "main",
    bindings: [
      { kind: "input", tensor: call.q }, { kind: "input", tensor: call.k }, { kind: "input", tensor: call.v },
      X3_ERR, { kind: "uniform", data: Uint32Array.from(ABS_MAX_UNIFORMS, (k) => u[k]) },
    ],
    workgroups: [groups, 1, 1],
  };
}
