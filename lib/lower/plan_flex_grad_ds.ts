/**
 * The backward without recomputation in dQ (issue #8 item 5), behind a knob (off by default until the device
 * says it pays): the dK/dV kernel stores the dS' it forms anyway (kernels/flex_backward.ts `writeDs`) into a
 * scratch [q heads of a chunk][Sq][Skv], and dQ = scale·dS'·K is a plain block-sparse product over the q block's
 * kv list (kernels/flex_bwd_dq_from_ds.ts): 5 matrix products per visited tile instead of 7.
 *
 * The scratch is bounded by processing the heads in chunks of whole kv heads (flattened over batch × kv head;
 * a kv head's GQA group of q heads is contiguous in the flattened q heads), each chunk one dK/dV launch then
 * one dQ launch with the chunk's first kv head as a uniform: the same two kernels for every chunk and length.
 *
 * Taken only where dQ is nothing but dS'·K: no f32 score capture (their gradients are summed by the fused dQ
 * kernel from dS·∂mod/∂capture, not from dS'), a device with ≥ 9 storage buffers per stage (the dK/dV kernel's
 * ninth binding) and one kv head's dS' within the cap. Sinks and an lse cotangent reach dS' through Δ − dLse
 * (the preprocess), dropout through z in dS' — both already inside what the dK/dV kernel stores.
 */
import type { FlexCall } from "../attention/flex_attention.ts";
import type { Capabilities } from "./capabilities.ts";
import type { FlexBwdConfig } from "../../kernels/flex_backward.ts";
import { FLEX_BWD_UNIFORMS } from "../../kernels/flex_backward.ts";
import { type DqFromDsConfig, dqFromDsSmemBytes } from "../../kernels/flex_bwd_dq_from_ds.ts";
import { readEnv } from "../runtime/env.ts";

/** The default bound of the dS' scratch (further bounded by the device's binding and buffer sizes). */
export const DS_SCRATCH_MAX_BYTES = 512 * 2 ** 20;

/** Whether the knob asks for the dS' path: `probe` (setFlexBwdProbe) first, else FLEX_BWD_DQ_FROM_DS=1. */
export function dqFromDsWanted(probe: boolean | undefined): boolean {
  return probe ?? readEnv("FLEX_BWD_DQ_FROM_DS") === "1";
}

/** How the heads are chunked; null when one kv head's dS' does not fit (the fused dQ path runs instead). */
export interface DsChunks {
  /** Flattened kv heads (batch × kv head) per chunk, the last one possibly short. */
  readonly kvHeads: number;
  readonly chunks: number;
  /** Bytes of the scratch (one full chunk). */
  readonly bytes: number;
}

export function dsChunks(call: FlexCall, caps: Capabilities, capBytes = DS_SCRATCH_MAX_BYTES): DsChunks | null {
  const { B, Hq, Hkv, Sq, Skv } = call.dims;
  const group = Hq / Hkv;
  const limit = Math.min(capBytes, caps.limits.maxStorageBufferBindingSize, caps.limits.maxBufferSize);
  const perKvHead = group * Sq * Skv * 4;
  if (perKvHead > limit) return null;
  const total = B * Hkv;
  const kvHeads = Math.min(total, Math.floor(limit / perKvHead));
  return { kvHeads, chunks: Math.ceil(total / kvHeads), bytes: kvHeads * perKvHead };
}

/** Whether the call's dQ is dS'·K alone and the device can bind the dK/dV kernel's scratch. */
export function dqFromDsApplies(caps: Capabilities, captureWords: number): boolean {
  return captureWords === 0 && caps.limits.maxStorageBuffersPerShaderStage >= 9;
}

/** The dQ kernel's shape from the fused dq config (same BA: same grid and a_tiles), NV fitted to the memory. */
export function dqFromDsConfig(dq: FlexBwdConfig, caps: Capabilities): DqFromDsConfig | null {
  for (const NV of [16, 8, 4, 2, 1]) {
    if (dq.BB % NV !== 0) continue;
    const c: DqFromDsConfig = { D: dq.D, BA: dq.BA, TA: dq.TA, G: dq.G, BB: dq.BB, NV };
    if (dqFromDsSmemBytes(c) <= caps.limits.maxComputeWorkgroupStorageSize) return c;
  }
  return null;
}

/** FLEX_BWD_UNIFORMS with `pad0` carrying the chunk's first flattened kv head. */
export function withHead0(uniforms: readonly number[], head0: number): number[] {
  const u = [...uniforms];
  u[FLEX_BWD_UNIFORMS.indexOf("pad0")] = head0;
  return u;
}
