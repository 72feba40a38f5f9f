/** Host arrays of the CPU executor's results, in the dtype the GPU would store. */
import type { DType, TypedData } from "../../tensor/tensor.ts";
import { fromValues, toF16Data } from "../../tensor/dtype.ts";

/** float64 results rounded to binary16, as an f16 tensor's host data. */
export function f16Values(x: ArrayLike<number>): TypedData { return toF16Data(x); }

/** A zeroed host array of `n` elements of `dtype`. */
export function allocData(dtype: DType, n: number): TypedData {
  return dtype === "i32" || dtype === "bool" ? new Int32Array(n) : dtype === "f16" ? fromValues("f16", new Float32Array(n)) : new Float32Array(n);
}

/** Values computed in float64, stored as `dtype` (f16 rounds to nearest even). */
export function storeAs(dtype: DType, x: ArrayLike<number>): TypedData { return fromValues(dtype, x); }
