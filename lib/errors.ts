/**
 * Every failure the library reports, as tagged error classes: each is a real `Error` (throwable from pure
 * graph construction, `instanceof`-checkable) and, at runtime, Effect's yieldable error (`Data.Error`), so it
 * is a typed failure inside Effects with `_tag` as its `catchTag` key. Messages teach: they say what was
 * expected, what was found, and how to fix it.
 *
 * The classes extend one explicitly typed base (not `Data.TaggedError(tag)` per class) so that JSR's fast
 * check can read the published types without inference; the observable shape is the same: `name` and
 * `_tag` are the class name, fields are own properties, `message` is the Error's message.
 * @module
 */
import { Data } from "effect";

/**
 * The fields every error carries; some errors add their own (provider, adapter, bytes, limit, source).
 *
 * @example
 * ```ts
 * import { InvalidArgument } from "@flex/attention";
 * const e = new InvalidArgument({ message: "blockSize must be a positive integer, got 0" });
 * ```
 */
export interface ErrorFields {
  /** What was expected, what was found, and how to fix it. */
  readonly message: string;
}

/**
 * An instance of {@link FlexErrorBase}: an Error whose fields are A.
 *
 * @example
 * ```ts
 * import { ShapeError, type FlexErrorInstance, type ErrorFields } from "@flex/attention";
 * const e: FlexErrorInstance<ErrorFields> = new ShapeError({ message: "q must be 4-D" });
 * ```
 */
export type FlexErrorInstance<A extends ErrorFields> = Error & Readonly<A>;

/**
 * The type of {@link FlexErrorBase}'s constructor (generic over the fields).
 *
 * @example
 * ```ts
 * import { FlexErrorBase, type FlexErrorConstructor } from "@flex/attention";
 * const Base: FlexErrorConstructor = FlexErrorBase;
 * ```
 */
export type FlexErrorConstructor = new <A extends ErrorFields>(args: A) => FlexErrorInstance<A>;

/**
 * The base class of every error below. Subclasses add a literal `_tag` (their class name); `name` reads it.
 *
 * @example Catching a typed error
 * ```ts
 * import { InvalidArgument, ShapeError, flexAttention, randn } from "@flex/attention";
 * try {
 *   flexAttention(randn([1, 1, 8, 16]), randn([1, 1, 8, 32]), randn([1, 1, 8, 16]));
 * } catch (e) {
 *   if (e instanceof ShapeError) console.log(e._tag, e.message); // says which sizes to change
 * }
 * ```
 */
export const FlexErrorBase: FlexErrorConstructor = class extends Data.Error<ErrorFields> {
  /** The class's tag (Effect's `Data.TaggedError` convention). */
  declare readonly _tag: string;
  constructor(args: ErrorFields) {
    super(args);
    // JavaScriptCore (Bun) formats `stack` during construction, before the subclass's `_tag` field exists:
    // start it with the class name, as V8 does (and as Data.TaggedError's prototype name did)
    const stack = (this as { stack?: unknown }).stack;
    if (typeof stack === "string" && stack.startsWith("Error")) this.stack = new.target.name + stack.slice("Error".length);
  }
  override get name(): string {
    return this._tag ?? "Error";
  }
} as unknown as FlexErrorConstructor;

/**
 * A tensor argument has the wrong rank or sizes.
 *
 * @example
 * ```ts
 * import { ShapeError, flexAttention, randn } from "@flex/attention";
 * try { flexAttention(randn([1, 1, 8, 16]), randn([1, 1, 8, 32]), randn([1, 1, 8, 16])); }
 * catch (e) { if (e instanceof ShapeError) console.log(e.message); } // k's head dim differs from q's
 * ```
 */
export class ShapeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ShapeError" as const;
}
/**
 * A tensor argument has a dtype the operation does not accept.
 *
 * @example
 * ```ts
 * import { DTypeError, flexAttention, randn } from "@flex/attention";
 * try { flexAttention(randn([1, 1, 8, 16], { dtype: "f16" }), randn([1, 1, 8, 16]), randn([1, 1, 8, 16])); }
 * catch (e) { if (e instanceof DTypeError) console.log(e.message); } // says what to cast
 * ```
 */
