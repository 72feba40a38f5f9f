/**
 * What `kernelOptions.autotune: "max"` times, as plain data the runtime's tuner runs: for a flex node of the
 * graph, its tuning key, the candidate configs, and a plan per candidate (the same launch a normal plan would
 * make, with the config pinned). The lowering decides what is tuned; the runtime only times and stores.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { f32Call, type FlexCall } from "../attention/flex_attention.ts";
import type { Capabilities } from "./capabilities.ts";
import type { NodePlan } from "./plan.ts";
import { flexTuneCandidates } from "./flex_config.ts";
import { flexTuneKey } from "./flex_tune_key.ts";
import { flexProblemOf, forwardFamilyOf, planFlexF32, planFlexTensor, tensorTuneDtype } from "./plan_flex.ts";
import { flexTensorCandidates, isX3 } from "./flex_tensor_config.ts";
import { chooseFlexDecode } from "./flex_decode_config.ts";
import type { FlexForwardConfig } from "../../kernels/flex_forward.ts";
import type { FlexTensorConfig } from "../../kernels/flex_forward_tensor.ts";

export interface TuneJob {
  readonly key: string;
  /** For the progress line. */
  readonly label: string;
  readonly candidates: readonly unknown[];
  /** The plan that runs `candidate`; its inputs are scheduled by the executor as usual. */
  readonly plan: (candidate: unknown) => NodePlan;
}

/** The tuning job of a flex node with autotune "max" (undefined for any other node). */
export function tuneJobOf(node: Tensor, caps: Capabilities): TuneJob | undefined {
  if (node.op !== "flexOut" && node.op !== "flexLse" && node.op !== "flexMaxScore") return undefined;
  const call = node.arg as FlexCall;
  if (call.kernelOptions.autotune !== "max") return undefined;
  if (chooseFlexDecode(call, caps)) return undefined; // the decode tile runs: nothing of the query-tile kernels to time
  const family = forwardFamilyOf(call, caps); // dropout / returnAux: portable
  if (family !== "portable") {
    const p = flexProblemOf(call);
    const x3 = isX3(call.q, call.kernelOptions);
    return {
      key: flexTuneKey(`tensor-${family}`, tensorTuneDtype(call), p, call.kernelOptions),
      label: `flex forward tensor${family === "emulated" ? " (emulated)" : ""}${x3 ? " f32x3" : ""} D${p.D} blocks ${p.QB}×${p.KB}${p.identityScore ? "" : " +score mod"}`,
      candidates: flexTensorCandidates(p, caps, call.kernelOptions, family, !x3, family === "native" ? call.dims.Skv : undefined, x3),
      plan: (c) => planFlexTensor(call, caps, family, c as FlexTensorConfig),
    };
  }
  // f16 inputs on the portable family run the f32 kernel of the call's f32 twin
  const target = f32Call(call);
  const p = flexProblemOf(target);
  const candidates = flexTuneCandidates(p, caps, target.kernelOptions);
  return {
    key: flexTuneKey("portable", "f32", p, target.kernelOptions),
    label: `flex forward portable D${p.D} blocks ${p.QB}×${p.KB}${p.identityScore ? "" : " +score mod"}`,
    candidates,
    plan: (c) => planFlexF32(target, caps, c as FlexForwardConfig),
  };
}
