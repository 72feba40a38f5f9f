/**
 * `flexAttention(q, k, v, options)`: validates its inputs (typed errors, thrown at graph construction) and
 * builds lazy Tensor nodes. The FlexCall value in the nodes' `arg` is everything the lowering and the CPU
 * reference need: tensors, traced score mod, BlockMask (with its traced mask mod), scale and sizes.
 *
 * Shapes: q [B, Hq, Sq, D], k [B, Hkv, Skv, D], v [B, Hkv, Skv, Dv] → out [B, Hq, Sq, Dv], lse [B, Hq, Sq].
 * dtypes: q, k, v all f32 or all f16; out has their dtype, lse is always f32 (as PyTorch's).
 * score_mod applies after scaling, before softmax (PyTorch's order); default scale 1/sqrt(D).
 */
import { Tensor } from "../tensor/tensor.ts";
import { cast, expand } from "../tensor/ops.ts";
import { checkSinks, withSinks } from "./sinks.ts";
import { checkDropout, type DropoutOptions, type DropoutSpec } from "./dropout.ts";
import { BlockMaskMismatch, DTypeError, HeadCountError, HeadDimError, InvalidArgument, ShapeError } from "../errors.ts";
import { IDENTITY_SCORE, type ScoreMod, traceScoreMod, type TracedMod } from "../mods/trace.ts";
import { BlockMask } from "../blockmask/block_mask.ts";
import { type KernelOptions, validateKernelOptions } from "./kernel_options.ts";

// the registry entries of flexOut / flexLse / flexMaxScore: lib/attention/op_args.ts (JSR refuses augmentations here)
import type {} from "./op_args.ts";

export type { KernelOptions } from "./kernel_options.ts";

/**
 * Options of `flexAttention` (PyTorch's keyword arguments in camelCase).
 *
 * @example
 * ```ts
 * import { flexAttention, randn } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const { out, lse } = flexAttention(q, k, v, { scale: 0.1, returnLse: true, kernelOptions: { family: "portable" } });
 * ```
 */
export interface FlexOptions {
  /** Applied to each scaled score before the softmax (default: identity). */
  readonly scoreMod?: ScoreMod;
  /** Which blocks to compute and the mask mod for partial ones (default: everything). */
  readonly blockMask?: BlockMask;
  /** Multiplies Q·Kᵀ (default 1/√D). */
  readonly scale?: number;
  /** Allow fewer k/v heads than q heads (grouped-query attention). */
  readonly enableGqa?: boolean;
  /** Return `{ out, lse }` instead of `out`. */
  readonly returnLse?: boolean;
  /** Kernel family, tiles, split-KV, autotuning (validated on every executor). */
  readonly kernelOptions?: KernelOptions;
  /** One learnable logit per query head, f32 [Hq], joining every row's softmax denominator (lib/attention/sinks.ts). */
  readonly sinks?: Tensor;
  /** Dropout on the attention probabilities, seeded and regenerated in the backward (lib/attention/dropout.ts). */
  readonly dropout?: DropoutOptions;
  /**
   * Also return `maxScore` [B, Hq, Sq] (f32): each row's max of the scaled, modded, unmasked scores in natural
   * units (−∞ for a fully masked row), as PyTorch's AuxRequest(lse=True, max_scores=True). No gradient flows
   * through it (a constant, as in PyTorch).
   */
  readonly returnAux?: boolean;
}

export interface FlexDims {
  readonly B: number;
  readonly Hq: number;
  readonly Hkv: number;
  readonly Sq: number;
  readonly Skv: number;
  readonly D: number;
  readonly Dv: number;
}

/** The fused call both output nodes share. */
export interface FlexCall {
  readonly q: Tensor;
  readonly k: Tensor;
  readonly v: Tensor;
  readonly scoreMod: TracedMod;
  readonly blockMask: BlockMask;
  readonly scale: number;
  readonly dims: FlexDims;
  readonly kernelOptions: KernelOptions;
  /** Dropout with p > 0 (undefined: none). */
  readonly dropout?: DropoutSpec;
  /** The call has a maxScore output (returnAux). */
  readonly aux?: boolean;
}