export class DTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "DTypeError" as const;
}
/**
 * Query heads are not a multiple of key/value heads, or GQA was needed but not enabled.
 *
 * @example
 * ```ts
 * import { HeadCountError, flexAttention, randn } from "@flex/attention";
 * const q = randn([1, 4, 8, 16]), kv = randn([1, 2, 8, 16]);
 * try { flexAttention(q, kv, kv); } catch (e) { if (e instanceof HeadCountError) console.log(e.message); } // enableGqa: true
 * ```
 */
export class HeadCountError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "HeadCountError" as const;
}
/**
 * The head dimension is outside what the kernels support (16…256, multiple of 4).
 *
 * @example
 * ```ts
 * import { HeadDimError, flexAttention, randn } from "@flex/attention";
 * const x = randn([1, 1, 8, 6]);
 * try { flexAttention(x, x, x); } catch (e) { if (e instanceof HeadDimError) console.log(e.message); }
 * ```
 */
export class HeadDimError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "HeadDimError" as const;
}
/**
 * Query/key lengths or batch/head sizes do not match the BlockMask they are used with.
 *
 * @example
 * ```ts
 * import { BlockMaskMismatch, causalMask, createBlockMask, flexAttention, randn } from "@flex/attention";
 * const mask = await createBlockMask(causalMask, null, null, 256, 256), x = randn([1, 1, 128, 16]);
 * try { flexAttention(x, x, x, { blockMask: mask }); } catch (e) { if (e instanceof BlockMaskMismatch) console.log(e.message); }
 * ```
 */
export class BlockMaskMismatch extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "BlockMaskMismatch" as const;
}
/**
 * A mod returned the wrong kind of value (a mask mod must return a bool, a score mod a number).
 *
 * @example
 * ```ts
 * import { ModReturnTypeError, createBlockMask, randn } from "@flex/attention";
 * const x = randn([1, 1, 8, 16]);
 * try { await createBlockMask((_b, _h, q, _kv) => q.add(1), null, null, 8, 8); } // a number, not a bool
 * catch (e) { if (e instanceof ModReturnTypeError) console.log(e.message); }
 * ```
 */
export class ModReturnTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModReturnTypeError" as const;
}
/**
 * A mod used an operator on operands of the wrong kind (e.g. `and` on floats).
 *
 * @example
 * ```ts
 * import { ModTypeError, createBlockMask } from "@flex/attention";
 * try { await createBlockMask((_b, _h, q, kv) => q.and(kv), null, null, 8, 8); } // and() of two i32
 * catch (e) { if (e instanceof ModTypeError) console.log(e.message); }
 * ```
 */
export class ModTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModTypeError" as const;
}
/**
 * A captured tensor was read (`t.at(...)`) with an index outside its shape.
 *
 * @example
 * ```ts
 * import { CaptureOutOfRange, flexAttention, randn } from "@flex/attention";
 * const bias = randn([4]), x = randn([1, 1, 8, 16]);
 * // bias.at(q) reads past index 3 for q ≥ 4: the realize rejects with CaptureOutOfRange
 * await flexAttention(x, x, x, { scoreMod: (s, _b, _h, q) => s.add(bias.at(q)) }).toArray().catch((e) => { if (e instanceof CaptureOutOfRange) console.log(e.message); });
 * ```
 */
export class CaptureOutOfRange extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "CaptureOutOfRange" as const;
}
/**
 * Any other invalid argument (options, sizes, block sizes).
 *
 * @example
 * ```ts
 * import { InvalidArgument, slidingWindow } from "@flex/attention";
 * try { slidingWindow(-1); } catch (e) { if (e instanceof InvalidArgument) console.log(e.message); }
 * ```
 */
