/**
 * `kernelOptions` validation, at graph construction, so the CPU executor refuses exactly what a GPU would
 * (code tested on the CPU must not fail on a GPU): unknown keys, non-integers, tiles that do not divide the
 * BlockMask's blocks, unknown families / autotune modes. Device-dependent limits (does a config fit the
 * workgroup memory?) are checked by the lowering, with NoConfigFits.
 */
import { InvalidArgument } from "../errors.ts";

/**
 * Lowering hints, PyTorch's `kernel_options` (the user's values win over the tuner's).
 *
 * @example
 * ```ts
 * import { flexAttention, randn } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const out = flexAttention(q, k, v, { kernelOptions: { blockM: 32, splitKv: 1, autotune: "heuristic" } });
 * ```
 */
export interface KernelOptions {
  /** Query rows per workgroup (must divide the BlockMask's q block size). */
  readonly blockM?: number;
  /** Key columns per inner tile (must divide the BlockMask's kv block size; a multiple of 4). */
  readonly blockN?: number;
  /**
   * Kernel family: "portable" (scalar FMA, any adapter) or "tensor" (subgroup matrices, f16 inputs; chosen
   * automatically when the adapter has them). Forcing "tensor" on an adapter without subgroup matrices runs
   * the same kernel with the matrix operations emulated in plain WGSL (slow: for testing).
   */
  readonly family?: "portable" | "tensor";
  /**
   * Split-KV: each query row's kv blocks are shared among this many workgroups and the partial results are
   * merged by a second kernel (decoding, few query rows). Default: chosen from the grid (1 when the grid
   * already fills the device); 1 turns it off.
   */
  readonly splitKv?: number;
  /**
   * "heuristic" (default): the untimed config rule. "max": time the candidate configs on the device (once per
   * adapter, provider, family, dtype, head dims, block sizes and mod class), keep the fastest, and persist it
   * (FLEX_TUNE_CACHE=<dir>|off), so a later process does no timing — PyTorch's max-autotune.
   */
  readonly autotune?: "heuristic" | "max";
  /**
   * PyTorch's PRESCALE_QK: multiply q by the scale once, before Q·Kᵀ, instead of each score after it (one
   * multiply per q element instead of per score; results differ by f32 rounding). The score mod still sees
   * the scaled score in natural units. Applies to the portable forward and the backward; the tensor family
   * keeps scaling its f32 scores (prescaling f16 q would round the product of the two).
   */
  readonly prescaleQk?: boolean;
  /**
   * PyTorch's ROWS_GUARANTEED_SAFE: the caller promises every query row attends at least one key, so the
   * kernels skip the fully-masked-row checks (the forward's empty-row epilogue, the backward's per-entry
   * lse = −∞ test). A row that attends nothing then gives unspecified values (NaN, ∞), not out = 0.
   */
  readonly rowsGuaranteedSafe?: boolean;
  /**
   * How the forward multiplies f32 q, k, v on an adapter with subgroup matrices. "f16x3" (the default there): the
   * tensor family, each f32 operand an f16 pair hi + lo under a per-tensor power-of-two scale and every matrix
   * product three f16 products (hi·hi + hi·lo + lo·hi, f32 accumulate; the partial O leaves the matrices for f32
   * sums every 16 key tiles) — f32-grade results at tensor-core speed, Triton's "tf32x3" idea with f16. H200, B1 H4
   * D64, out's rel. L2 against float64: 2.7–4.6e-7 at S 512 (the same as "ieee"), 7–13e-7 at S 2048–4096 (ieee
   * 3.3–9.0e-7, PyTorch's f32 flex ≈ 5e-7, its f16 ≈ 2.8e-4); 1.5–2.2× faster than "ieee". "ieee": the portable
   * family's scalar f32 FMAs. Adapters without subgroup matrices always run "ieee" (unless `family: "tensor"`
   * forces the emulated family). The backward of f32 inputs runs the portable family either way.
   */
  readonly f32Precision?: "f16x3" | "ieee";
}

const KEYS: readonly (keyof KernelOptions)[] = ["blockM", "blockN", "family", "splitKv", "autotune", "prescaleQk", "rowsGuaranteedSafe", "f32Precision"];

function positiveInteger(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new InvalidArgument({ message: `kernelOptions.${name} = ${JSON.stringify(v)} must be a positive integer` });
  }
  return v;
}

/** Throws InvalidArgument for anything no executor would accept; returns the options (a fresh empty object for undefined). */
export function validateKernelOptions(opts: unknown, blockSize: readonly [number, number]): KernelOptions {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw new InvalidArgument({ message: `flexAttention: kernelOptions must be an object, got ${opts === null ? "null" : typeof opts}` });
  }
  for (const k of Object.keys(opts)) {
    if (!(KEYS as readonly string[]).includes(k)) {
      throw new InvalidArgument({ message: `kernelOptions.${k} is not an option; the options are ${KEYS.join(", ")}` });
    }
  }
  const o = opts as KernelOptions;
  const [QB, KB] = blockSize;
  if (o.blockM !== undefined && QB % positiveInteger("blockM", o.blockM) !== 0) {
    throw new InvalidArgument({ message: `kernelOptions.blockM = ${o.blockM} must be a positive divisor of the BlockMask's q block size ${QB}` });
  }
  if (o.blockN !== undefined && (positiveInteger("blockN", o.blockN) % 4 !== 0 || KB % o.blockN !== 0)) {
    throw new InvalidArgument({
      message: `kernelOptions.blockN = ${o.blockN} must be a multiple of 4 that divides the BlockMask's kv block size ${KB}`,
    });
  }
  if (o.splitKv !== undefined) positiveInteger("splitKv", o.splitKv);
  if (o.family !== undefined && o.family !== "portable" && o.family !== "tensor") {
    throw new InvalidArgument({ message: `kernelOptions.family = ${JSON.stringify(o.family)} must be "portable" or "tensor"` });
  }
  if (o.autotune !== undefined && o.autotune !== "heuristic" && o.autotune !== "max") {
    throw new InvalidArgument({ message: `kernelOptions.autotune = ${JSON.stringify(o.autotune)} must be "heuristic" or "max"` });
  }
  if (o.f32Precision !== undefined && o.f32Precision !== "f16x3" && o.f32Precision !== "ieee") {
    throw new InvalidArgument({ message: `kernelOptions.f32Precision = ${JSON.stringify(o.f32Precision)} must be "f16x3" or "ieee"` });
  }
  for (const k of ["prescaleQk", "rowsGuaranteedSafe"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "boolean") {
      throw new InvalidArgument({ message: `kernelOptions.${k} = ${JSON.stringify(o[k])} must be true or false` });
    }
  }
  return o;
}
