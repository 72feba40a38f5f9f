/**
 * `matmul(a, b)`: torch.matmul. Rank ≥ 2 operands are batched matrix products `[..., M, K] @ [..., K, N]`
 * with the batch dims broadcast (NumPy rules); a rank-1 operand is a vector (a row for `a`, a column for
 * `b`) whose dim is dropped from the result, as in PyTorch. f32 / f16 (f32 accumulation), equal dtypes.
 *
 *   op      inputs   shape
 *   matmul  [a, b]   [...broadcast(a.batch, b.batch), M, N]   (both of rank ≥ 2: vectors are reshaped around it)
 */
import { Tensor } from "./tensor.ts";
import { isFloatDType } from "./dtype.ts";
import { broadcastShapes } from "./shape.ts";
import { reshape } from "./ops.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

/**
 * Batched matrix product a @ b (batch dims broadcast, as `torch.matmul`).
 *
 * @example
 * ```ts
 * import { matmul, randn } from "@flex/attention";
 * const c = matmul(randn([2, 4, 8]), randn([2, 8, 3])); // [2, 4, 3]
 * ```
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) throw new InvalidArgument({ message: "matmul(): both operands must be Tensors" });
  if (a.dtype !== b.dtype) {
    throw new DTypeError({ message: `matmul(): operands have dtypes ${a.dtype} and ${b.dtype}; they must match (convert one with cast)` });
  }
  if (!isFloatDType(a.dtype)) throw new DTypeError({ message: `matmul(): needs f32 or f16 operands, got ${a.dtype} (cast(t, "f32") first)` });
  if (a.rank === 0 || b.rank === 0) {
    throw new ShapeError({ message: `matmul(): operands must have rank ≥ 1, got [${a.shape}] and [${b.shape}] (use mul for a scalar)` });
  }
  const av = a.rank === 1 ? reshape(a, [1, a.shape[0]]) : a;
  const bv = b.rank === 1 ? reshape(b, [b.shape[0], 1]) : b;
  const [M, K] = av.shape.slice(-2), [K2, N] = bv.shape.slice(-2);
  if (K !== K2) {
    throw new ShapeError({ message: `matmul(): [${a.shape}] @ [${b.shape}]: the contracted sizes differ (${K} vs ${K2})` });
  }
  const batch = broadcastShapes("matmul", av.shape.slice(0, -2), bv.shape.slice(0, -2));
  if (batch.length > 4) throw new ShapeError({ message: `matmul(): at most 4 batch dims are supported, got [${batch}]` });
  const out = new Tensor("matmul", [av, bv], [...batch, M, N], a.dtype, undefined);
  if (a.rank === 1 && b.rank === 1) return reshape(out, []);
  if (a.rank === 1) return reshape(out, [...batch, N]);
  if (b.rank === 1) return reshape(out, [...batch, M]);
  return out;
}
