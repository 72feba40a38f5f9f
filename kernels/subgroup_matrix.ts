/**
 * WGSL for 16×16×16 subgroup-matrix operations (f16 operands, f32 accumulate), either through Dawn's
 * experimental intrinsics (`chromium_experimental_subgroup_matrix`) or emulated by plain WGSL of the same
 * semantics, so that a template written against these helpers runs on any adapter with `shader-f16`
 * (CI: lavapipe). A template calls `load` / `mma` / `store` to get expressions and statements, and
 * `prelude()` / `helpers()` for the module-scope declarations (only what it used is emitted).
 *
 * Emulation: a virtual subgroup is 32 consecutive invocations (lane = local index % 32, subgroup =
 * local index / 32), independent of the adapter's real subgroup size. A matrix value is an 8-element
 * private fragment per lane:
 *   left  (M×K)  lane holds row  i = lane % 16, k = 8·(lane / 16) + e
 *   right (K×N)  lane holds col  n = lane % 16, k = 8·(lane / 16) + e
 *   result (M×N) lane holds row  i = lane % 16, n = 8·(lane / 16) + e
 * Loads and stores touch only the lane's own elements; a multiply-accumulate exchanges the operand
 * fragments through a per-subgroup scratch in workgroup memory (double-buffered: one barrier per product).
 * Hence every emulated product is a workgroup barrier: templates must issue matrix operations in
 * workgroup-uniform control flow (the intrinsics need only subgroup-uniform flow; workgroup-uniform is
 * stricter, so the same template is valid for both).
 */

export type MatrixKind = "left" | "right" | "result";
export type MatrixLayout = "row_major" | "col_major";

/** f16 halves of scratch per emulated subgroup (two buffers of a left and a right fragment set). */
export const EMULATION_SCRATCH_HALVES = 1024;

export class SubgroupMatrixOps {
  private readonly used = new Map<string, string>();

  /** `subgroups`: matrix-op subgroups per workgroup (emulation sizes its scratch from it). */
  constructor(readonly emulate: boolean, readonly subgroups: number) {}

  /** `enable` directives and diagnostics (module start). */
  directives(): string {
    return this.emulate
      ? "enable f16;"
      : "enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\n" +
        "diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);";
  }

  /** Type aliases LM / RM / CM and, when emulating, the scratch and lane variables. */
  prelude(): string {
    if (!this.emulate) {
      return `alias LM = subgroup_matrix_left<f16, 16, 16>;
alias RM = subgroup_matrix_right<f16, 16, 16>;
alias CM = subgroup_matrix_result<f32, 16, 16>;`;
    }
    return `// emulated subgroup matrices: 8-element fragments per lane of a 32-lane virtual subgroup
alias LM = array<f16, 8>;
alias RM = array<f16, 8>;
alias CM = array<f32, 8>;
var<private> em_lane: u32;
var<private> em_sg: u32;
var<private> em_call: u32;
var<workgroup> em_s: array<f16, ${this.subgroups * EMULATION_SCRATCH_HALVES}>;
fn em_mma(l: LM, r: RM, c: CM) -> CM {
  let base = (em_sg * 2u + (em_call & 1u)) * 512u;
  em_call += 1u;
  let i = em_lane % 16u;
  let h = 8u * (em_lane / 16u);
  for (var e = 0u; e < 8u; e++) {
    em_s[base + i * 16u + h + e] = l[e];          // L[i][k]
    em_s[base + 256u + i * 16u + h + e] = r[e];   // Rᵀ[n][k]
  }
  workgroupBarrier();
  var o = c;
  for (var e = 0u; e < 8u; e++) {
    var acc = 0.0;
    for (var k = 0u; k < 16u; k++) { acc += f32(em_s[base + i * 16u + k]) * f32(em_s[base + 256u + (h + e) * 16u + k]); }
    o[e] += acc;
  }
  return o;
}`;
  }

  /** Statement(s) to run at the entry point's start (emulation: lane and subgroup of the invocation). */
  entry(localIndex: string): string {
    return this.emulate ? `em_lane = ${localIndex} % 32u;\n  em_sg = ${localIndex} / 32u;\n  em_call = 0u;` : "";
  }

  /** Expression: a matrix of `kind` loaded from module-scope array `arr` (workgroup or storage). */
  load(kind: MatrixKind, arr: string, layout: MatrixLayout, off: string, stride: string): string {
    const T = kind === "left" ? "LM" : kind === "right" ? "RM" : "CM";
    if (!this.emulate) return `subgroupMatrixLoad<${T}, ${layout}>(&${arr}, ${off}, ${stride})`;
    const name = `em_ld_${kind}_${arr}_${layout === "row_major" ? "r" : "c"}`;
    if (!this.used.has(name)) {
      // (a, b) = (row, column) of the matrix element the lane holds for fragment index e
      const [a, b] = kind === "right" ? ["(h + e)", "n"] : ["i", "(h + e)"];
      const idx = layout === "row_major" ? `off + ${a} * stride + ${b}` : `off + ${b} * stride + ${a}`;
      const vars = kind === "right" ? "let n = em_lane % 16u;" : "let i = em_lane % 16u;";
      this.used.set(name, `fn ${name}(off: u32, stride: u32) -> ${T} {
  var f: ${T};
  ${vars}
  let h = 8u * (em_lane / 16u);
  for (var e = 0u; e < 8u; e++) { f[e] = ${arr}[${idx}]; }
  return f;
}`);
    }
    return `${name}(${off}, ${stride})`;
  }

  /** Statement: store result matrix `value` to `arr` (row-major, element (i, n) at off + i·stride + n). */
  store(arr: string, off: string, value: string, stride: string): string {
    if (!this.emulate) return `subgroupMatrixStore<row_major>(&${arr}, ${off}, ${value}, ${stride});`;
    const name = `em_st_${arr}`;
    if (!this.used.has(name)) {
      this.used.set(name, `fn ${name}(off: u32, c: CM, stride: u32) {
  let i = em_lane % 16u;
  let h = 8u * (em_lane / 16u);
  for (var e = 0u; e < 8u; e++) { ${arr}[off + i * stride + h + e] = c[e]; }
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
