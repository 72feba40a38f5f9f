/**
 * Element types of tensors. f16 is a storage type: values travel as IEEE binary16 (2 bytes), math runs in
 * f32 (portable kernels) or on f16 matrix units with f32 accumulation (tensor family). On the host an f16
 * tensor's data is a `Float16Array` where the runtime has one (Deno 2, Bun, Node 24, browsers), else its
 * raw bits in a `Uint16Array` (read them with `f16ToNumber`).
 */
import { DTypeError } from "../errors.ts";

/**
 * A tensor's element type: `f32`, `f16`, `i32` or `bool` (stored as i32 0/1).
 *
 * @example
 * ```ts
 * import { type DType, zeros } from "@flex/attention";
 * const dtype: DType = "f16";
 * const z = zeros([2, 2], { dtype });
 * ```
 */
export type DType = "f32" | "i32" | "f16" | "bool";
export const DTYPES: readonly DType[] = ["f32", "i32", "f16", "bool"];

/**
 * `bool` (comparisons, `and` / `or` / `not`, `where`'s condition) is stored as i32 0 / 1: an Int32Array on
 * the host, array<i32> on the GPU. Constructors normalize any non-zero value to 1.
 */
export function isIntStorage(d: DType): d is "i32" | "bool" { return d === "i32" || d === "bool"; }
export function isFloatDType(d: DType): d is "f32" | "f16" { return d === "f32" || d === "f16"; }

/** Float16Array where the runtime provides it (Deno 2, Bun, browsers; not Node 20). */
const F16: typeof Float16Array | undefined = (globalThis as { Float16Array?: typeof Float16Array }).Float16Array;
/**
 * Whether this runtime has `Float16Array` (f16 `toArray()` returns one; otherwise a Float32Array of binary16-rounded values).
 *
 * @example
 * ```ts
 * import { hasFloat16Array, randn } from "@flex/attention";
 * const h = await randn([4], { dtype: "f16" }).toArray();
 * console.log(hasFloat16Array ? "Float16Array" : "Float32Array of binary16 values", h);
 * ```
 */
export const hasFloat16Array: boolean = typeof F16 === "function";

/**
 * Host arrays. An f16 tensor's host data is a Float16Array; where the runtime has none, a Float32Array of
 * the binary16-rounded values (so f16 math on the host is still exact to the stored values).
 *
 * @example
 * ```ts
 * import { tensor, type TypedData } from "@flex/attention";
 * const data: TypedData = await tensor([1, 2, 3]).toArray(); // Float32Array
 * ```
 */
export type TypedData = Float32Array | Int32Array | Float16Array;

export function bytesPerElement(d: DType): number { return d === "f16" ? 2 : 4; }

export function checkDType(d: unknown, where: string): DType {
  if (d !== "f32" && d !== "i32" && d !== "f16" && d !== "bool") {
    throw new DTypeError({ message: `${where}: dtype must be "f32", "f16", "i32" or "bool", got ${JSON.stringify(d)}` });
  }
  return d;
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);

/**
 * Round-to-nearest-even f32 → binary16 bits (handles subnormals, ±Inf, NaN).
 *
 * @example
 * ```ts
 * import { f16Bits } from "@flex/attention";
 * f16Bits(1); // 0x3c00
 * ```
 */
export function f16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h; // a carry into the exponent is the correct rounding (up to Inf)
}

/**
 * binary16 bits → number.
 *
 * @example
 * ```ts
 * import { f16ToNumber } from "@flex/attention";
 * f16ToNumber(0x3c00); // 1
 * ```
 */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** A host f16 array holding `values` rounded to binary16. */
export function toF16Data(values: ArrayLike<number>): Float16Array | Float32Array {
  if (F16) return F16.from(values);
  return Float32Array.from(values as ArrayLike<number>, (v) => f16ToNumber(f16Bits(v)));
}

/** An f16 host array from raw binary16 bits (a GPU readback). */
export function f16FromBits(bits: Uint16Array): Float16Array | Float32Array {
  if (F16) return new F16(bits.buffer as ArrayBuffer, bits.byteOffset, bits.length);
  return Float32Array.from(bits, f16ToNumber);
}

/** The binary16 bits of an f16 tensor's host data (for upload). */
export function f16BitsOf(d: TypedData): Uint16Array {
  if (F16 && d instanceof F16) return new Uint16Array(d.buffer, d.byteOffset, d.length);
  return Uint16Array.from(d as ArrayLike<number>, f16Bits);
}

/** A new host array of `dtype` from numbers (f16 rounds; i32 values are checked by callers; bool: x ≠ 0 → 1). */
export function fromValues(dtype: DType, values: ArrayLike<number>): TypedData {
  if (dtype === "f16") return toF16Data(values);
  if (dtype === "bool") return Int32Array.from(values as ArrayLike<number>, (v) => (v !== 0 ? 1 : 0));
  if (dtype === "i32") return Int32Array.from(values);
  return Float32Array.from(values);
}
