/**
 * Tensor: an immutable, lazy node `{op, inputs, shape, dtype, arg}`. Building a graph is pure and
 * synchronous (shape/dtype errors are thrown here, as tagged errors); `await t.toArray()` realizes it
 * through the realizer that lib/runtime installs (see realize.ts), so this layer knows no device.
 *
 * Ops are plain strings; the layers above own their meaning:
 *   const            data held here (Float32Array / Int32Array)
 *   flexOut/flexLse  lib/attention's FlexCall in `arg` (out and lse of one fused call share it)
 *   maskBlocks       lib/blockmask's per-block states of a mask mod
 *   add, mul, ...    pointwise / reduction ops of lib/tensor/ops.ts (autodiff glue)
 */
import type { CaptureSource, Scalar } from "../ir/expr.ts";
import { Expr } from "../ir/expr.ts";
import { DTypeError, ShapeError } from "../errors.ts";
import { realizeWithHook } from "./realize.ts";

export type DType = "f32" | "i32";
export type TypedData = Float32Array | Int32Array;

let nextId = 1;

export class Tensor implements CaptureSource {
  readonly id: number = nextId++;
  constructor(
    readonly op: string,
    readonly inputs: readonly Tensor[],
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly arg?: unknown,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError({ message: `invalid shape [${shape}]` });
    }
  }

  get rank(): number { return this.shape.length; }
  get size(): number { return this.shape.reduce((a, b) => a * b, 1); }

  /** The data of a constant tensor (no realization needed); undefined for computed nodes. */
  get data(): TypedData | undefined { return this.op === "const" ? this.arg as TypedData : undefined; }

  /** Inside a mod: read this captured tensor at symbolic indices, e.g. `docIds.at(q)` or `bias.at(h, q.sub(kv))`. */
  at(...indices: Scalar[]): Expr { return Expr.load(this, indices); }

  /** Realizes the tensor (trace → lower → run) and returns a copy of its values, row-major. */
  toArray(): Promise<TypedData> {
    const d = this.data;
    if (d) return Promise.resolve(d.slice() as TypedData);
    return realizeWithHook(this);
  }

  toString(): string { return `Tensor(${this.op}, [${this.shape}], ${this.dtype})`; }
}

type Nested = number | readonly Nested[];

function flattenNested(x: readonly Nested[]): number[] {
  const out: number[] = [];
  const walk = (v: Nested) => { if (typeof v === "number") out.push(v); else v.forEach(walk); };
  x.forEach(walk);
  return out;
}

function inferShape(x: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = x;
  while (Array.isArray(cur)) { shape.push(cur.length); cur = cur[0] as Nested; }
  return shape;
}

/**
 * `tensor(data, shape?, { dtype })`: a constant tensor from a flat array (with `shape`) or nested arrays.
 * Integers are not guessed: dtype defaults to f32 unless `data` is an Int32Array.
 */
export function tensor(
  data: ArrayLike<number> | readonly Nested[],
  shape?: readonly number[],
  options: { dtype?: DType } = {},
): Tensor {
  const dtype: DType = options.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
  if (dtype !== "f32" && dtype !== "i32") {
    throw new DTypeError({ message: `tensor(): dtype must be "f32" or "i32", got ${JSON.stringify(dtype)}` });
  }
  const nested = Array.isArray(data) && data.length > 0 && Array.isArray(data[0]);
  const flat: ArrayLike<number> = nested ? flattenNested(data as readonly Nested[]) : data as ArrayLike<number>;
  const shp = shape ? [...shape] : nested ? inferShape(data as Nested) : [flat.length];
  const n = shp.reduce((a, b) => a * b, 1);
  if (n !== flat.length) {
    throw new ShapeError({ message: `tensor(): ${flat.length} values do not fill shape [${shp}] (${n} elements)` });
  }
  const arr = dtype === "f32" ? Float32Array.from(flat as ArrayLike<number>) : Int32Array.from(flat as ArrayLike<number>);
  if (dtype === "i32" && Array.from(flat as ArrayLike<number>).some((v) => !Number.isInteger(v))) {
    throw new DTypeError({ message: "tensor(): an i32 tensor got non-integer values" });
  }
  return new Tensor("const", [], shp, dtype, arr);
}

/** A deterministic pseudo-random generator (mulberry32) so tests and benches can reproduce inputs. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard-normal f32 tensor (Box–Muller over `rng(seed)`). A fresh seed per call unless one is given. */
export function randn(shape: readonly number[], options: { seed?: number } = {}): Tensor {
  const r = rng(options.seed ?? (Math.random() * 2 ** 32) >>> 0);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return new Tensor("const", [], [...shape], "f32", out);
}

/** A constant filled with `value`. */
export function full(shape: readonly number[], value: number, options: { dtype?: DType } = {}): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const dtype = options.dtype ?? "f32";
  const arr = dtype === "f32" ? new Float32Array(n).fill(value) : new Int32Array(n).fill(value);
  return new Tensor("const", [], [...shape], dtype, arr);
}

export function zeros(shape: readonly number[], options: { dtype?: DType } = {}): Tensor {
  return full(shape, 0, options);
}

/** `arange(n)`: i32 [0, 1, ..., n-1]. */
export function arange(n: number): Tensor {
  return new Tensor("const", [], [n], "i32", Int32Array.from({ length: n }, (_, i) => i));
}
