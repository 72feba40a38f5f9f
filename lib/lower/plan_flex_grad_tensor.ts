/**
 * The packed flex backward in the tensor family (lib/lower/flex_bwd_tensor_config.ts says when): the same three
 * launches as the portable plan (lib/lower/plan_flex_grad.ts) with f16 operands:
 *   1 preprocess  ld = (lse·log2 e, Δ − dLse) from the f16 call's own out (f16) and lse
 *   2 dK/dV, 3 dQ  kernels/flex_backward_tensor.ts, reading the f16 q, k, v and an f16 dO
 * and the same packed f32 gradient buffer (the graph's casts return dq, dk, dv in f16).
 *
 * The backward node's call is the f16 call's f32 twin (lib/passes/vjp_rules.ts); this plan binds the twin's f16
 * sources instead (`f16SourceOf`), so neither the twin's f32 forward nor the f32 copies of q, k, v are computed.
 */
import { f16SourceOf, flexNodes } from "../attention/flex_attention.ts";
import { cast } from "../tensor/ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { KernelLaunch, NodePlan } from "./plan.ts";
import type { FlexBwd, PackedLayout } from "../passes/flex_grad.ts";
import type { FlexBwdMode } from "../../kernels/flex_backward.ts";
import { FLEX_BWD_TENSOR_UNIFORMS, type FlexBwdTensorConfig, flexBackwardTensorWgsl } from "../../kernels/flex_backward_tensor.ts";
import type { FLEX_BWD_UNIFORMS } from "../../kernels/flex_backward.ts";
import { fusedBindings, fusedGrid, fusedUniforms, preprocessLaunch } from "./flex_bwd_launch.ts";
import { type BwdTensorProblem, bwdFamilyFor, bwdTensorOverride, chooseFlexBwdTensorConfig } from "./flex_bwd_tensor_config.ts";
import type { TensorMode } from "./flex_tensor_config.ts";
import { flexBwdHooks } from "./flex_bwd_hooks.ts";

// the tensor kernels read the portable kernels' uniform struct (fusedUniforms fills it): a type error if they diverge
const _sameUniforms: typeof FLEX_BWD_UNIFORMS = FLEX_BWD_TENSOR_UNIFORMS;
import { capGradLayout } from "../passes/flex_grad.ts";

/** The packed block tables and captured data of the call (plan_flex_grad.ts packs them). */
export interface TensorBwdShared {
  readonly tabCaps: { readonly data: Uint32Array; readonly off: readonly number[]; readonly tableWords: number };
  readonly fail: (v: number) => Error;
}

const f16Casts = new WeakMap<Tensor, Tensor>();

/** dO as f16: the f16 cotangent under the vjp's f32 cast, else one memoized cast node. */
function dOutF16(dOut: Tensor): Tensor {
  if (dOut.op === "cast" && dOut.inputs[0].dtype === "f16") return dOut.inputs[0];
  let hit = f16Casts.get(dOut);
  if (!hit) { hit = cast(dOut, "f16"); f16Casts.set(dOut, hit); }
  return hit;
}

export function bwdTensorProblemOf(bwd: FlexBwd): BwdTensorProblem {
  const call = bwd.call;
  const [QB, KB] = call.blockMask.blockSize;
  const src = f16SourceOf(call);
  const { D, Dv, Sq, Skv } = call.dims;
  // features the tensor kernels do not implement (dropout, when a call has it) run the portable backward
  const unsupported = (call as { dropout?: unknown }).dropout !== undefined;
  return { dtype: src ? "f16" : call.q.dtype, D, Dv, QB, KB, Sq, Skv, captureGrads: capGradLayout(call.scoreMod).words, unsupported };
}

/** The family of the packed backward of `bwd` on `caps`. */
export function bwdFamilyOf(bwd: FlexBwd, caps: Capabilities): "portable" | TensorMode {
  return bwdFamilyFor(bwdTensorProblemOf(bwd), caps, bwd.call.kernelOptions);
}

/** WGSL and config of one tensor backward kernel (exported for tests, probes and `explain`); `pinned` forces a config. */
export function flexBackwardTensorSource(
  bwd: FlexBwd,
  mode: FlexBwdMode,
  caps: Capabilities,
  tensorMode: TensorMode,
  tableWords: number,
  pinned?: FlexBwdTensorConfig,
): { code: string; config: FlexBwdTensorConfig } {
  const config = pinned ?? chooseFlexBwdTensorConfig(mode, bwdTensorProblemOf(bwd), caps, tensorMode);
  const hooks = flexBwdHooks(bwd.call, tableWords);
  return { code: flexBackwardTensorWgsl(mode, config, hooks), config };
}

/**
 * The tensor plan of a packed backward node, or null when the portable plan runs it. `pinned` forces the
 * configs of the two kernels (device probes).
 */
export function planFlexGradTensor(
  node: Tensor,
  bwd: FlexBwd,
  layout: PackedLayout,
  caps: Capabilities,
  shared: TensorBwdShared,
  pinned?: { dq?: FlexBwdTensorConfig; dkdv?: FlexBwdTensorConfig },
): NodePlan | null {
  const tensorMode = pinned?.dq ? (pinned.dq.emulate ? "emulated" : "native") : bwdFamilyOf(bwd, caps);
  const src = f16SourceOf(bwd.call);
  if (tensorMode === "portable" || !src) return null;
  const call = bwd.call;
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  const fwd = flexNodes(src);
  const dO = dOutF16(bwd.dOut);
  const tc = shared.tabCaps;
  // Δ from the f16 call's own out and dO (PyTorch's backward also takes Δ from its f16 out)
  const preprocess = preprocessLaunch(call, { out: fwd.out, dOut: dO, lse: fwd.lse, dLse: bwd.dLse }, "f16", maxGrid);

  const fused = (mode: FlexBwdMode): KernelLaunch => {
    const { code, config } = flexBackwardTensorSource(bwd, mode, caps, tensorMode, tc.tableWords, pinned?.[mode]);
    const { grid, aTiles } = fusedGrid(call, mode, config.BA, maxGrid);
    return {
      label: `flex_bwd_${mode}_tensor${config.emulate ? " (emulated)" : ""} ${call.scoreMod.name}/${call.blockMask.tracedMask.name} ` +
        `BA${config.BA} SG${config.subgroups} BB${config.BB}${config.pipeline ? " pipelined" : ""}${config.quadPass ? " quad" : ""}${config.matrixStage ? " matrix-staged" : ""}${config.oneStage ? " one-stage" : ""}${config.probe ? ` DIAGNOSTIC ${config.probe}` : ""}${config.ownerDirect ? " owner-direct" : ""}${config.streamDirect ? " stream-direct" : ""}`,
      code,
      entryPoint: "main",
      // no captured-tensor gradients in this family: err holds the flags word only
      bindings: fusedBindings(call, { q: src.q, k: src.k, v: src.v, dOut: dO, node }, tc.data, 4, fusedUniforms(call, mode, aTiles, layout, tc.off)),
      workgroups: grid,
    };
  };

  // bwdTensorOverride.skip (device probes): one mode's launch left out, to time the other alone
  const modes = (["dkdv", "dq"] as const).filter((m) => m !== bwdTensorOverride?.skip);
  return { launches: [preprocess, ...modes.map(fused)], defines: [node], checks: [{ scratch: "err", fail: shared.fail }] };
}