export const MIN_HEAD_DIM = 16;
export const MAX_HEAD_DIM = 256;

function check4d(name: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) throw new InvalidArgument({ message: `flexAttention: ${name} must be a Tensor` });
  if (t.rank !== 4) {
    throw new ShapeError({ message: `flexAttention: ${name} must be 4-D [B, H, S, D], got shape [${t.shape}]` });
  }
  if (t.dtype !== "f32" && t.dtype !== "f16") {
    throw new DTypeError({ message: `flexAttention: ${name} must be f32 or f16, got ${t.dtype} (convert with cast(${name}, "f16") or cast(${name}, "f32"))` });
  }
  return t;
}

function checkHeadDim(name: string, d: number): void {
  if (d < MIN_HEAD_DIM || d > MAX_HEAD_DIM || d % 4 !== 0) {
    throw new HeadDimError({
      message: `flexAttention: ${name} head dim ${d} is not supported (${MIN_HEAD_DIM}…${MAX_HEAD_DIM}, a multiple of 4)`,
    });
  }
}

/** Validates q/k/v and options; returns the FlexCall (exported for autodiff and the reference executor). */
export function makeFlexCall(q: Tensor, k: Tensor, v: Tensor, options: FlexOptions = {}): FlexCall {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new InvalidArgument({ message: `flexAttention: options must be an object such as { blockMask, scoreMod }, got ${options === null ? "null" : typeof options}` });
  }
  check4d("q", q); check4d("k", k); check4d("v", v);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
    throw new DTypeError({
      message: `flexAttention: q, k and v must share one dtype, got q ${q.dtype}, k ${k.dtype}, v ${v.dtype}; ` +
        `convert the others with cast(t, "${q.dtype}") (or all to "f32" for f32 math and storage)`,
    });
  }
  const [B, Hq, Sq, D] = q.shape;
  const [Bk, Hkv, Skv, Dk] = k.shape;
  const [Bv, Hv, Sv, Dv] = v.shape;
  if (Bk === 1 && Bv === 1 && B > 1) {
    // KV batch broadcast (one shared cache for a batch of queries): k, v expanded (a copy, summed back in the backward)
    k = expand(k, [B, Hkv, Skv, Dk]);
    v = expand(v, [B, Hv, Sv, Dv]);
  } else if (Bk !== B || Bv !== B) {
    throw new ShapeError({ message: `flexAttention: batch sizes differ: q ${B}, k ${Bk}, v ${Bv} (k and v may have batch 1 to be shared by every batch of q)` });
  }
  if (Dk !== D) throw new ShapeError({ message: `flexAttention: q head dim ${D} != k head dim ${Dk}` });
  if (Hv !== Hkv || Sv !== Skv) {
    throw new ShapeError({ message: `flexAttention: k [${k.shape}] and v [${v.shape}] must agree on heads and length` });
  }
  if (Sq < 1 || Skv < 1) throw new ShapeError({ message: `flexAttention: empty sequence (Sq=${Sq}, Skv=${Skv})` });
  checkHeadDim("q/k", D); checkHeadDim("v", Dv);
  if (Hq !== Hkv) {
    if (!options.enableGqa) {
      throw new HeadCountError({
        message: `flexAttention: q has ${Hq} heads but k/v have ${Hkv}; pass enableGqa: true for grouped-query attention` +
          (Hq > Sq && Hkv > Skv
            ? `. The sizes look like a [B, S, H, D] layout: flexAttention takes [B, H, S, D] — transpose(t, 1, 2) first`
            : ""),
      });
    }
    if (Hkv === 0 || Hq % Hkv !== 0) {
      throw new HeadCountError({ message: `flexAttention: with GQA, q heads (${Hq}) must be a multiple of k/v heads (${Hkv})` });
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw new InvalidArgument({ message: `flexAttention: scale must be a finite number, got ${scale}` });
  }
  // no mask: the noop mask; past a few thousand blocks its tables are lazy (computed at realize, on the device)
  const blockMask = options.blockMask ?? BlockMask.defaultFor(Sq, Skv);
  if (!(blockMask instanceof BlockMask)) {
    throw new InvalidArgument({ message: "flexAttention: blockMask must come from createBlockMask / BlockMask.fromKvBlocks" });
  }
  const [mq, mkv] = blockMask.seqLengths;
  if (mq !== Sq || mkv !== Skv) {
    throw new BlockMaskMismatch({
      message: `flexAttention: the BlockMask was built for lengths (q ${mq}, kv ${mkv}) but the inputs have (q ${Sq}, kv ${Skv}). ` +
        `Build a new mask with createBlockMask(maskMod, B, H, ${Sq}, ${Skv}), or use mask.adjust(${Sq}, ${Skv}) ` +
        `(adjust only re-slices the block tables; it is exact only when the mask does not depend on the lengths).`,
    });
  }
  const [mB, mH] = blockMask.shape;
  if (mB !== 1 && mB !== B) throw new BlockMaskMismatch({ message: `flexAttention: BlockMask batch ${mB} is neither 1 nor ${B}` });
  if (mH !== 1 && mH !== Hq) throw new BlockMaskMismatch({ message: `flexAttention: BlockMask heads ${mH} is neither 1 nor ${Hq} (query heads)` });
  const scoreMod = options.scoreMod ? traceScoreMod(options.scoreMod) : IDENTITY_SCORE;
  const dropout = checkDropout(options.dropout);
  if (options.returnAux !== undefined && typeof options.returnAux !== "boolean") {
    throw new InvalidArgument({ message: `flexAttention: returnAux must be true or false, got ${JSON.stringify(options.returnAux)}` });
  }
  return {
    q, k, v, scoreMod, blockMask, scale, dims: { B, Hq, Hkv, Sq, Skv, D, Dv },
    kernelOptions: validateKernelOptions(options.kernelOptions, blockMask.blockSize),
    ...(dropout ? { dropout } : {}), ...(options.returnAux ? { aux: true } : {}),
  };
}

