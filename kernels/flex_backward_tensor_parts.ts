/**
 * What both tensor-family backward templates emit alike (kernels/flex_backward_tensor.ts, the direct-load one, and
 * kernels/flex_backward_tensor_pipe.ts, the pipelined one): the epilogue that writes an accumulator set through `fs`,
 * the module-scope uniforms and bindings, and the module's functions with main's opening.
 */
import { ERR_UNDEFINED_DERIVATIVE, ERROR_BITS_DECL } from "./error_bits.ts";
import type { FlexBwdHooks } from "./flex_backward.ts";
import type { SubgroupMatrixOps } from "./subgroup_matrix.ts";

export interface TensorBwdShape {
  readonly mx: SubgroupMatrixOps;
  /** matrixNaming(emulate, …).each and .fr */
  readonly each: (loops: [string, number, number][], body: (...ix: string[]) => string) => string;
  readonly fr: (name: string, cols: number, i: string, j: string) => string;
  /** Owner rows per workgroup and per subgroup, their 16-row tiles; streamed columns in 16s; threads; fs row stride. */
  readonly BA: number;
  readonly R: number;
  readonly TR: number;
  readonly BB16: number;
  readonly NT: number;
  readonly SST: number;
}

/** The epilogue: the accumulator set `acc` (KW 16-column tiles, `width` real columns) through fs in chunks of BB
 * columns, row- and column-guarded, × `factor`, into grads at `off` + the owner rows. */
export function tensorBwdWriteAcc(s: TensorBwdShape) {
  const { mx, each, fr, BA, R, TR, BB16, NT, SST } = s;
  return (acc: string, KW: number, width: number, off: string, factor: string) => {
    const out: string[] = [];
    for (let j0 = 0; j0 < KW; j0 += BB16) {
      const j1 = Math.min(KW, j0 + BB16);
      out.push(`  workgroupBarrier();
${each([["ti", 0, TR], ["tj", j0, j1]], (i, j) => `  ${mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j} - ${j0}u)`, fr(acc, KW, i, j), `${SST}u`)}`)}
  workgroupBarrier();
  for (var idx = tid; idx < ${BA * 16 * (j1 - j0)}u; idx += ${NT}u) {
    let r = idx / ${16 * (j1 - j0)}u;
    let cc = idx % ${16 * (j1 - j0)}u;
    let row = row0 + r;
    if (row < row_limit${16 * j1 <= width ? "" : ` && ${16 * j0}u + cc < ${width}u`}) {
      grads[${off} + (a_base + row) * ${width}u + ${16 * j0}u + cc] = fs[r * ${SST}u + cc]${factor};
    }
  }`);
    }
    return out.join("\n");
  };
}

/** Module scope of both templates: the uniforms (FLEX_BWD_TENSOR_UNIFORMS' layout), the bindings (q, k, v, dO of the
 * element types given: f16 scalars where matrices load from them, else vec4<f16>) and the constants. */
export const tensorBwdBindings = (t: { q: string; k: string; v: string; dO: string }, extra?: { params: string; bindings: string }) => `struct Params {
  B: u32, Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, a_tiles: u32,
  row_width: u32, tb_stride_b: u32, tb_stride_h: u32, off_num: u32, off_idx: u32, off_full_num: u32,
  off_full_idx: u32, has_full: u32, scale: f32, off_dk: u32, off_dv: u32, pad0: u32,${extra ? `
  ${extra.params}` : ""}
}

@group(0) @binding(0) var<storage, read> qg: array<${t.q}>;
@group(0) @binding(1) var<storage, read> kg: array<${t.k}>;
@group(0) @binding(2) var<storage, read> vg: array<${t.v}>;
@group(0) @binding(3) var<storage, read> dog: array<${t.dO}>;
@group(0) @binding(4) var<storage, read_write> ldg: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> caps: array<u32>;
@group(0) @binding(6) var<storage, read_write> err: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> grads: array<f32>;
@group(0) @binding(8) var<uniform> P: Params;${extra ? `
${extra.bindings}` : ""}

const LOG2E: f32 = 1.4426950408889634;
const NEG_INF_BITS: u32 = 0xff800000u;
const ERR_UNDEFINED: u32 = ${ERR_UNDEFINED_DERIVATIVE}u;
${ERROR_BITS_DECL}`;

/** The module's functions (±∞ / NaN tests, the emulation's helpers, the hooks) and main's opening, through `b`;
 * `lane`: natively also the invocation's lane in its subgroup (`sg_lane`). */
export const tensorBwdEntry = (mx: SubgroupMatrixOps, hooks: FlexBwdHooks, NT: number, emulate: boolean, b = "wid.z", lane = false) => `fn pos_inf() -> f32 { var bits = 0x7f800000u; return bitcast<f32>(bits); }
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }

${mx.helpers()}

${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}

${hooks.identityScore ? "" : hooks.scoreModGrad}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32${emulate ? "" : ", @builtin(subgroup_id) sgid: u32"}${lane && !emulate ? ", @builtin(subgroup_invocation_id) sg_lane: u32" : ""}) {
  ${mx.entry("tid")}
  let sg = ${emulate ? "tid / 32u" : "sgid"};
  let zero = P.pad0; // 0 (the host writes 0): an opaque bound for the emulation's loops
  let POS_INF = pos_inf();
  let b = ${b};`;

/** A block walk's counts (n_partial, n_full, tpb, n_tiles) for table row `trow`, read through workgroupUniformLoad
 * (bounds uniform by construction): the tensor backward's walks and the dQ-from-dS' GEMM. `ind` indents each line;
 * `v` names the two workgroup words. */
export const walkCountsWgsl = (blockLen: string, BB: number, ind: string, v = { np: "walk_np", nf: "walk_nf" }) => [
  "if (tid == 0u) {",
  `  ${v.np} = caps[P.off_num + trow];`,
  `  ${v.nf} = 0u;`,
  `  if (P.has_full != 0u) { ${v.nf} = caps[P.off_full_num + trow]; }`,
  "}",
  `let n_partial = workgroupUniformLoad(&${v.np});`,
  `let n_full = workgroupUniformLoad(&${v.nf});`,
  `let tpb = ${blockLen} / ${BB}u;`,
  "let n_tiles = (n_partial + n_full) * tpb;",
].map((l) => ind + l + "\n").join("");
