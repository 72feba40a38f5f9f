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

/** The fields every error carries; some errors add their own (provider, adapter, bytes, limit, source). */
export interface ErrorFields {
  /** What was expected, what was found, and how to fix it. */
  readonly message: string;
}

/** An instance of {@link FlexErrorBase}: an Error whose fields are A. */
export type FlexErrorInstance<A extends ErrorFields> = Error & Readonly<A>;

/** The type of {@link FlexErrorBase}'s constructor (generic over the fields). */
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
  override get name(): string {
    return this._tag ?? "Error";
  }
} as unknown as FlexErrorConstructor;

/** A tensor argument has the wrong rank or sizes. */
export class ShapeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ShapeError" as const;
}
/** A tensor argument has a dtype the operation does not accept. */
export class DTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "DTypeError" as const;
}
/** Query heads are not a multiple of key/value heads, or GQA was needed but not enabled. */
export class HeadCountError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "HeadCountError" as const;
}
/** The head dimension is outside what the kernels support (16…256, multiple of 4). */
export class HeadDimError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "HeadDimError" as const;
}
/** Query/key lengths or batch/head sizes do not match the BlockMask they are used with. */
export class BlockMaskMismatch extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "BlockMaskMismatch" as const;
}
/** A mod returned the wrong kind of value (a mask mod must return a bool, a score mod a number). */
export class ModReturnTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModReturnTypeError" as const;
}
/** A mod used an operator on operands of the wrong kind (e.g. `and` on floats). */
export class ModTypeError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModTypeError" as const;
}
/** A captured tensor was read (`t.at(...)`) with an index outside its shape. */
export class CaptureOutOfRange extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "CaptureOutOfRange" as const;
}
/** Any other invalid argument (options, sizes, block sizes). */
export class InvalidArgument extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "InvalidArgument" as const;
}
/** Autodiff: grad of a non-scalar output, or a cotangent of the wrong shape. */
export class GradError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "GradError" as const;
}
/** Autodiff: a mod's derivative is undefined (NaN) where it was evaluated. */
export class UndefinedDerivative extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "UndefinedDerivative" as const;
}

/** No WebGPU adapter could be obtained from the requested provider. */
export class AdapterUnavailable extends FlexErrorBase<ErrorFields & { readonly provider: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "AdapterUnavailable" as const;
}
/** `FLEX_WEBGPU` / the layer option named a provider that does not exist. */
export class UnknownProvider extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "UnknownProvider" as const;
}
/** The adapter computed a wrong answer for the self-test kernel and was refused. */
export class SelfTestFailed extends FlexErrorBase<ErrorFields & { readonly adapter: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "SelfTestFailed" as const;
}
/** The device was lost while work was in flight. */
export class DeviceLost extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "DeviceLost" as const;
}
/** Allocation failed on the device. */
export class OutOfDeviceMemory extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "OutOfDeviceMemory" as const;
}
/** A buffer would exceed the device's maxBufferSize / maxStorageBufferBindingSize. */
export class BufferTooLarge extends FlexErrorBase<ErrorFields & { readonly bytes: number; readonly limit: number }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "BufferTooLarge" as const;
}
/** Generated WGSL failed to compile (a bug in the library: the message holds the source location). */
export class KernelCompileError extends FlexErrorBase<ErrorFields & { readonly source: string }> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "KernelCompileError" as const;
}
/** No kernel configuration fits the device's limits for this problem. */
export class NoConfigFits extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "NoConfigFits" as const;
}
/** A mod applied a JS operator (`>=`, `*`, `&&`, `!`, a template string) to a symbolic value instead of a method. */
export class ModOperatorError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModOperatorError" as const;
}
/** A mod declares the wrong parameters (a mask mod takes (b, h, q, kv), a score mod (score, b, h, q, kv)). */
export class ModArityError extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "ModArityError" as const;
}
/** `resetRuntime()` disposed the runtime while this realize was in flight (realize again: a new runtime opens). */
export class RuntimeReset extends FlexErrorBase<ErrorFields> {
  /** The `Effect.catchTag` key. */
  readonly _tag = "RuntimeReset" as const;
}

/** Every error the library raises (the union of the classes above). */
export type FlexError =
  | ShapeError | DTypeError | HeadCountError | HeadDimError | BlockMaskMismatch | ModReturnTypeError
  | ModTypeError | CaptureOutOfRange | InvalidArgument | GradError | UndefinedDerivative
  | AdapterUnavailable | UnknownProvider | SelfTestFailed | DeviceLost | OutOfDeviceMemory
  | BufferTooLarge | KernelCompileError | NoConfigFits | ModOperatorError | ModArityError | RuntimeReset;