/** The nodes of one call: maxScore only when the call has it (`call.aux`). */
export interface FlexNodes {
  readonly out: Tensor;
  readonly lse: Tensor;
  readonly maxScore?: Tensor;
}

const nodesOfCall = new WeakMap<FlexCall, FlexNodes>();

/** The lazy outputs of one call; the same node objects every time for the same call (lowering relies on it). */
export function flexNodes(call: FlexCall): FlexNodes {
  const hit = nodesOfCall.get(call);
  if (hit) return hit;
  const { B, Hq, Sq, Dv } = call.dims;
  // Everything the kernel reads is an input, so the executor realizes it first: q, k, v, the block
  // tables and the tensors the mods captured.
  const m = call.blockMask;
  const tables = [m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks, m.fullKvIndices].filter((t): t is Tensor => t !== null);
  const captures = [...call.scoreMod.captures, ...m.tracedMask.captures] as Tensor[];
  const inputs = [call.q, call.k, call.v, ...tables, ...captures];
  const nodes = {
    out: new Tensor("flexOut", inputs, [B, Hq, Sq, Dv], call.q.dtype, call),
    lse: new Tensor("flexLse", inputs, [B, Hq, Sq], "f32", call),
    ...(call.aux ? { maxScore: new Tensor("flexMaxScore", inputs, [B, Hq, Sq], "f32", call) } : {}),
  };
  nodesOfCall.set(call, nodes);
  return nodes;
}

const f32Calls = new WeakMap<FlexCall, FlexCall>();

