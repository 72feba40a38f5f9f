/**
 * Data-movement ops (copies through index maps on the executors):
 *
 *   op                inputs       shape                                        arg
 *   transpose         [t]          t.shape with dims a, b swapped               [a, b] (non-negative)
 *   repeat            [t]          (t.shape left-padded with 1s) · sizes        sizes (PyTorch Tensor.repeat)
 *   repeatInterleave  [t]          t.shape with dim · repeats                   { repeats, dim }
 *   gather            [t, index]   index.shape                                  dim (torch.gather)
 *   scatterAdd        [src, index] the target shape (gather's adjoint)          dim
 *
 * `expand` and `reshape` live in ops.ts (the autodiff glue); all of these are re-exported by mod.ts.
 */
import { Tensor } from "./tensor.ts";
import { normDim } from "./shape.ts";
import { reshape } from "./ops.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";

function operand(op: string, t: unknown, name = "the operand"): Tensor {
  if (!(t instanceof Tensor)) throw new InvalidArgument({ message: `${op}(): ${name} must be a Tensor, got ${t === null ? "null" : typeof t}` });
  return t;
}

function count(op: string, n: unknown, what: string): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
    throw new InvalidArgument({ message: `${op}(): ${what} must be an integer ≥ 0, got ${String(n)}` });
  }
  return n;
}

/**
 * `transpose(t, dimA, dimB)`: dims a and b swapped (negative dims count from the end); a == b gives t.
 *
 * @example
 * ```ts
 * import { randn, transpose } from "@flex/attention";
 * const kT = transpose(randn([1, 2, 8, 4]), -2, -1); // [1, 2, 4, 8]
 * ```
 */
export function transpose(t: Tensor, dimA: number, dimB: number): Tensor {
  const x = operand("transpose", t);
  const a = normDim("transpose", dimA, x.rank), b = normDim("transpose", dimB, x.rank);
  if (a === b) return x;
  const shape = [...x.shape];
  [shape[a], shape[b]] = [shape[b], shape[a]];
  return new Tensor("transpose", [x], shape, x.dtype, [Math.min(a, b), Math.max(a, b)] as const);
}

/**
 * `repeat(t, ...sizes)` (or `repeat(t, [sizes])`): PyTorch's Tensor.repeat: the tensor tiled `sizes[d]`
 * times along each dim; `sizes` may have more dims than t (t is then viewed with leading 1s).
 *
 * @example
 * ```ts
 * import { repeat, tensor } from "@flex/attention";
 * await repeat(tensor([1, 2]), 2).toArray(); // [1, 2, 1, 2]
 * ```
 */
export function repeat(t: Tensor, ...sizes: number[] | [readonly number[]]): Tensor {
  const x = operand("repeat", t);
  const list: number[] = sizes.length === 1 && Array.isArray(sizes[0]) ? [...sizes[0]] : (sizes as number[]);
  list.forEach((n) => count("repeat", n, "every repeat count"));
  if (list.length < x.rank) {
    throw new ShapeError({ message: `repeat(): ${list.length} repeat counts for a tensor of rank ${x.rank}; give at least one per dim` });
  }
  const padded = [...new Array(list.length - x.rank).fill(1), ...x.shape];
  return new Tensor("repeat", [x], padded.map((n, d) => n * list[d]), x.dtype, list);
}

/**
 * `repeatInterleave(t, repeats, dim)`: torch.repeat_interleave with an integer `repeats`: each element
 * repeated `repeats` times along dim (GQA: `repeatInterleave(k, Hq / Hkv, 1)`). Without dim the tensor is
 * flattened first, as in PyTorch. Per-element repeat counts (a tensor) are not supported.
 *
 * @example
 * ```ts
 * import { randn, repeatInterleave } from "@flex/attention";
 * const kv = repeatInterleave(randn([1, 2, 8, 4]), 4, 1); // 2 → 8 heads (GQA by hand)
 * ```
 */
export function repeatInterleave(t: Tensor, repeats: number, dim?: number): Tensor {
  const x0 = operand("repeatInterleave", t);
  if ((repeats as unknown) instanceof Tensor) {
    throw new InvalidArgument({ message: "repeatInterleave(): per-element repeat counts (a Tensor) are not supported; pass one integer" });
  }
  const r = count("repeatInterleave", repeats, "repeats");
  const x = dim === undefined ? reshape(x0, [x0.size]) : x0;
  const d = normDim("repeatInterleave", dim ?? 0, x.rank);
  const shape = [...x.shape];
  shape[d] *= r;
  return new Tensor("repeatInterleave", [x], shape, x.dtype, { repeats: r, dim: d });
}

function checkIndex(op: string, t: { readonly shape: readonly number[]; readonly rank: number }, dim: number, index: unknown): { d: number; idx: Tensor } {
  const idx = operand(op, index, "the index");
  if (idx.dtype !== "i32") throw new DTypeError({ message: `${op}(): the index must be an i32 tensor, got ${idx.dtype}` });
  if (idx.rank !== t.rank) {
    throw new ShapeError({ message: `${op}(): the index has rank ${idx.rank} but the tensor has rank ${t.rank}; they must match (torch.gather)` });
  }
  const d = normDim(op, dim, t.rank);
  idx.shape.forEach((n, k) => {
    if (k !== d && n > t.shape[k]) {
      throw new ShapeError({ message: `${op}(): index shape [${idx.shape}] exceeds the tensor's [${t.shape}] at dim ${k} (only dim ${d} may be larger)` });
    }
  });
  return { d, idx };
}

/**
 * `gather(t, dim, index)`: torch.gather: `out[i][j][k] = t[index[i][j][k]][j][k]` for dim 0 (and likewise
 * for the other dims). `index` is i32 of t's rank; out has index's shape. An index value outside
 * [0, t.shape[dim]) fails the realize with InvalidArgument (the GPU clamps the read and reports it).
 *
 * @example
 * ```ts
 * import { gather, tensor } from "@flex/attention";
 * const picked = gather(tensor([[1, 2], [3, 4]]), 1, tensor([[1], [0]], undefined, { dtype: "i32" })); // [[2], [3]]
 * ```
 */
export function gather(t: Tensor, dim: number, index: Tensor): Tensor {
  const x = operand("gather", t);
  const { d, idx } = checkIndex("gather", x, dim, index);
  return new Tensor("gather", [x, idx], [...idx.shape], x.dtype, d);
}

/**
 * gather's adjoint: a zero tensor of `shape` with `src[i][j][k]` added at `[index[i][j][k]][j][k]` (dim 0),
 * summed in a fixed order (deterministic). `src` has index's shape.
 */
export function scatterAdd(shape: readonly number[], dim: number, index: Tensor, src: Tensor): Tensor {
  const s = operand("scatterAdd", src, "the source");
  const { d, idx } = checkIndex("scatterAdd", { shape, rank: shape.length }, dim, index);
  if (s.rank !== idx.rank || s.shape.some((n, k) => n !== idx.shape[k])) {
    throw new ShapeError({ message: `scatterAdd(): the source [${s.shape}] must have the index's shape [${idx.shape}]` });
  }
  return new Tensor("scatterAdd", [s, idx], [...shape], s.dtype, d);
}
