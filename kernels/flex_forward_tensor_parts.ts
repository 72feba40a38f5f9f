/**
 * The pieces both tensor-family forward templates emit alike (kernels/flex_forward_tensor.ts, the direct / staged
 * path, and kernels/flex_forward_tensor_pipe.ts, the pipelined one): the output accumulators' trips through `fs`
 * (lazy rescale, epilogue), the row reductions across a row's G lanes, the mask / score-mod step of a score vec4,
 * the epilogue, and the module-scope uniforms and bindings. Each template keeps its own tiles, staging and walk.
 * Calls emit matrix operations, so a template calls them where their WGSL goes (the emulation registers its helpers
 * in template order).
 */
import { FLUSH_ERRORS } from "./error_bits.ts";
import type { SubgroupMatrixOps } from "./subgroup_matrix.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

export interface TensorForwardShape {
  readonly mx: SubgroupMatrixOps;
  /** matrixNaming(emulate).each and the O accumulator's name (fr("o", DV16, i, j)). */
  readonly each: (loops: [string, number, number][], body: (...ix: string[]) => string) => string;
  readonly O: (i: string, j: string) => string;
  /** Rows per subgroup and their 16-row tiles; padded Dv and BN in 16-column tiles; threads a row; fs row stride. */
  readonly R: number;
  readonly TR: number;
  readonly DV16: number;
  readonly BN16: number;
  readonly G: number;
  readonly SST: number;
  /** Row reductions by subgroup shuffles (native) instead of `red` and a barrier. */
  readonly shuffle: boolean;
  readonly identityScore: boolean;
  readonly Dv: number;
  /** out's element type: "f16" or "f32" (split-KV scratch). */
  readonly OT: string;
  /** The output accumulators go through fs transposed ([chunk column][oStride], col_major, the Sᵀ tile's layout:
   * fs needs no more than Sᵀ) instead of [BM][SST] (the pipelined template's compactSmem). */
  readonly oStride?: number;
  /** A WGSL f32 the epilogue multiplies out by besides 1 / l (x3: the inverse of v's power-of-two scale). */
  readonly outScale?: string;
  /** x3: every `every` tiles (and at each rescale) the matrices' partial O is added into per-thread f32 sums
   * (`oacc…`, round-to-nearest) and the matrices restart from zero (`zeroO`): the matrix unit's accumulation rounds
   * toward zero (seen on the H200: x3's error grew with Skv, 2.7e-6 rel. L2 at 4096 keys against 9e-7 for the
   * FMA kernel), so no matrix accumulates more than `every` tiles. */
  readonly flush?: { readonly every: number; readonly zeroO: string };
}