/**
 * The same call on f32 copies of q, k, v (`cast` nodes): f16 storage with f32 math for kernels that read
 * f32 (the portable forward, the backward). The identity for an f32 call; memoized, so one f16 call has one
 * f32 twin and its nodes are computed once per realize.
 */
export function f32Call(call: FlexCall): FlexCall {
  if (call.q.dtype === "f32") return call;
  let hit = f32Calls.get(call);
  if (!hit) {
    // the twin is the portable f16 path (f32 math in the scalar kernel): not x3's tensor family, whose own tiering
    // would compile a second tensor kernel in the background behind the f16 one (H200: its ready 1.2 → 4.3 s)
    const kernelOptions = call.kernelOptions.family === "tensor" ? call.kernelOptions : { ...call.kernelOptions, f32Precision: "ieee" as const };
    hit = { ...call, q: cast(call.q, "f32"), k: cast(call.k, "f32"), v: cast(call.v, "f32"), kernelOptions };
    f32Calls.set(call, hit);
    f16Sources.set(hit, call);
  }
  return hit;
}

const f16Sources = new WeakMap<FlexCall, FlexCall>();

/** The f16 call whose f32 twin `call` is (undefined for any other call): the tensor backward reads its f16 inputs. */
export function f16SourceOf(call: FlexCall): FlexCall | undefined {
  return f16Sources.get(call);
}

/**
 * FlexAttention. Returns a lazy Tensor `[B, Hq, Sq, Dv]`, or `{ out, lse }` with `returnLse: true`
 * (lse: natural-log sum-exp of the modified, masked scores, `[B, Hq, Sq]`; −∞ for fully masked rows, whose out is 0),
 * or `{ out, lse, maxScore }` with `returnAux: true` (see FlexOptions.returnAux).
 *
 * @example
 * ```ts
 * import { andMasks, causalMask, createBlockMask, flexAttention, randn, slidingWindow } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const mask = await createBlockMask(andMasks(causalMask, slidingWindow(64)), null, null, 128, 128);
 * const out = flexAttention(q, k, v, { blockMask: mask, scoreMod: (s, _b, _h, qi, kv) => s.sub(qi.sub(kv).mul(0.01)) });
 * const { lse } = flexAttention(q, k, v, { blockMask: mask, returnLse: true });
 * const values = await out.toArray(); // Float32Array(1·2·128·32)
 * ```
 */
export function flexAttention(q: Tensor, k: Tensor, v: Tensor, options: FlexOptions & { returnAux: true }): { out: Tensor; lse: Tensor; maxScore: Tensor };
/** FlexAttention returning `{ out, lse }` (`returnLse: true`). */
export function flexAttention(q: Tensor, k: Tensor, v: Tensor, options: FlexOptions & { returnLse: true }): { out: Tensor; lse: Tensor };
/** FlexAttention returning `out` [B, Hq, Sq, Dv]. */
export function flexAttention(q: Tensor, k: Tensor, v: Tensor, options?: FlexOptions & { returnLse?: false }): Tensor;
/** FlexAttention with options known only at run time. */
export function flexAttention(q: Tensor, k: Tensor, v: Tensor, options?: FlexOptions): Tensor | { out: Tensor; lse: Tensor; maxScore?: Tensor };
export function flexAttention(q: Tensor, k: Tensor, v: Tensor, options: FlexOptions = {}): Tensor | { out: Tensor; lse: Tensor; maxScore?: Tensor } {
  const call = makeFlexCall(q, k, v, options);
  const raw = flexNodes(call);
  const nodes = options.sinks === undefined ? { out: raw.out, lse: raw.lse } : withSinks(raw.out, raw.lse, checkSinks(options.sinks, call.dims.Hq));
  if (call.aux) return { ...nodes, maxScore: raw.maxScore! };
  return options.returnLse ? nodes : nodes.out;
}
