/**
 * Tensor: an immutable, lazy node `{op, inputs, shape, dtype, arg}`. Building a graph is pure and
 * synchronous (shape/dtype errors are thrown here, as tagged errors); `await t.toArray()` realizes it
 * through the realizer that lib/runtime installs (see realize.ts), so this layer knows no device.
 *
 * `op` is a key of the typed op registry (op.ts: `OpArgs`), and `arg` has that op's type. The ops of this
 * layer are the constants and the pointwise glue of ops.ts; the layers above add theirs (flexOut / flexLse:
 * lib/attention's FlexCall, maskBlocks: lib/blockmask, flexGrad: lib/passes) by augmenting `OpArgs`.
 * `AnyTensor` is the tagged union over ops: `switch (t.op)` on it narrows `t.arg`.
 */
import type { CaptureSource, Scalar } from "../ir/expr.ts";
import { Expr } from "../ir/expr.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../errors.ts";
import { realizeWithHook } from "./realize.ts";
import type { Op, OpArgs } from "./op.ts";
import { checkDType, type DType, fromValues, hasFloat16Array, type TypedData, toF16Data } from "./dtype.ts";

export type { DType, TypedData } from "./dtype.ts";
export type { Op, OpArgs } from "./op.ts";

let nextId = 1;

/**
 * A lazy, immutable tensor: a node `{ op, inputs, shape, dtype, arg }` of a graph that nothing computes until
 * `toArray()` realizes it (trace → passes → lower → run on the chosen provider).
 *
 * @example
 * ```ts
 * import { randn, mulScalar } from "@flex/attention";
 * const x = mulScalar(randn([2, 3]), 2); // nothing runs yet
 * const values = await x.toArray();        // Float32Array(6)
 * ```
 */
export class Tensor<O extends Op = Op> implements CaptureSource {
  /** A process-unique node id (identity of captured tensors and graph caches). */
  readonly id: number = nextId++;
  /**
   * A raw graph node; users build tensors with the constructors (`tensor`, `randn`, `zeros`, …) and ops.
   */
  constructor(
    readonly op: O,
    readonly inputs: readonly Tensor[],
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly arg: OpArgs[O],
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError({ message: `invalid shape [${shape}]` });
    }
  }

  /** The number of dimensions. */
  get rank(): number { return this.shape.length; }
  /** The number of elements (the product of the shape). */
  get size(): number { return this.shape.reduce((a, b) => a * b, 1); }

  /** The data of a constant tensor (no realization needed); undefined for computed nodes. */
  get data(): TypedData | undefined { return isConst(this) ? this.arg : undefined; }

  /** Inside a mod: read this captured tensor at symbolic indices, e.g. `docIds.at(q)` or `bias.at(h, q.sub(kv))`. */
  at(...indices: Scalar[]): Expr { return Expr.load(this, indices); }

  /** Realizes the tensor (trace → lower → run) and returns a copy of its values, row-major. */
  toArray(): Promise<TypedData> {
    const d = this.data;
    if (d) return Promise.resolve(d.slice() as TypedData);
    return realizeWithHook(this);
  }

  /** A one-line description: op, shape and dtype (no values: those need a realize). */
  toString(): string { return `Tensor(${this.op}, [${this.shape}], ${this.dtype})`; }
}

/**
 * What `console.log(t)` shows (Deno, Node, Bun): dtype, shape, realized (a constant: its first values) or lazy
 * (the op that will compute it), e.g. `Tensor(f32 [2, 3], realized) [0.5, -1.25, 3, 0, 1, 2]` or
 * `Tensor(f32 [1, 2, 128, 64], lazy: flexOut)`, instead of the node's internals.
 */
export function describeTensor(t: Tensor): string {
  const head = `Tensor(${t.dtype} [${t.shape.join(", ")}]`;
  const d = t.data;
  if (!d) return `${head}, lazy: ${t.op})`;
  const shown = Array.from(d.subarray(0, 6), (v) => String(Number(v.toPrecision(5))));
  return `${head}, realized) [${shown.join(", ")}${d.length > 6 ? `, … ${d.length - 6} more` : ""}]`;
}

// set on the prototype (not class members) so the public type stays free of symbol keys
for (const key of [Symbol.for("Deno.customInspect"), Symbol.for("nodejs.util.inspect.custom")]) {
  Object.defineProperty(Tensor.prototype, key, {
    value: function (this: Tensor) { return describeTensor(this); },
    writable: true, configurable: true, enumerable: false,
  });
}

/** The tagged union over ops: narrowing on `op` narrows `arg`. */
export type AnyTensor = { [O in Op]: Tensor<O> }[Op];

/** A tensor of a known op (the one narrowing helper tables need). */
export function isOp<O extends Op>(t: Tensor, op: O): t is Tensor<O> { return t.op === op; }

export function isConst(t: Tensor): t is Tensor<"const"> { return t.op === "const"; }

/** A constant node (no validation: constructors below validate their data). */
export function constant(data: TypedData, shape: readonly number[], dtype: DType): Tensor<"const"> {
  return new Tensor("const", [], [...shape], dtype, data);
}

