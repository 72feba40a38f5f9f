/** Helpers the gallery shares to accept tensors or plain arrays as captured data. */
import { type DType, Tensor, tensor } from "../../tensor/tensor.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../../errors.ts";

/** `x` as a constant tensor of `dtype` and rank `rank`; plain arrays are converted (and checked). */
export function asTensor(x: Tensor | ArrayLike<number> | readonly (readonly number[])[], dtype: DType, rank: number, what: string): Tensor {
  let t: Tensor;
  if (x instanceof Tensor) {
    t = x;
  } else {
    try {
      t = tensor(x as ArrayLike<number>, undefined, { dtype });
    } catch (e) {
      throw new InvalidArgument({ message: `${what}: ${(e as Error).message}` });
    }
  }
  if (t.dtype !== dtype) throw new DTypeError({ message: `${what} must be ${dtype}, got ${t.dtype}` });
  if (t.rank !== rank) throw new ShapeError({ message: `${what} must have rank ${rank}, got shape [${t.shape}]` });
  return t;
}

/** The values of a constant tensor (captured data must be known on the CPU to derive tables from it). */
export function valuesOf(t: Tensor, what: string): ArrayLike<number> {
  const d = t.data;
  if (!d) throw new InvalidArgument({ message: `${what} must be a constant tensor (its values are needed on the CPU)` });
  return d;
}
