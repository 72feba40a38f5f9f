/**
 * WGSL for 16×16×16 subgroup-matrix operations (f16 operands, f32 accumulate), either through Dawn's
 * experimental intrinsics (`chromium_experimental_subgroup_matrix`) or emulated by plain WGSL of the same
 * semantics, so that a template written against these helpers runs on any adapter with `shader-f16`
 * (CI: lavapipe). A template calls `load` / `mma` / `store` to get expressions and statements, and
 * `prelude()` / `helpers()` for the module-scope declarations (only what it used is emitted).
 *
 * Emulation: a virtual subgroup is 32 consecutive invocations (lane = local index % 32), independent of
 * the adapter's real subgroup size. A matrix value is a private per-lane fragment holding everything the
 * lane needs, so that no operation communicates across lanes (no barrier: the emulation adds no
 * synchronization points, which kept Mesa's compiler from exploding on barrier-heavy code):
 *   result (M×N) lane holds row i = lane % 16, columns n = h + e, h = 8·(lane / 16), e = 0..7   (8 f32)
 *   left   (M×K) lane holds row i = lane % 16, all k = 0..15                                      (16 values)
 *   right  (K×N) lane holds all k = 0..15 for its columns n = h + e                                (128 values; f16 values held as f32)
 * Loads read straight from the source array (they run where the intrinsic loads run, so the data is
 * there); a product is 8·16 f32 FMAs per lane.
 *
 * Guarded workgroup access (`guard`): every matrix load from / store to the arrays in `guardArrays` runs inside
 * `if (guard) { … }` with a guard the compiler cannot fold (true at run time), the form Dawn's robustness pass
 * gives loads at non-constant offsets. Defence in depth for the H200's stale workgroup-memory matrix loads
 * (kernels/flex_forward_tensor.ts): on its own it did not cure them (bench/tensor_variants.ts, 2026-12-01); the
 * uniform block walk did, alone. The guard is kept as a diagnostic knob (it costs the forward 1.3×).
 */

export type MatrixKind = "left" | "right" | "result";
export type MatrixLayout = "row_major" | "col_major";

export class SubgroupMatrixOps {
  private readonly used = new Map<string, string>();

  constructor(readonly emulate: boolean, readonly opts: { readonly guard?: string; readonly guardArrays?: readonly string[] } = {}) {}

  private guarded(arr: string): boolean {
    return !this.emulate && this.opts.guard !== undefined && (this.opts.guardArrays ?? []).includes(arr);
  }

  /** Statement: `target` (declared here when `declare`) = a matrix of `kind` loaded from `arr` (guarded where
   * `arr` is a guarded workgroup array; use this instead of `load` for those). */
  loadTo(target: string, declare: boolean, kind: MatrixKind, arr: string, layout: MatrixLayout, off: string, stride: string): string {
    const T = kind === "left" ? "LM" : kind === "right" ? "RM" : "CM";
    const value = this.load(kind, arr, layout, off, stride);
    if (!this.guarded(arr)) return `${declare ? "var " : ""}${target} = ${value};`;
    return `${declare ? `var ${target}: ${T}; ` : ""}if (${this.opts.guard}) { ${target} = ${value}; }`;
  }

  /** `enable` directives and diagnostics (module start). */
  directives(): string {
    return this.emulate
      ? "enable f16;"
      : "enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n" +
        "diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);";
  }

  /** Type aliases LM / RM / CM and, when emulating, the lane variable and the product. */
  prelude(): string {
    if (!this.emulate) {
      return `alias LM = subgroup_matrix_left<f16, 16, 16>;
alias RM = subgroup_matrix_right<f16, 16, 16>;
alias CM = subgroup_matrix_result<f32, 16, 16>;`;
    }
    return `// emulated subgroup matrices: per-lane fragments of a 32-lane virtual subgroup (no cross-lane traffic)
alias LM = array<f32, 16>;   // f16 values (loaded from f16 arrays), held as f32
alias RM = array<f32, 128>;
alias CM = array<f32, 8>;
var<private> em_lane: u32;
fn em_mma(l: LM, r: RM, c: CM) -> CM {
  var o = c;
  for (var e = 0u; e < 8u; e++) {
    var acc = 0.0;
    for (var k = 0u; k < 16u; k++) { acc += l[k] * r[k * 8u + e]; }
    o[e] += acc;
  }
  return o;
}`;
  }

  /** Statement(s) to run at the entry point's start (emulation: lane and subgroup of the invocation). */
  entry(localIndex: string): string {
    return this.emulate ? `em_lane = ${localIndex} % 32u;` : "";
  }