/**
 * Nested arrays of numbers, as `tensor([[1, 2], [3, 4]])` takes them.
 *
 * @example
 * ```ts
 * import { tensor, type Nested } from "@flex/attention";
 * const rows: Nested = [[1, 2, 3], [4, 5, 6]];
 * const t = tensor(rows); // [2, 3]
 * ```
 */
export type Nested = number | readonly Nested[];

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
 *
 * @example
 * ```ts
 * import { tensor } from "@flex/attention";
 * const a = tensor([[1, 2], [3, 4]]);                      // f32 [2, 2]
 * const ids = tensor([0, 0, 1], undefined, { dtype: "i32" }); // i32 [3]
 * ```
 */
export function tensor(
  data: ArrayLike<number> | readonly Nested[],
  shape?: readonly number[],
  options: { dtype?: DType } = {},
): Tensor {
  const dtype = checkDType(options?.dtype ?? (data instanceof Int32Array ? "i32" : isF16Array(data) ? "f16" : "f32"), "tensor()");
  const nested = Array.isArray(data) && data.length > 0 && Array.isArray(data[0]);
  const flat: ArrayLike<number> = nested ? flattenNested(data as readonly Nested[]) : data as ArrayLike<number>;
  const shp = shape ? [...shape] : nested ? inferShape(data as Nested) : [flat.length];
  const n = shp.reduce((a, b) => a * b, 1);
  if (n !== flat.length) {
    throw new ShapeError({ message: `tensor(): ${flat.length} values do not fill shape [${shp}] (${n} elements)` });
  }
  if (dtype === "i32") checkI32(flat as ArrayLike<number>, "tensor()");
  const arr = dtype === "f32" ? Float32Array.from(flat as ArrayLike<number>)
    : dtype === "f16" ? toF16Data(flat as ArrayLike<number>)
    : dtype === "bool" ? fromValues("bool", flat as ArrayLike<number>)
    : Int32Array.from(flat as ArrayLike<number>);
  return constant(arr, shp, dtype);
}

const isF16Array = (d: unknown): boolean => hasFloat16Array && d instanceof Float16Array;

/** i32 values must be integers in [−2³¹, 2³¹) (no silent wrap or truncation). */
function checkI32(values: ArrayLike<number>, where: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new DTypeError({
        message: `${where}: an i32 tensor got ${v} at index ${i}; i32 values must be integers in [-2147483648, 2147483647] (use dtype "f32" for other numbers)`,
      });
    }
  }
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

/**
 * Standard-normal tensor (Box–Muller over `rng(seed)`), f32 or f16 (rounded). A fresh seed per call unless one is given.
 *
 * @example
 * ```ts
 * import { randn } from "@flex/attention";
 * const q = randn([1, 8, 1024, 64]);            // fresh random values
 * const fixed = randn([4], { seed: 1, dtype: "f16" }); // reproducible
 * ```
 */
export function randn(shape: readonly number[], options: { seed?: number; dtype?: "f32" | "f16" } = {}): Tensor {
  const dtype = checkDType(options?.dtype ?? "f32", "randn()");
  if (dtype === "i32" || dtype === "bool") throw new DTypeError({ message: `randn(): dtype "${dtype}" is not a floating type; use "f32" or "f16"` });
  const r = rng(options.seed ?? (Math.random() * 2 ** 32) >>> 0);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return constant(dtype === "f16" ? toF16Data(out) : out, shape, dtype);
}

/**
 * A constant filled with `value`.
 *
 * @example
 * ```ts
 * import { full } from "@flex/attention";
 * const sevens = full([2, 2], 7);
 * ```
 */
export function full(shape: readonly number[], value: number, options: { dtype?: DType } = {}): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const dtype = checkDType(options?.dtype ?? "f32", "full()");
  if (typeof value !== "number") throw new InvalidArgument({ message: `full(): the fill value must be a number, got ${typeof value}` });
  if (dtype === "i32") checkI32([value], "full()");
  const arr = dtype === "f32" ? new Float32Array(n).fill(value)
    : dtype === "f16" ? toF16Data(new Float32Array(n).fill(value))
    : new Int32Array(n).fill(dtype === "bool" ? (value !== 0 ? 1 : 0) : value);
  return constant(arr, shape, dtype);
}

/**
 * A tensor of zeros.
 *
 * @example
 * ```ts
 * import { zeros } from "@flex/attention";
 * const z = zeros([2, 3], { dtype: "f16" });
 * ```
 */
export function zeros(shape: readonly number[], options: { dtype?: DType } = {}): Tensor {
  return full(shape, 0, options);
}

/**
 * `arange(n)`: i32 [0, 1, ..., n-1].
 *
 * @example
 * ```ts
 * import { arange } from "@flex/attention";
 * await arange(4).toArray(); // Int32Array [0, 1, 2, 3]
 * ```
 */
export function arange(n: number): Tensor {
  return constant(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
}
