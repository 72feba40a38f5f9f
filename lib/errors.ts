/**
 * Every failure the library reports, as tagged error classes (`Data.TaggedError`): each is a real
 * `Error` (throwable from pure graph construction) and a typed failure inside Effects (`catchTag`).
 * Messages teach: they say what was expected, what was found, and how to fix it.
 */
import { Data } from "effect";

type Msg = { readonly message: string };

/** A tensor argument has the wrong rank or sizes. */
export class ShapeError extends Data.TaggedError("ShapeError")<Msg> {}
/** A tensor argument has a dtype the operation does not accept. */
export class DTypeError extends Data.TaggedError("DTypeError")<Msg> {}
/** Query heads are not a multiple of key/value heads, or GQA was needed but not enabled. */
export class HeadCountError extends Data.TaggedError("HeadCountError")<Msg> {}
/** The head dimension is outside what the kernels support (16…256, multiple of 4). */
export class HeadDimError extends Data.TaggedError("HeadDimError")<Msg> {}
/** Query/key lengths or batch/head sizes do not match the BlockMask they are used with. */
export class BlockMaskMismatch extends Data.TaggedError("BlockMaskMismatch")<Msg> {}
/** A mod returned the wrong kind of value (a mask mod must return a bool, a score mod a number). */
export class ModReturnTypeError extends Data.TaggedError("ModReturnTypeError")<Msg> {}
/** A mod used an operator on operands of the wrong kind (e.g. `and` on floats). */
export class ModTypeError extends Data.TaggedError("ModTypeError")<Msg> {}
/** A captured tensor was read (`t.at(...)`) with an index outside its shape. */
export class CaptureOutOfRange extends Data.TaggedError("CaptureOutOfRange")<Msg> {}
/** Any other invalid argument (options, sizes, block sizes). */
export class InvalidArgument extends Data.TaggedError("InvalidArgument")<Msg> {}
/** Autodiff: grad of a non-scalar output, or a cotangent of the wrong shape. */
export class GradError extends Data.TaggedError("GradError")<Msg> {}
/** Autodiff: a mod's derivative is undefined (NaN) where it was evaluated. */
export class UndefinedDerivative extends Data.TaggedError("UndefinedDerivative")<Msg> {}

/** No WebGPU adapter could be obtained from the requested provider. */
export class AdapterUnavailable extends Data.TaggedError("AdapterUnavailable")<Msg & { readonly provider: string }> {}
/** `FLEX_WEBGPU` / the layer option named a provider that does not exist. */
export class UnknownProvider extends Data.TaggedError("UnknownProvider")<Msg> {}
/** The adapter computed a wrong answer for the self-test kernel and was refused. */
export class SelfTestFailed extends Data.TaggedError("SelfTestFailed")<Msg & { readonly adapter: string }> {}
/** The device was lost while work was in flight. */
export class DeviceLost extends Data.TaggedError("DeviceLost")<Msg> {}
/** Allocation failed on the device. */
export class OutOfDeviceMemory extends Data.TaggedError("OutOfDeviceMemory")<Msg> {}
/** A buffer would exceed the device's maxBufferSize / maxStorageBufferBindingSize. */
export class BufferTooLarge extends Data.TaggedError("BufferTooLarge")<Msg & { readonly bytes: number; readonly limit: number }> {}
/** Generated WGSL failed to compile (a bug in the library: the message holds the source location). */
export class KernelCompileError extends Data.TaggedError("KernelCompileError")<Msg & { readonly source: string }> {}
/** No kernel configuration fits the device's limits for this problem. */
export class NoConfigFits extends Data.TaggedError("NoConfigFits")<Msg> {}
/** A mod applied a JS operator (`>=`, `*`, `&&`, `!`, a template string) to a symbolic value instead of a method. */
export class ModOperatorError extends Data.TaggedError("ModOperatorError")<Msg> {}
/** A mod declares the wrong parameters (a mask mod takes (b, h, q, kv), a score mod (score, b, h, q, kv)). */
export class ModArityError extends Data.TaggedError("ModArityError")<Msg> {}
/** `resetRuntime()` disposed the runtime while this realize was in flight (realize again: a new runtime opens). */
export class RuntimeReset extends Data.TaggedError("RuntimeReset")<Msg> {}

export type FlexError =
  | ShapeError | DTypeError | HeadCountError | HeadDimError | BlockMaskMismatch | ModReturnTypeError
  | ModTypeError | CaptureOutOfRange | InvalidArgument | GradError | UndefinedDerivative
  | AdapterUnavailable | UnknownProvider | SelfTestFailed | DeviceLost | OutOfDeviceMemory
  | BufferTooLarge | KernelCompileError | NoConfigFits | ModOperatorError | ModArityError | RuntimeReset;
