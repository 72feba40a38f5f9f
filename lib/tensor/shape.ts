/**
 * Shape arithmetic of the tensor ops (pure, no nodes): NumPy / PyTorch broadcasting, dim normalization,
 * `expand`'s and `reshape`'s target shapes. Errors are the library's typed errors, raised at construction.
 */
import { InvalidArgument, ShapeError } from "../errors.ts";

export function sizeOf(shape: readonly number[]): number { return shape.reduce((a, b) => a * b, 1); }

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Row-major strides of a contiguous tensor. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
  return s;
}

/**
 * The broadcast shape of `shapes` (right-aligned; a dim of size 1 stretches to the other's size). Throws a
 * ShapeError naming the op and the clashing dims.
 */
export function broadcastShapes(op: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const d = rank - s.length + i, n = s[i];
      if (n === out[d] || n === 1) continue;
      if (out[d] === 1) { out[d] = n; continue; }
      throw new ShapeError({
        message: `${op}(): shapes ${shapes.map((x) => `[${x}]`).join(" and ")} do not broadcast: dim ${d - rank} is ${out[d]} in one and ${n} in ` +
          `another (sizes must match or be 1, aligned from the right)`,
      });
    }
  }
  return out;
}

/** A dim in [−rank, rank) as a non-negative index. */
export function normDim(op: string, dim: unknown, rank: number): number {
  if (typeof dim !== "number" || !Number.isInteger(dim) || dim < -rank || dim >= rank) {
    throw new InvalidArgument({
      message: `${op}(): dim ${String(dim)} is out of range for a tensor of rank ${rank} (expected an integer in [${-rank}, ${rank - 1}])`,
    });
  }
  return dim < 0 ? dim + rank : dim;
}

/** Distinct normalized dims, ascending. */
export function normDims(op: string, dims: number | readonly number[], rank: number): number[] {
  const list = typeof dims === "number" ? [dims] : [...dims];
  if (!Array.isArray(dims) && typeof dims !== "number") {
    throw new InvalidArgument({ message: `${op}(): dim must be an integer or an array of integers, got ${typeof dims}` });
  }
  const out = list.map((d) => normDim(op, d, rank));
  if (new Set(out).size !== out.length) throw new InvalidArgument({ message: `${op}(): dim [${list}] names a dim twice` });
  return out.sort((a, b) => a - b);
}

/**
 * `expand`'s target: PyTorch's rules (new leading dims allowed; −1 keeps a dim; only a size-1 dim
 * stretches). A scalar expands to any shape.
 */
export function expandShape(op: string, from: readonly number[], to: readonly number[]): number[] {
  if (!Array.isArray(to) || to.some((d) => !Number.isInteger(d) || d < -1)) {
    throw new ShapeError({ message: `${op}(): the target shape must be an array of sizes (integers ≥ 0, or −1 to keep a dim), got [${to}]` });
  }
  if (to.length < from.length) {
    throw new ShapeError({ message: `${op}(): cannot expand [${from}] to [${to}]: the target has fewer dims (${to.length}) than the tensor (${from.length})` });
  }
  const lead = to.length - from.length;
  return to.map((d, i) => {
    if (i < lead) {
      if (d === -1) throw new ShapeError({ message: `${op}(): −1 is not allowed for a new leading dim (target [${to}])` });
      return d;
    }
    const n = from[i - lead];
    if (d === -1 || d === n) return n;
    if (n === 1) return d;
    throw new ShapeError({
      message: `${op}(): cannot expand [${from}] to [${to}]: dim ${i} has size ${n}, which is neither 1 nor ${d} (only size-1 dims stretch)`,
    });
  });
}

/** `reshape`'s target with at most one −1 inferred from `size`. */
export function reshapeTarget(op: string, fromShape: readonly number[], to: readonly number[]): number[] {
  const size = sizeOf(fromShape);
  const bad = () => new ShapeError({ message: `${op}(): cannot reshape [${fromShape}] (${size} elements) to [${to}]` });
  if (!Array.isArray(to) || to.some((d) => !Number.isInteger(d) || d < -1)) throw bad();
  const free = to.filter((d) => d === -1).length;
  if (free > 1) throw new ShapeError({ message: `${op}(): at most one dim may be −1, got [${to}]` });
  if (free === 0) { if (sizeOf(to) !== size) throw bad(); return [...to]; }
  const known = to.reduce((a, d) => (d === -1 ? a : a * d), 1);
  if (known === 0 || size % known !== 0) throw bad();
  return to.map((d) => (d === -1 ? size / known : d));
}

/** Strides (per output dim) of an input broadcast to `outShape` (right-aligned; 0 where broadcast). */
export function broadcastStrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const lead = outShape.length - inShape.length;
  const s = contiguousStrides(inShape);
  return outShape.map((_, d) => (d < lead || inShape[d - lead] === 1 ? 0 : s[d - lead]));
}
