/**
 * The shared check of the tensor-family backward tests (flex_backward_tensor.test.ts, flex_backward_tensor_own_rows.test.ts):
 * fresh random f16 q, k, v, dOut (and an f32 lse cotangent), the gradients of `flexAttention` with
 * `kernelOptions.family: "tensor"` planned under a probe override, realized into poisoned outputs, and compared
 * with the float64 oracle on the same f16 values.
 *
 *   const errors = await checkTensorBwd({ name: "noop", Sq: 64, D: 64 }, { ownerDirect: false, streamDirect: false }, (kernels) => { ... });
 */
import { expect, relL2 } from "../harness.ts";
import { createBlockMask, type FlexOptions, flexAttention, type MaskMod, realizeAll, type ScoreMod, setPoison, type Tensor, tensor, vjp } from "../../mod.ts";
import { deviceInfo, getExecutor } from "../../lib/runtime/mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { randn } from "../../lib/tensor/tensor.ts";
import { explain } from "../../lib/lower/explain.ts";
import { setBwdTensorOverride } from "../../lib/lower/flex_bwd_tensor_config.ts";
import { hasNativeMatrices } from "../../lib/lower/flex_tensor_config.ts";
import { readEnv } from "../../lib/runtime/env.ts";

const info = await deviceInfo().catch(() => null);
/** Why these tests cannot run here (false: they run). */
export const tensorBwdSkip: string | false = !info || info.provider === "cpu" ? "no GPU adapter"
  : !info.features.includes("shader-f16") ? "the adapter lacks shader-f16 (the emulated tensor family needs it)"
  : info.provider !== "dawn" ? "the emulated tensor-family backward runs on the Dawn provider only (CI time)" : false;

/** Rel. L2 vs float64 on the same f16 values: f16 P and dS' roundings (≈ 2.8e-4 each, PyTorch's kernel the same),
 * summed rows of dS cancel (Σ_j dS_ij = 0), so dQ / dK sit a little above; DESIGN.md §4 allows 2× PyTorch's 3e-4. */
export const TOL = 6e-4;

export const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);
export const softcap: ScoreMod = (score) => score.div(20).tanh().mul(20);

/** One problem: batch, heads (GQA when Hkv < Hq), lengths, head dims, mods, BlockMask block size, lse cotangent. */
export interface BwdProblem {
  name: string; B?: number; Hq?: number; Hkv?: number; Sq: number; Skv?: number; D: number; Dv?: number;
  mask?: MaskMod; block?: number; score?: ScoreMod; withLse?: boolean;
  /** The forward's tile (kernelOptions.blockM / blockN; the backward picks its own): a small one compiles in seconds
   * on lavapipe where the default emulated forward takes 20–40 s. */
  forwardTile?: { blockM: number; blockN: number };
}

/** The probe override the backward is planned under (lib/lower/flex_bwd_tensor_config.ts). */
export type BwdOverride = Parameters<typeof setBwdTensorOverride>[0];

export interface BwdErrors { dq: number; dk: number; dv: number }

/** Why a default-off knob's emulated cases beyond CI's slice (at most one cheap case a knob, or none) do not run here
 * (false: they run): they run natively where the adapter has subgroup matrices, emulated only with `envVar=1` (each
 * costs 0.5–1 min cold on lavapipe). */
export async function moreCasesSkip(envVar: string, what: string): Promise<string | false> {
  if (tensorBwdSkip) return tensorBwdSkip;
  if (hasNativeMatrices((await getExecutor()).caps) || readEnv(envVar) === "1") return false;
  return `emulated ${what} cases beyond CI's slice: set ${envVar}=1 (they run natively where the adapter has subgroup matrices)`;
}

/** The hooks of an identity score mod without a mask (the WGSL structure tests). */
export const IDENTITY_HOOKS = { preamble: "", scoreMod: "", maskMod: "", scoreModGrad: "", identityScore: true, capReads: 0, capCode: "" };

/** The pipelined template's tile loop in generated WGSL (the structure tests count its barriers and products). */
export const tileLoopOf = (code: string) => code.slice(code.indexOf("for (var t = 0u; t < n_tiles; t++) {"), code.lastIndexOf("sb_cur = sb_nxt;"));

/**
 * Plans the backward of `c` under `override`, hands the plan's kernel lines to `expectKernels` (which asserts the
 * variant under test is what runs), realizes the gradients into poisoned buffers and asserts each within TOL of
 * the float64 reference; the override is cleared afterwards whatever happens. Returns the errors.
 */
export async function checkTensorBwd(c: BwdProblem, override: BwdOverride, expectKernels: (kernels: readonly string[]) => void): Promise<BwdErrors> {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.Sq, Dv = c.Dv ?? c.D;
  const f16 = { dtype: "f16" as const };
  const q = randn([B, Hq, c.Sq, c.D], f16), k = randn([B, Hkv, Skv, c.D], f16), v = randn([B, Hkv, Skv, Dv], f16);
  const dOut = randn([B, Hq, c.Sq, Dv], f16);
  const dLse = tensor(Float32Array.from({ length: B * Hq * c.Sq }, () => Math.random() * 2 - 1), [B, Hq, c.Sq]);
  const blockMask = c.mask ? await createBlockMask(c.mask, 1, 1, c.Sq, Skv, { blockSize: c.block ?? 64 }) : undefined;
  const opts: FlexOptions = { blockMask, scoreMod: c.score, enableGqa: Hq !== Hkv, kernelOptions: { family: "tensor", ...c.forwardTile } };
  let grads: Tensor[], call: FlexCall;
  if (c.withLse) {
    const [y, back] = vjp((q, k, v) => flexAttention(q, k, v, { ...opts, returnLse: true }), q, k, v);
    call = y.out.arg as FlexCall;
    grads = back({ out: dOut, lse: dLse });
  } else {
    const [y, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
    call = (y as Tensor).arg as FlexCall;
    grads = back(dOut);
  }
  grads.forEach((g) => expect(g.dtype).toBe("f16"));
  const caps = (await getExecutor()).caps;
  setBwdTensorOverride(override);
  let kernels: readonly string[], got: Awaited<ReturnType<typeof realizeAll>>;
  try {
    kernels = explain(grads, caps).kernels;
    expectKernels(kernels);
    setPoison(true);
    got = await realizeAll(grads);
  } finally {
    setBwdTensorOverride(null);
  }
  // the tensor kernels ran, and neither the portable backward nor the f32 twin's forward
  expect(kernels.some((l) => /flex_bwd_(dq|dkdv) /.test(l) || l.startsWith("flex_forward "))).toBe(false);
  const data = (t: Tensor) => t.data!;
  const ref = flexReferenceBwd(call, {
    q: data(q), k: data(k), v: data(v), scoreCaptures: call.scoreMod.captures.map((t) => data(t as Tensor)), maskCaptures: call.blockMask.tracedMask.captures.map((t) => data(t as Tensor)),
    dOut: data(dOut), dLse: c.withLse ? data(dLse) : null,
  });
  const errors = { dq: relL2(got[0], ref.dq), dk: relL2(got[1], ref.dk), dv: relL2(got[2], ref.dv) };
  const ok = Object.values(errors).every((e) => e <= TOL);
  expect({ case: c.name, errors, ok }).toEqual({ case: c.name, errors, ok: true });
  return errors;
}
