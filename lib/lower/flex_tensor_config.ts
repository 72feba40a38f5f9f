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

/** What the family choice depends on: the call's dtype, head dims, kv block size and kv length. */
export interface FamilyProblem { readonly dtype: string; readonly D: number; readonly Dv: number; readonly QB: number; readonly KB: number; readonly Skv: number }

/**
 * Which family runs a call on `caps`: "portable", or the tensor family's mode.
 * The native intrinsic kernel is used only where it is proven on the H200: D and Dv multiples of 16, K/V read
 * straight from global memory (kvDirect), every key tile whole (Skv and the kv block a multiple of BLOCK_N);
 * its staged K/V path gave wrong results there (kernels/flex_forward_tensor.ts). Otherwise the automatic
 * choice is portable, and a forced `family: "tensor"` runs emulated (exact, slow).
 */
export function familyFor(p: FamilyProblem, caps: Capabilities, opts: KernelOptions): "portable" | TensorMode {
  if (opts.family === "portable") return "portable";
  const nativeOk = p.dtype === "f16" && hasNativeMatrices(caps) && nativeSafe(p, caps, opts);
  if (opts.family === "tensor") {
    if (p.dtype !== "f16") {
      throw new DTypeError({ message: `kernelOptions.family "tensor" needs f16 q, k, v (subgroup matrices take f16 operands); got ${p.dtype}: convert with cast(t, "f16")` });
    }
    if (nativeOk) return "native";
    if (caps.features.has("shader-f16")) return "emulated";
    throw new NoConfigFits({ message: "kernelOptions.family \"tensor\": this adapter has neither subgroup matrices nor shader-f16 (for the emulated family); use \"portable\"" });
  }
  return nativeOk ? "native" : "portable";
}

function nativeSafe(p: FamilyProblem, caps: Capabilities, opts: KernelOptions): boolean {
  return flexTensorCandidates({ D: p.D, Dv: p.Dv, QB: p.QB, KB: p.KB, identityScore: true }, caps, opts, "native", true, p.Skv).length > 0;
}

/** Preference order, measured on the H200 (bench/tensor_probe.ts, B4 H16 S4096 D64, K/V direct): 64/32/2
 * 38–40 TF/s, 128/32/4 34–36, 32/32/1 27, 64/64/2 24, 64/64/4 22 (BN 32 beat BN 64 in every pairing). */
const SHAPES: readonly { BM: number; subgroups: number; BN: number }[] = [
  { BM: 64, subgroups: 2, BN: 32 },
  { BM: 128, subgroups: 4, BN: 32 },
  { BM: 32, subgroups: 1, BN: 32 },
  { BM: 64, subgroups: 2, BN: 64 },
  { BM: 64, subgroups: 4, BN: 64 },
  { BM: 64, subgroups: 4, BN: 32 },
  { BM: 16, subgroups: 1, BN: 16 },
];

/** Every tensor config valid for the problem on the device, in preference order. */
export function flexTensorCandidates(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean, Skv?: number): FlexTensorConfig[] {
  const lim = caps.limits;
  const out: FlexTensorConfig[] = [];
  for (const s of SHAPES) {
    if (opts.blockM !== undefined && s.BM !== opts.blockM) continue;
    if (opts.blockN !== undefined && s.BN !== opts.blockN) continue;
    if (p.QB % s.BM !== 0 || p.KB % s.BN !== 0) continue;
    // native: only the path proven on the device (whole key tiles read straight from global memory)
    if (mode === "native" && (p.D % 16 !== 0 || p.Dv % 16 !== 0 || (Skv !== undefined && Skv % s.BN !== 0))) continue;
    const directs = mode === "native" ? [true] : p.D % 16 === 0 && p.Dv % 16 === 0 ? [true, false] : [false];
    for (const kvDirect of directs) {
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
export function chooseFlexTensorConfig(p: FlexProblem, caps: Capabilities, opts: KernelOptions, mode: TensorMode, outF16: boolean, Skv?: number): FlexTensorConfig {
  const c = flexTensorCandidates(p, caps, opts, mode, outF16, Skv)[0];
  if (!c) {
    throw new NoConfigFits({
      message: `no tensor-family forward config fits: D=${p.D}, Dv=${p.Dv}, blocks ${p.QB}×${p.KB}` +
        `${opts.blockM ? `, blockM=${opts.blockM}` : ""}${opts.blockN ? `, blockN=${opts.blockN}` : ""}, ` +
        `workgroup storage ${caps.limits.maxComputeWorkgroupStorageSize} B (the BlockMask's blocks must be multiples of 16)`,
    });
  }
  return c;
}