export class InvalidArgument extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "InvalidArgument" as const;
}
/**
 * Autodiff: grad of a non-scalar output, or a cotangent of the wrong shape.
 *
 * @example
 * ```ts
 * import { GradError, grad, mulScalar, randn } from "@flex/attention";
 * const x = randn([2, 2]);
 * try { grad((x) => mulScalar(x, 2))(x); } // grad needs a scalar output
 * catch (e) { if (e instanceof GradError) console.log(e.message); }
 * ```
 */
export class GradError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "GradError" as const;
}
/**
 * Autodiff: a mod's derivative is undefined (NaN) where it was evaluated.
 *
 * @example
 * ```ts
 * import { UndefinedDerivative, flexAttention, randn, vjp } from "@flex/attention";
 * // the derivative of sqrt at 0 is undefined: the gradient's realize reports where
 * const x = randn([1, 1, 8, 16]);
 * const [, back] = vjp((q) => flexAttention(q, x, x, { scoreMod: (s) => s.mul(s).sqrt() }), x);
 * await back(x)[0].toArray().catch((e) => { if (e instanceof UndefinedDerivative) console.log(e.message); });
 * ```
 */
export class UndefinedDerivative extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "UndefinedDerivative" as const;
}

/**
 * No WebGPU adapter could be obtained from the requested provider.
 *
 * @example
 * ```ts
 * import { AdapterUnavailable, randn } from "@flex/attention";
 * // FLEX_WEBGPU=dawn on a machine without a Dawn adapter: the first realize rejects with it
 * await randn([2]).toArray().catch((e) => { if (e instanceof AdapterUnavailable) console.log(e.provider, e.message); });
 * ```
 */
export class AdapterUnavailable extends FlexErrorBase<ErrorFields & { readonly provider: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "AdapterUnavailable" as const;
}
/**
 * `FLEX_WEBGPU` / the layer option named a provider that does not exist.
 *
 * @example
 * ```ts
 * import { UnknownProvider, randn } from "@flex/attention";
 * // FLEX_WEBGPU=vulkan (no such provider): the first realize rejects, naming the valid ones
 * await randn([2]).toArray().catch((e) => { if (e instanceof UnknownProvider) console.log(e.message); });
 * ```
 */
export class UnknownProvider extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "UnknownProvider" as const;
}
/**
 * The adapter computed a wrong answer for the self-test kernel and was refused.
 *
 * @example
 * ```ts
 * import { SelfTestFailed, randn } from "@flex/attention";
 * // an adapter that computes a wrong self-test answer is refused (auto mode moves on to the next provider)
 * await randn([2]).toArray().catch((e) => { if (e instanceof SelfTestFailed) console.log(e.adapter, e.message); });
 * ```
 */
export class SelfTestFailed extends FlexErrorBase<ErrorFields & { readonly adapter: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "SelfTestFailed" as const;
}
/**
 * The device was lost while work was in flight.
 *
 * @example
 * ```ts
 * import { DeviceLost, flexAttention, randn } from "@flex/attention";
 * const x = randn([1, 1, 64, 16]);
 * const out = await flexAttention(x, x, x).toArray().catch(async (e) => {
 *   if (e instanceof DeviceLost) return await flexAttention(x, x, x).toArray(); // the runtime opened a new device
 *   throw e;
 * });
 * ```
 */
export class DeviceLost extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "DeviceLost" as const;
}
/**
 * Allocation failed on the device.
 *
 * @example
 * ```ts
 * import { OutOfDeviceMemory, randn } from "@flex/attention";
 * await randn([1 << 20]).toArray().catch((e) => { if (e instanceof OutOfDeviceMemory) console.log(e.message); });
 * ```
 */
export class OutOfDeviceMemory extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "OutOfDeviceMemory" as const;
}
/**
 * A buffer would exceed the device's maxBufferSize / maxStorageBufferBindingSize.
 *
 * @example
 * ```ts
 * import { BufferTooLarge, flexAttention, randn } from "@flex/attention";
 * const x = randn([1, 1, 8, 16]);
 * await flexAttention(x, x, x).toArray().catch((e) => { if (e instanceof BufferTooLarge) console.log(e.bytes, e.limit); });
 * ```
 */
