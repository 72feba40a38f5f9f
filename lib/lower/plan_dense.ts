/**
 * Lowering of the materialized-mask baseline (`denseAttention` nodes): scores → softmax → P·V, three launches
 * over one scratch score matrix of B·H·Sq·Skv floats (the executor refuses it with BufferTooLarge when it does
 * not fit the device, which is the honest outcome for this baseline at long lengths).
 */
import type { Tensor } from "../tensor/tensor.ts";
// deno-lint-ignore no-unused-vars -- imported for its OpArgs augmentation ("denseAttention"), which the types below need
import type { DenseAttentionArg } from "../attention/baselines.ts";
import type { Binding, NodePlan } from "./plan.ts";
import { densePvWgsl, denseScoresWgsl, denseSoftmaxWgsl } from "../../kernels/dense_attention.ts";

export function planDenseAttention(node: Tensor<"denseAttention">): NodePlan {
  const a = node.arg;
  const { B, Hq, Hkv, Sq, Skv, D, Dv } = a.dims;
  const [q, k, v, mask] = node.inputs;
  const rows = B * Hq * Sq;
  const rowsPerY = Math.min(rows, 65535);
  const u = new Uint32Array(12);
  u.set([B, Hq, Hkv, Sq, Skv, a.maskB, a.maskH, mask ? 1 : 0]);
  new Float32Array(u.buffer)[8] = a.scale;
  u[9] = rowsPerY;
  const uniform: Binding = { kind: "uniform", data: u };
  const scores: Binding = { kind: "scratch", name: "scores", bytes: rows * Skv * 4 };
  const maskBinding: Binding = mask ? { kind: "input", tensor: mask } : { kind: "data", data: new Int32Array(1) };
  return {
    defines: [node],
    checks: [],
    launches: [
      {
        label: "dense.scores", code: denseScoresWgsl(D), entryPoint: "main",
        bindings: [{ kind: "input", tensor: q }, { kind: "input", tensor: k }, maskBinding, scores, uniform],
        workgroups: [Math.ceil(Skv / 64), Math.ceil(Sq / 64), B * Hq],
      },
      {
        label: "dense.softmax", code: denseSoftmaxWgsl(), entryPoint: "main",
        bindings: [scores, uniform],
        workgroups: [rowsPerY, Math.ceil(rows / rowsPerY), 1],
      },
      {
        label: "dense.pv", code: densePvWgsl(Dv), entryPoint: "main",
        bindings: [scores, { kind: "input", tensor: v }, { kind: "output", tensor: node }, uniform],
        workgroups: [Math.ceil(Dv / 64), Math.ceil(Sq / 64), B * Hq],
      },
    ],
  };
}