export function tensorForwardParts(s: TensorForwardShape) {
  const { mx, each, O, R, TR, DV16, BN16, G, SST, shuffle } = s;
  // the output accumulators go through fs in chunks of BN columns (rescale, epilogue)
  const chunks: [number, number][] = [];
  for (let j0 = 0; j0 < DV16; j0 += BN16) chunks.push([j0, Math.min(DV16, j0 + BN16)]);
  const OST = s.oStride;
  const oOff = (i: string, j: string, j0: number) => OST !== undefined
    ? `16u * (${j} - ${j0}u) * ${OST}u + sg * ${R}u + 16u * (${i})`
    : `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j} - ${j0}u)`;
  const storeO = (j0: number, j1: number) => each([["ti", 0, TR], ["tj", j0, j1]], (i, j) =>
    `      ${OST !== undefined ? mx.store("fs", oOff(i, j, j0), O(i, j), `${OST}u`, "col_major") : mx.store("fs", oOff(i, j, j0), O(i, j), `${SST}u`)}`);
  const loadO = (j0: number, j1: number) => each([["ti", 0, TR], ["tj", j0, j1]], (i, j) =>
    `      ${mx.loadTo(O(i, j), false, "result", "fs", OST !== undefined ? "col_major" : "row_major", oOff(i, j, j0), `${OST ?? SST}u`)}`);
  // transposed: the fs index of the thread's row r at chunk column `cc` (lanes of consecutive r hit consecutive
  // words; the G = 2 lanes of a row sit 4·OST words apart, OST = BM + 4 ≡ 4 mod 32 → 16 banks apart: conflict-free)
  const oAt = (cc: string) => `(${cc}) * ${OST}u + r`;
  // the thread's columns of a chunk of width w: 4·(part + G·q) + {0..3}
  const ownCols = (w: number, f: (cc: string, q: number) => string) => lines(w / (4 * G), (q) => f(`${4 * G * q}u + 4u * part`, q));
  const rowReduce = (v: string, op: "max" | "add") => {
    if (G === 1) return "";
    const f = (a: string, b: string) => (op === "max" ? `max(${a}, ${b})` : `${a} + ${b}`);
    // the G lanes of a row are consecutive lanes of one subgroup (see r / part)
    if (shuffle) return lines(Math.log2(G), (i) => `      ${v} = ${f(v, `subgroupShuffleXor(${v}, ${G >> (i + 1)}u)`)};`);
    return `      red[tid] = ${v};
      workgroupBarrier();
      ${v} = red[r * ${G}u];
${lines(G - 1, (g) => `      ${v} = ${f(v, `red[r * ${G}u + ${g + 1}u]`)};`)}`;
  };
  // the mask / score mod of the score vec4 x at columns tile + cc + {0..3}: edge tiles check bounds and the mask
  const modEntry = (edge: boolean) => `
          for (var t = 0u; t < 4u; t++) {
            let col = tile + cc + t;
            ${edge ? `var keep = row < row_limit && col < col_limit;
            if (keep && partial) { keep = mask_mod(i32(b), i32(h), i32(row), i32(col)); }
            if (!keep) { x[t] = NEG_INF; }${s.identityScore ? "" : ` else { x[t] = score_mod(x[t], i32(b), i32(h), i32(row), i32(col)) * LOG2E; }`}`
    : `x[t] = score_mod(x[t], i32(b), i32(h), i32(row), i32(col)) * LOG2E;`}
          }`;
  // the thread's four fs words of chunk column cc, as a vec4<f32>
  const ownWords = (cc: string) => OST !== undefined
    ? `let o = ${oAt(cc)}; let w = vec4<f32>(fs[o], fs[o + ${OST}u], fs[o + ${2 * OST}u], fs[o + ${3 * OST}u]);`
    : `let o = srow + ${cc}; let w = vec4<f32>(fs[o], fs[o + 1u], fs[o + 2u], fs[o + 3u]);`;
  const F = s.flush;
  const acc = (j0: number, q: number) => `oacc${j0}_${q}`;
  const accDecl = () => F ? chunks.map(([j0, j1]) => ownCols(16 * (j1 - j0), (_cc, q) => `  var ${acc(j0, q)} = vec4<f32>(0.0);`)).join("\n") : "";
  // flush: the sums take the matrices' partial O (both under the reference max that alpha moves away from)
  const flushBody = () => `${chunks.map(([j0, j1]) => `${storeO(j0, j1)}
        workgroupBarrier();
${ownCols(16 * (j1 - j0), (cc, q) => `        { ${ownWords(cc)} ${acc(j0, q)} = (${acc(j0, q)} + w) * alpha; }`)}
        workgroupBarrier();`).join("\n")}
        ${F?.zeroO}`;
  // flush mode: every `every` tiles, or where a row's reference max moved (the rescale then costs no load of O)
  const flushIf = (moved: string) => `      if (${moved}(iter % ${F?.every}u) == ${(F?.every ?? 1) - 1}u) {
${flushBody()}
      }`;
  // the accumulators of rows whose reference max moved this tile (flag_s), scaled by alpha through fs
  const rescale = () => F ? flushIf("workgroupUniformLoad(&flag_s) == iter + 1u || ") : `      if (workgroupUniformLoad(&flag_s) == iter + 1u) {
${chunks.map(([j0, j1]) => `${storeO(j0, j1)}
        workgroupBarrier();
${ownCols(16 * (j1 - j0), (cc) => OST !== undefined
    ? `        { let o = ${oAt(cc)}; fs[o] *= alpha; fs[o + ${OST}u] *= alpha; fs[o + ${2 * OST}u] *= alpha; fs[o + ${3 * OST}u] *= alpha; }`
    : `        { let o = srow + ${cc}; fs[o] *= alpha; fs[o + 1u] *= alpha; fs[o + 2u] *= alpha; fs[o + 3u] *= alpha; }`)}
        workgroupBarrier();
${loadO(j0, j1)}
        workgroupBarrier();`).join("\n")}
      }`;
  // `markIf` (optimisticMax): a WGSL bool — true: the workgroup's first row's lse word gets REDO_MARK, for the
  // kernel's second launch (kernels/flex_forward_tensor_pipe.ts), and the rest of its output is rewritten there
  const epilogue = (markIf?: string) => `  // ---- epilogue: row sums across the G lanes, normalize, write out and lse once
  var l_tot = l;
  workgroupBarrier();
${rowReduce("l_tot", "add")}
  let empty = l_tot == 0.0;
  let inv = select(${s.outScale ?? "1.0"} / l_tot, 0.0, empty);
  let lse_v = select((m + log2(l_tot)) * LN2, NEG_INF, empty);
  let rows_total = P.B * P.Hq * P.Sq;
  let obase = (split * rows_total + q_base + row) * ${s.Dv / 4}u;
${chunks.map(([j0, j1]) => `  workgroupBarrier();
${storeO(j0, j1)}
  workgroupBarrier();
  if (row < row_limit) {
${ownCols(16 * (j1 - j0), (cc, q) => {
    const st = F ? `{ ${ownWords(cc)} out[obase + (${16 * j0}u + ${cc}) / 4u] = vec4<${s.OT}>((w + ${acc(j0, q)}) * inv); }` : OST !== undefined
      ? `{ let o = ${oAt(cc)}; out[obase + (${16 * j0}u + ${cc}) / 4u] = vec4<${s.OT}>(vec4<f32>(fs[o], fs[o + ${OST}u], fs[o + ${2 * OST}u], fs[o + ${3 * OST}u]) * inv); }`
      : `{ let o = srow + ${cc}; out[obase + (${16 * j0}u + ${cc}) / 4u] = vec4<${s.OT}>(vec4<f32>(fs[o], fs[o + 1u], fs[o + 2u], fs[o + 3u]) * inv); }`;
    return `    ${16 * j1 <= s.Dv ? st : `if (${16 * j0}u + ${cc} < ${s.Dv}u) ${st}`}`;
  })}
  }`).join("\n")}
  if (row < row_limit && part == 0u) { lse[split * rows_total + q_base + row] = ${markIf ? `select(lse_v, redo_mark(), ${markIf} && r == 0u)` : "lse_v"}; }
  ${FLUSH_ERRORS}
}
`;
  return { chunks, storeO, loadO, ownCols, rowReduce, modEntry, rescale, epilogue, accDecl, flushIf };
}

/** Module scope of both templates: the uniforms (FLEX_FORWARD_UNIFORMS' layout), the bindings (k / v of `kvType`,
 * out of `outType`, q of `qType`: f16 but for the pipelined template's x3) and the base-2 constants. */
export const tensorForwardBindings = (kvType: string, outType: string, qType = "vec4<f16>") => `struct Params {
  Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, m_tiles: u32, n_kv_blocks: u32,
  nq_blocks: u32, tb_stride_b: u32, tb_stride_h: u32, off_kv_num: u32, off_kv_idx: u32,
  off_full_num: u32, off_full_idx: u32, has_full: u32, q_scale: f32, B: u32, n_splits: u32, pad1: u32,
}

@group(0) @binding(0) var<storage, read> qg: array<${qType}>;
@group(0) @binding(1) var<storage, read> kg: array<${kvType}>;
@group(0) @binding(2) var<storage, read> vg: array<${kvType}>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
@group(0) @binding(4) var<storage, read> caps: array<u32>;
@group(0) @binding(5) var<storage, read_write> err: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4<${outType}>>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<uniform> P: Params;

const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;`;
