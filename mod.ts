/**
 * @flex/attention — FlexAttention for JavaScript on WebGPU.
 *
 * Public surface only: re-exports, no logic. Importing this module installs the runtime (the realizer
 * behind `Tensor.toArray()`), which picks a provider on first use: Dawn → the runtime's navigator.gpu → CPU.
 */
export { Tensor, tensor, randn, full, zeros, arange, type DType, type TypedData } from "./lib/tensor/mod.ts";
export { Expr, type Scalar } from "./lib/ir/expr.ts";
export * from "./lib/mods/mod.ts";
export * from "./lib/blockmask/mod.ts";
export { blockMaskSvg, type BlockMaskSvgOptions } from "./lib/blockmask/picture.ts";
// PNG / SVG pictures of a BlockMask and of the attention scores after the mods (attention-gym's visualizers)
export {
  type PictureFormat, type ScoreMatrix, scoreMatrix, type ScoreMatrixOptions, visualizeBlockMask, type VisualizeBlockMaskOptions,
  visualizeScores, type VisualizeScoresOptions,
} from "./lib/visualize/mod.ts";
export {
  flexAttention,
  type FlexOptions,
  type KernelOptions,
} from "./lib/attention/flex_attention.ts";
// the Promise-level runtime; the Effect-level one (Gpu service, layers, executors) is ./effect.ts
export {
  type BufferStats, bufferStats, type DeviceInfo, deviceInfo, liveBufferCount, poisonEnabled, type ProviderName, providerReport,
  type ProviderReport, realizeAll, resetBufferPeaks, resetRuntime, setPoison,
} from "./lib/runtime/mod.ts";
// FLEX_LOG=info|debug, or set in code
export { type LogLevel, logLevel, setLogLevel, setLogSink } from "./lib/runtime/log.ts";
export * from "./lib/errors.ts";
export { backward, grad, valueAndGrad, vjp, type Back, type Cotangent } from "./lib/passes/mod.ts";
export { add, cast, expand, mul, mulScalar, neg, reshape, sub } from "./lib/tensor/ops.ts";
// tensor ops (sum with an optional dim; where dispatches: Tensor arguments → the tensor op, Expr / numbers → the IR's)
export {
  and, div, eq, exp, gather, ge, gt, le, log, logsumexp, lt, matmul, max, ne, not, or, type ReduceOptions,
  repeat, repeatInterleave, softmax, sum, tanh, type TensorLike, transpose, where,
} from "./lib/tensor/tensor_ops.ts";
export { f16Bits, f16ToNumber, hasFloat16Array } from "./lib/tensor/dtype.ts";
export { denseAttention } from "./lib/attention/baselines.ts";
export { type AttentionPart, mergeAttention } from "./lib/attention/merge.ts";
export { type PagedAttentionOptions, pagedAttention, PagedKVCache, type PagedKVCacheOptions } from "./lib/attention/paged.ts";
export type { DropoutOptions } from "./lib/attention/dropout.ts";
export { explain, type Explanation } from "./lib/lower/explain.ts";
// types the signatures above mention, exported so the documentation can link them (deno doc --lint)
export type { CaptureSource, CustomOpDef, Op as ExprOp, ScalarType } from "./lib/ir/expr.ts";
export type { Op as TensorOp, OpArgs } from "./lib/tensor/op.ts";
export type { Nested } from "./lib/tensor/tensor.ts";
export type { Outputs } from "./lib/passes/autodiff.ts";
export type { Capabilities } from "./lib/lower/capabilities.ts";
export type { Compiled } from "./lib/mods/evaluate.ts";
