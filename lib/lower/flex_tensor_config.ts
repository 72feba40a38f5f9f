/**
 * The tensor family (kernels/flex_forward_tensor.ts): when it runs, and its config space.
 *
 *   native     the adapter lists a 16×16×16 f16→f32 subgroup-matrix config, has shader-f16 and subgroups of
 *              exactly 32 invocations (the kernel's lane layout assumes it; NVIDIA)
 *   emulated   only `kernelOptions.family: "tensor"` forces it on an adapter without matrices: the same
 *              template with plain-WGSL matrix operations (needs shader-f16; slow — it exists so CI runs the
 *              family's tiling, staging, masking and softmax)
 * Automatic choice: f16 inputs on a native adapter → tensor; everything else → portable.
 */
import type { Capabilities } from "./capabilities.ts";
import type { KernelOptions } from "../attention/kernel_options.ts";
import type { FlexProblem } from "./flex_config.ts";
import { checkFlexTensorConfig, type FlexTensorConfig, flexTensorSmemBytes, flexTensorThreads } from "../../kernels/flex_forward_tensor.ts";
import { DTypeError, NoConfigFits } from "../errors.ts";

export type TensorMode = "native" | "emulated";

export function hasNativeMatrices(caps: Capabilities): boolean {
  return caps.features.has("shader-f16") && caps.features.has("subgroups") &&
    caps.subgroupMinSize === 32 && caps.subgroupMaxSize === 32 &&
    caps.subgroupMatrixConfigs.some((m) => m.M === 16 && m.N === 16 && m.K === 16 && m.componentType === "f16" && m.resultComponentType === "f32");
}

/** Which family runs a call of `dtype` with `opts` on `caps`: "portable", or the tensor family's mode. */
export function familyFor(dtype: string, caps: Capabilities, opts: KernelOptions): "portable" | TensorMode {
  if (opts.family === "portable") return "portable";
  if (opts.family === "tensor") {
    if (dtype !== "f16") {
      throw new DTypeError({ message: `kernelOptions.family "tensor" needs f16 q, k, v (subgroup matrices take f16 operands); got ${dtype}: convert with cast(t, "f16")` });
    }
    if (hasNativeMatrices(caps)) return "native";
    if (caps.features.has("shader-f16")) return "emulated";
    throw new NoConfigFits({ message: "kernelOptions.family \"tensor\": this adapter has neither subgroup matrices nor shader-f16 (for the emulated family); use \"portable\"" });
  }
  return dtype === "f16" && hasNativeMatrices(caps) ? "native" : "portable";
}

/** Preference order (measured on the H200 by bench/tensor_probe.ts; the tuner times them all). */
const SHAPES: readonly { BM: number; subgroups: number; BN: number }[] = [
  { BM: 64, subgroups: 4, BN: 64 },
  { BM: 128, subgroups: 8, BN: 64 },
  { BM: 64, subgroups: 4, BN: 32 },
  { BM: 128, subgroups: 4, BN: 64 },
  { BM: 64, subgroups: 2, BN: 64 },
  { BM: 32, subgroups: 2, BN: 32 },
  { BM: 16, subgroups: 1, BN: 16 },
];

/** Every tensor config valid for the problem on the device, in preference order. */
export function flexTensorCandidates(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean): FlexTensorConfig[] {
  const lim = caps.limits;
  const out: FlexTensorConfig[] = [];
  for (const s of SHAPES) {
    if (opts.blockM !== undefined && s.BM !== opts.blockM) continue;
    if (opts.blockN !== undefined && s.BN !== opts.blockN) continue;
    if (p.QB % s.BM !== 0 || p.KB % s.BN !== 0) continue;
    for (const kvDirect of p.D % 16 === 0 && p.Dv % 16 === 0 ? [true, false] : [false]) {
      const c: FlexTensorConfig = {
        family: "tensor", D: p.D, Dv: p.Dv, BM: s.BM, BN: s.BN, subgroups: s.subgroups, emulate: mode === "emulated",
        identityScore: p.identityScore, subgroupSize: 32, outF16, kvDirect,
      };
      try { checkFlexTensorConfig(c); } catch { continue; }
      if (flexTensorThreads(c) > Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX)) continue;
      if (flexTensorSmemBytes(c) > lim.maxComputeWorkgroupStorageSize) continue;
      out.push(c);
    }
  }
  return out;
}

/** The heuristic pick (the first candidate), or NoConfigFits. */
export function chooseFlexTensorConfig(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean): FlexTensorConfig {
  const c = flexTensorCandidates(p, caps, opts, mode, outF16)[0];
  if (!c) {
    throw new NoConfigFits({
      message: `no tensor-family forward config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.QB}×${p.KB}` +
        `${opts.blockM ? `, blockM=${opts.blockM}` : ""}${opts.blockN ? `, blockN=${opts.blockN}` : ""}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B (the BlockMask's blocks must be multiples of 16)`,
    });
  }
  return c;
}