export class BufferTooLarge extends FlexErrorBase<ErrorFields & { readonly bytes: number; readonly limit: number }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "BufferTooLarge" as const;
}
/**
 * Generated WGSL failed to compile (a bug in the library: the message holds the source location).
 *
 * @example
 * ```ts
 * import { KernelCompileError, flexAttention, randn } from "@flex/attention";
 * const x = randn([1, 1, 8, 16]);
 * // a library bug, not a user error: the message holds the WGSL location; please report it
 * await flexAttention(x, x, x).toArray().catch((e) => { if (e instanceof KernelCompileError) console.error(e.source); });
 * ```
 */
export class KernelCompileError extends FlexErrorBase<ErrorFields & { readonly source: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "KernelCompileError" as const;
}
/**
 * No kernel configuration fits the device's limits for this problem.
 *
 * @example
 * ```ts
 * import { NoConfigFits, flexAttention, randn } from "@flex/attention";
 * // D = 256 with 128×128 tiles needs more workgroup memory than a 32 KiB GPU has (the CPU executor runs no kernels)
 * const x = randn([1, 1, 64, 256]);
 * await flexAttention(x, x, x, { kernelOptions: { blockM: 128, blockN: 128 } }).toArray()
 *   .catch((e) => { if (e instanceof NoConfigFits) console.log(e.message); });
 * ```
 */
export class NoConfigFits extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "NoConfigFits" as const;
}
/**
 * A mod applied a JS operator (`>=`, `*`, `&&`, `!`, a template string) to a symbolic value instead of a method.
 *
 * @example
 * ```ts
 * import { ModOperatorError, createBlockMask } from "@flex/attention";
 * try { await createBlockMask((_b, _h, q, kv) => (q as unknown as number) >= (kv as unknown as number), null, null, 8, 8); } // use q.ge(kv)
 * catch (e) { if (e instanceof ModOperatorError) console.log(e.message); }
 * ```
 */
export class ModOperatorError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModOperatorError" as const;
}
/**
 * A mod declares the wrong parameters (a mask mod takes (b, h, q, kv), a score mod (score, b, h, q, kv)).
 *
 * @example
 * ```ts
 * import { ModArityError, createBlockMask } from "@flex/attention";
 * try { await createBlockMask(((q: never) => q) as never, null, null, 8, 8); } // a mask mod takes (b, h, q, kv)
 * catch (e) { if (e instanceof ModArityError) console.log(e.message); }
 * ```
 */
export class ModArityError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModArityError" as const;
}
/**
 * `resetRuntime()` disposed the runtime while this realize was in flight (realize again: a new runtime opens).
 *
 * @example
 * ```ts
 * import { RuntimeReset, randn, resetRuntime } from "@flex/attention";
 * const pending = randn([4]).toArray();
 * await resetRuntime(); // in-flight realizes reject with RuntimeReset: realize again
 * await pending.catch((e) => { if (e instanceof RuntimeReset) console.log(e.message); });
 * ```
 */
export class RuntimeReset extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "RuntimeReset" as const;
}

/**
 * Every error the library raises (the union of the classes above).
 *
 * @example
 * ```ts
 * import { flexAttention, randn, type FlexError } from "@flex/attention";
 * const x = randn([1, 1, 8, 16]);
 * await flexAttention(x, x, x).toArray().catch((e: FlexError) => console.log(e._tag, e.message));
 * ```
 */
export type FlexError =
  | ShapeError | DTypeError | HeadCountError | HeadDimError | BlockMaskMismatch | ModReturnTypeError
  | ModTypeError | CaptureOutOfRange | InvalidArgument | GradError | UndefinedDerivative
  | AdapterUnavailable | UnknownProvider | SelfTestFailed | DeviceLost | OutOfDeviceMemory
  | BufferTooLarge | KernelCompileError | NoConfigFits | ModOperatorError | ModArityError | RuntimeReset;