  /** Expression: a matrix of `kind` loaded from module-scope array `arr` (workgroup or storage). */
  load(kind: MatrixKind, arr: string, layout: MatrixLayout, off: string, stride: string): string {
    const T = kind === "left" ? "LM" : kind === "right" ? "RM" : "CM";
    if (!this.emulate) return `subgroupMatrixLoad<${T}, ${layout}>(&${arr}, ${off}, ${stride})`;
    const name = `em_ld_${kind}_${arr}_${layout === "row_major" ? "r" : "c"}`;
    if (!this.used.has(name)) {
      // element (a, b) = (row, column) at off + a·stride + b (row-major) or off + b·stride + a (col-major)
      const at = (a: string, b: string) => layout === "row_major" ? `off + ${a} * stride + ${b}` : `off + ${b} * stride + ${a}`;
      const loop = kind === "left"
        ? `for (var k = 0u; k < 16u; k++) { f[k] = f32(${arr}[${at("i", "k")}]); }`
        : kind === "right"
        ? `for (var k = 0u; k < 16u; k++) { for (var e = 0u; e < 8u; e++) { f[k * 8u + e] = f32(${arr}[${at("k", "(h + e)")}]); } }`
        : `for (var e = 0u; e < 8u; e++) { f[e] = ${arr}[${at("i", "(h + e)")}]; }`;
      this.used.set(name, `fn ${name}(off: u32, stride: u32) -> ${T} {
  var f: ${T};
  let i = em_lane % 16u;
  let h = 8u * (em_lane / 16u);
  ${loop}
  return f;
}`);
    }
    return `${name}(${off}, ${stride})`;
  }

  /** Statement: store result matrix `value` to `arr` (row-major, element (i, n) at off + i·stride + n; col_major:
   * at off + n·stride + i, i.e. transposed). */
  store(arr: string, off: string, value: string, stride: string, layout: MatrixLayout = "row_major"): string {
    if (!this.emulate) {
      const st = `subgroupMatrixStore<${layout}>(&${arr}, ${off}, ${value}, ${stride});`;
      return this.guarded(arr) ? `if (${this.opts.guard}) { ${st} }` : st;
    }
    const col = layout === "col_major";
    const name = `em_st_${arr}${col ? "_c" : ""}`;
    if (!this.used.has(name)) {
      this.used.set(name, `fn ${name}(off: u32, c: CM, stride: u32) {
  let i = em_lane % 16u;
  let h = 8u * (em_lane / 16u);
  for (var e = 0u; e < 8u; e++) { ${arr}[${col ? "off + (h + e) * stride + i" : "off + i * stride + h + e"}] = c[e]; }
}`);
    }
    return `${name}(${off}, ${value}, ${stride});`;
  }

  /** Expression: l · r + c. */
  mma(l: string, r: string, c: string): string {
    return this.emulate ? `em_mma(${l}, ${r}, ${c})` : `subgroupMatrixMultiplyAccumulate(${l}, ${r}, ${c})`;
  }

  /** Expression: a zero result matrix. */
  zero(): string {
    return "CM()";
  }

  /** Module-scope functions the emitted loads / stores use (emit after the arrays they touch). */
  helpers(): string {
    return [...this.used.values()].join("\n");
  }
}

/**
 * How a template names its matrices: with the intrinsics, one variable per 16×16 tile (q0_1, s1_0, …: `each` unrolls
 * the loops, indices are literals); emulated, a fragment array per matrix set and WGSL loops over it (keeps Mesa's
 * compile small). `tripPad` is appended to every emulated loop bound (e.g. " + zero", a uniform 0 that hides the trip
 * count from Mesa's unroller).
 */
export function matrixNaming(emulate: boolean, tripPad = "") {
  const lit = (x: string) => x.replace(/u$/, "");
  /** Nested loops over [name, from, to) ranges; `f` gets u32 WGSL expressions (literals when unrolled). */
  const each = (ranges: [string, number, number][], f: (...ix: string[]) => string): string => {
    if (!emulate) {
      let combos: string[][] = [[]];
      for (const [, a, b] of ranges) combos = combos.flatMap((cb) => Array.from({ length: b - a }, (_, t) => [...cb, `${a + t}u`]));
      return combos.map((ix) => f(...ix)).join("\n");
    }
    const open = ranges.map(([v, a, b]) => `for (var ${v} = ${a}u; ${v} < ${b}u${tripPad}; ${v}++) {`).join(" ");
    return `${open}\n${f(...ranges.map(([v]) => v))}\n${ranges.map(() => "}").join(" ")}`;
  };
  /** The tile variable (i, j) of matrix set `name` with `cols` tiles per row. */
  const fr = (name: string, cols: number, i: string, j: string) =>
    emulate ? `${name}_f[(${i}) * ${cols}u + (${j})]` : `${name}${lit(i)}_${lit(j)}`;
  /** Declares a matrix set of rows × cols tiles of type T, zeroed. */
  const decl = (name: string, rows: number, cols: number, T: string) =>
    emulate ? `var ${name}_f = array<${T}, ${rows * cols}>();` : each([["ti", 0, rows], ["tj", 0, cols]], (i, j) => `var ${fr(name, cols, i, j)} = ${T}();`);
  return { lit, each, fr, decl };
}
