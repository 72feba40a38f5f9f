/**
 * The tensor-family backward with a staged, pipelined streamed operand (`pipeline: true` of FlexBwdTensorConfig;
 * kernels/flex_backward_tensor.ts has the modes, the math and the older direct-load template).
 *
 * Why: on the H200 subgroup-matrix loads from workgroup memory with padded rows run at the MMA peak (stride 72 f16:
 * 614 TF/s, bench/tensor_layout_probe.ts part W), straight from storage near 100 TF/s. So every matrix operand comes
 * from workgroup memory here:
 *   - the owner operands (dq: Q, dO; dkdv: K, V) are staged once and kept as left matrices in registers;
 *   - the streamed tile's two operands (dq: K, V; dkdv: Q, dO) are staged ONCE per workgroup, shared by its subgroups,
 *     in two slots (ping-pong) with padded rows; tile t+2's global loads go into registers (vec4 per thread) while
 *     tile t computes, and land in the free slot during tile t+1 (a tile of latency hidden);
 *   - S and dP go to two f32 regions, one fused scalar pass makes P and dS' (f16, padded rows), read as left matrices.
 * Two workgroup barriers per tile (the old template: six). Edge tiles are the same code (the staging zero-fills past
 * the sequence and in the head-dim padding), so any D the family takes and ragged lengths run natively.
 *
 * Two register pipelines (`oneStage`):
 *   one stage  (the default; the forward pipe's order) tile t + 1's loads at the top of tile t, into slot^1 after the
 *              scalar pass: products from slot → fs | barrier A | scalar pass fs → P / dS', slot^1 ← registers |
 *              barrier B | accumulate from P / dS' and slot
 *   two stages products → fs | A | slot^1 ← registers (tile t + 1), tile t + 2's loads → registers, scalar pass |
 *              B | accumulate: the registers cross the loop's back edge.
 * Slot^1 was last read by tile t−1's accumulate (before barrier A); fs and P / dS' are each written and read on
 * opposite sides of A / B. Both are exact emulated; on the H200 (2026-12-01, H5 calls 1–2) the two-stage kernels
 * came out wrong in 3 of 4 variants (rel. L2 1.3–3.6: stale workgroup-memory loads, mechanism unknown) and the
 * one-stage ones exact in every case run (noop, causal, softcap + causal, sliding window, GQA, D 32 / 64 / 128).
 * H200 B4 H16 S4096 D64, BA 128 / 8 subgroups / BB 16, one stage: noop 25.6 ms, causal 9.2 ms (direct-load
 * template 47.6 / 25.6). Diagnostics (two stages, BA 64 / BB 32, noop 24.6 ms): without the scalar pass 22.4 ms,
 * without the streamed loads 16.3 ms — the tile chain itself (products, fs round trip, barriers) is the bound.
 * Per launch with warm clocks (session 7, bench/tensor_bwd_breakdown.ts; those H5 totals and the session-6 table's
 * causal 17.0 ms were timed partly at idle clocks): dK/dV + dQ noop 8.19 + 7.01 ms (67 / 59 TF/s), causal 4.39 + 3.80,
 * sliding window 1024 2.23 + 1.90, document 2.56 + 2.16, softcap + causal 6.23 + 5.05 — proportional to the visited
 * blocks. Other shapes, the same noop (dK/dV / dQ ms): BA 64 SG 4 BB 16 13.5 / 7.34, BA 32 SG 2 BB 16 15.1 / 11.9,
 * BA 128 SG 4 (32 rows a subgroup) 15.9 / 8.91, BA 64 SG 4 BB 32 – / 10.2, matrix-staged BA 128 SG 8 BB 16 10.6 / –,
 * BA 64 SG 4 BB 32 16.6 / 13.2, BA 64 SG 2 BB 32 34.0 / 21.2: the default is the fastest for both kernels.
 *
 * The block walk's counts and block indices are read by invocation 0 and broadcast with workgroupUniformLoad (loop
 * bounds uniform by construction): the forward's staged path was wrong on the H200 until its walk did the same.
 *
 * `storeDs` (dkdv, quad pass, one stage): the quad pass also stores the f16 dS' quad it forms (4 q columns of a kv
 * row, one vec4<f16>, coalesced along q) into a scratch of dS'ᵀ for dQ = scale·dS'·K (kernels/
 * flex_bwd_dq_from_ds_tensor.ts), the same values its dSᵀ·Q product reads; the grid's y then runs over a chunk's
 * kv heads from the uniform ds_head0. No barrier or workgroup-memory traffic is added.
 *
 * `ownRows` (quad pass, one stage; session 9): the scalar pass of subgroup sg covers its own R rows (quad lane + 32·e
 * of its R × BB elements), the rows its S / dP stores wrote and its P / dS' left loads read, so those four regions never
 * cross subgroups; only the slots do. Natively the tile is then products → pass → accumulate → tile t + 1's registers
 * into slot^1 → ONE workgroup barrier (slot^1 visible, every subgroup done with slot t). The subgroup-internal steps
 * (matrix store → its lanes' reads, lane writes → its matrix loads) rely on a subgroup's workgroup-memory accesses
 * taking effect in program order (WGSL has no subgroup barrier): checked against float64 on the device before use.
 * Emulated, a barrier stays on each side of the pass (lavapipe runs invocations in chunks between barriers).
 * With it: `oneFs` (S and dP through one f32 region: the pass reads S and keeps P in registers, the dP store overwrites
 * S, then dS' forms; 10 KiB less at BA 128 / BB 16) and `ownerSmem` (the owner operands stay in workgroup memory,
 * [BA][ST] each after P / dS', loaded as left matrices per product: 32 registers a lane fewer at D 64).
 *
 * `roleSplit` (dkdv, quad pass, one stage; session 12): the driver gives the plain dK/dV kernel 192 registers (its K and V
 * left matrices and both accumulator sets live across the walk: one 256-thread workgroup a SM). Here the subgroups come
 * in two roles over the same rows — role 0 holds K and dK (S = K·Qᵀ, dK += dS'·Q), role 1 V and dV (dP = V·dOᵀ,
 * dV += P·dO) — one product code with the operands' offsets by role, the scalar pass and fs unchanged: 112–127 registers.
 * Exact on the H200, but not faster (BA 128 with 16 subgroups 1.97–2.03 ms a chunk against 2.10, causal slower; BA 64
 * with 8: 2.75, each Q / dO tile staged for half the rows), so a knob (bench/RESULTS.md, session 12).
 *
 * `lateLoads` (one stage, no ownRows; session 15, the first dK/dV shape's default since session 16): the next streamed
 * tile's loads after barrier A, beside the scalar pass, so no barrier lies between them and their stores — 1 % on the
 * H200. Tried in session 16 and not kept: the stored dS' quads' global stores after barrier B (no faster: 2.10 vs 2.03
 * ms a noop chunk).
 */
import { backwardOwnerCoords } from "./block_walk.ts";
import { FLUSH_ERRORS } from "./error_bits.ts";
import type { FlexBwdHooks, FlexBwdMode } from "./flex_backward.ts";
import { matrixNaming, SubgroupMatrixOps } from "./subgroup_matrix.ts";
import { tensorBwdBindings, tensorBwdEntry, tensorBwdWriteAcc, walkCountsWgsl } from "./flex_backward_tensor_parts.ts";
import { DS_TENSOR_PARAMS, dsTStrideWgsl } from "./flex_bwd_dq_from_ds_tensor.ts";

/** The pipelined template's geometry (f16 / f32 element counts). */
export interface PipeLayout {
  R: number; TR: number; NT: number; Dp: number; Dvp: number;
  /** Row strides: staged operands (f16), P / dS' (f16), S / dP (f32). */
  ST: number; PST: number; SST: number;
  /** One slot (both streamed operands), the staging area (two slots, or the owner staging if larger); owner rows
   * staged at a time (the owner operands go to registers in chunks when BA rows do not fit the two slots). */
  SLOT: number; STG: number; CH: number;
  /** hs = staging ‖ P (dkdv) ‖ dS'; fs = S ‖ dP. */
  HS: number; FS: number;
  EPT: number;
}

interface PipeShape {
  readonly D: number; readonly Dv: number; readonly BA: number; readonly subgroups: number; readonly BB: number; readonly subgroupSize: number;
  /** Owner rows staged at a time (a multiple of BA / subgroups; default: as many as the two slots hold). Tests set
   * it to run the chunked owner staging on small shapes. */
  readonly ownerChunk?: number;
  /** ownRows: S and dP through one f32 region (the subgroup's pass reads S, then its dP store overwrites it). */
  readonly oneFs?: boolean;
  /** ownRows: the owner operands stay in workgroup memory ([BA][ST] each, after P / dS'), left matrices loaded per
   * product instead of held in registers (32 registers a lane fewer at D 64). */
  readonly ownerSmem?: boolean;
  /** dkdv: the subgroups in two roles over the same rows (see the file comment): R = BA / (subgroups / 2). */
  readonly roleSplit?: boolean;
}

const up16 = (x: number) => Math.ceil(x / 16) * 16;

export function pipeLayout(c: PipeShape, mode: FlexBwdMode): PipeLayout {
  const R = c.BA / (c.roleSplit ? c.subgroups / 2 : c.subgroups);
  const NT = c.subgroups * c.subgroupSize;
  const Dp = up16(c.D), Dvp = up16(c.Dv);
  // +8 f16 (16 bytes) per row: the 8 rows of a matrix load start in distinct 16-byte bank groups
  const ST = Math.max(Dp, Dvp) + 8, PST = c.BB + 8, SST = c.BB + 4;
  const SLOT = 2 * c.BB * ST;
  const CH = c.ownerChunk ?? Math.min(c.BA, Math.max(R, Math.floor(2 * SLOT / ST / R) * R));
  const STG = c.ownerSmem ? 2 * SLOT : Math.max(2 * SLOT, CH * ST);
  const HS = STG + (mode === "dkdv" ? 2 : 1) * c.BA * PST + (c.ownerSmem ? 2 * c.BA * ST : 0);
  return { R, TR: R / 16, NT, Dp, Dvp, ST, PST, SST, SLOT, STG, CH, HS, FS: (c.oneFs ? 1 : 2) * c.BA * SST, EPT: (c.BA * c.BB) / NT };
}

/** Workgroup memory in bytes (+ 64: the compiler aligns each variable). */
export function pipeSmemBytes(c: PipeShape, mode: FlexBwdMode): number {
  const d = pipeLayout(c, mode);
  const ld = mode === "dq" ? c.BA : 2 * c.BB;
  return 2 * d.HS + 4 * d.FS + 8 * ld + 12 + 64;
}

export function flexBackwardTensorPipeWgsl(
  mode: FlexBwdMode,
  c: PipeShape & {
    readonly emulate: boolean; readonly quadPass?: boolean; readonly matrixStage?: boolean; readonly oneStage?: boolean;
    readonly probe?: "noScalar" | "noStage";
    /** dkdv, quad pass, one stage: also store each tile's dS' (f16) transposed into `dsg` for the dQ GEMM
     * (kernels/flex_bwd_dq_from_ds_tensor.ts has the two layouts); the grid's y runs over a chunk's kv heads. */
    readonly storeDs?: "dense" | "compact";
    /** storeDs dense: f16 elements added to the scratch's row stride (the dQ GEMM's config carries the same). */
    readonly dsPad?: number;
    /** Quad pass, one stage: each subgroup's scalar pass covers its own R rows, so S, dP, P and dS' never cross
     * subgroups and natively one workgroup barrier a tile remains (see the file comment). */
    readonly ownRows?: boolean;
    /** One stage, no ownRows: tile t + 1's loads after barrier A instead of at the tile's top (FlexBwdTensorConfig). */
    readonly lateLoads?: boolean;
  },
  hooks: FlexBwdHooks,
): string {
  const dq = mode === "dq";
  const d = pipeLayout(c, mode);
  const SD = dq ? undefined : c.storeDs;
  if (SD && (!c.quadPass || c.probe)) throw new Error("flex backward tensor (pipelined): storeDs needs the quad pass");
  const OWN = !!c.ownRows;
  if (OWN && (!c.quadPass || !c.oneStage || c.probe)) throw new Error("flex backward tensor (pipelined): ownRows needs the quad pass and one stage");
  const ONE_FS = !!c.oneFs;
  if (ONE_FS && !OWN) throw new Error("flex backward tensor (pipelined): oneFs needs ownRows");
  const OSM = !!c.ownerSmem;
  if (OSM && !OWN) throw new Error("flex backward tensor (pipelined): ownerSmem needs ownRows");
  const RS = !!c.roleSplit;
  if (RS && (dq || !c.quadPass || !c.oneStage || c.probe || OWN || c.matrixStage || c.subgroups % 2 !== 0 || up16(c.D) !== up16(c.Dv))) {
    throw new Error("flex backward tensor (pipelined): roleSplit is a dkdv form with the quad pass, one stage, no ownRows / matrixStage, an even subgroup count and D, Dv of one padded width");
  }
  // the owner row group of subgroup sg: its index (roleSplit: the two roles share the rows), the row offset's name
  const RG = RS ? "rg" : "sg";
  const { R, TR, NT, Dp, Dvp, ST, PST, SST, SLOT, STG, CH, EPT } = d;
  // ownerSmem: A1 [BA][ST] then A2 at OWN_OFF (after P / dS')
  const OWN_OFF = STG + (dq ? 1 : 2) * c.BA * PST;
  if (CH % R !== 0 || c.BA % CH !== 0) throw new Error(`flex backward tensor (pipelined): owner chunk ${CH} must be a multiple of ${R} dividing ${c.BA}`);
  const K1 = Dp / 16, K2 = Dvp / 16, BB16 = c.BB / 16;
  const E = c.emulate;
  const mx = new SubgroupMatrixOps(E);
  const { lit, each, fr, decl } = matrixNaming(E, " + zero");
  const P_OFF = STG, DS_OFF = STG + (dq ? 0 : c.BA * PST), FSP = ONE_FS ? 0 : c.BA * SST, B2_OFF = c.BB * ST;
  const A1 = dq ? "qg" : "kg", A2 = dq ? "dog" : "vg", B1 = dq ? "kg" : "qg", B2 = dq ? "vg" : "dog";
  const blockLen = dq ? "P.KB" : "P.QB", streamLen = dq ? "P.Skv" : "P.Sq";

  // a WGSL u32 offset: a number as a literal, an expression as is
  const u = (x: number | string) => typeof x === "number" ? `${x}u` : x;
  const put4 = (o: string, x: string) => `hs[${o}] = ${x}.x; hs[${o} + 1u] = ${x}.y; hs[${o} + 2u] = ${x}.z; hs[${o} + 3u] = ${x}.w;`;

  // ---- owner rows [row0, row0 + BA) of an operand into hs (zero past row_limit and in the padding), then left matrices
  // (in chunks of CH rows when BA rows do not fit the staging area: each subgroup loads from the chunk of its rows)
  const ownerBlock = (name: string, arr: string, width: number, widthP: number, KW: number, role?: number) => Array.from({ length: c.BA / CH }, (_, ch) => `
  workgroupBarrier();
  for (var idx = tid; idx < ${CH * (widthP / 4)}u; idx += ${NT}u) {
    let n = ${ch * CH}u + idx / ${widthP / 4}u;
    let d4 = idx % ${widthP / 4}u;
    var x = vec4<f16>(0.0h);
    if (row0 + n < row_limit${width === widthP ? "" : ` && d4 < ${width / 4}u`}) { x = ${arr}[(a_base + row0 + n) * ${width / 4}u + d4]; }
    let o = (n - ${ch * CH}u) * ${ST}u + 4u * d4;
    ${put4("o", "x")}
  }
  workgroupBarrier();${CH === c.BA && role === undefined ? "" : `
  if (${[...(role === undefined ? [] : [`role == ${role}u`]), ...(CH === c.BA ? [] : [`${RG} * ${R}u >= ${ch * CH}u && ${RG} * ${R}u < ${(ch + 1) * CH}u`])].join(" && ")}) {`}
${each([["ti", 0, TR], ["tk", 0, KW]], (i, k) =>
    `  ${fr(name, KW, i, k)} = ${mx.load("left", "hs", "row_major", `(${RG} * ${R}u - ${ch * CH}u + 16u * (${i})) * ${ST}u + 16u * (${k})`, `${ST}u`)};`)}${CH === c.BA && role === undefined ? "" : `
  }`}`).join("");

  // ---- the streamed operands' register pipeline: thread tid holds vec4 number tid + i·NT of each operand's tile;
  // with matrixStage (native, D and Dv multiples of 16) whole tiles travel as 16×16 matrices instead, subgroup sg
  // loading matrices sg, sg + SG, … of each operand from storage and storing them into the slot (edge tiles: vec4s)
  const MS = !!c.matrixStage && !E;
  const regs = (widthP: number) => Math.ceil((c.BB * widthP) / 4 / NT);
  const ops = [
    { tag: "ra", mtag: "ma", arr: B1, width: c.D, widthP: Dp, base: 0, M: BB16 * K1, KW: K1 },
    { tag: "rb", mtag: "mb", arr: B2, width: c.Dv, widthP: Dvp, base: B2_OFF, M: BB16 * K2, KW: K2 },
  ];
  const shares = (M: number) => Math.ceil(M / c.subgroups);
  // vec4 number i of a streamed operand (bound as f16 scalars when its matrices load from storage)
  const read4 = (arr: string, i: string) => MS
    ? `vec4<f16>(${arr}[4u * (${i})], ${arr}[4u * (${i}) + 1u], ${arr}[4u * (${i}) + 2u], ${arr}[4u * (${i}) + 3u])`
    : `${arr}[${i}]`;
  const regDecl = ops.map((o) => Array.from({ length: regs(o.widthP) }, (_, i) => `  var ${o.tag}${i} = vec4<f16>(0.0h);`).join("\n")).join("\n") +
    (dq ? "" : "\n  var rl = vec2<f32>(0.0, 0.0);") +
    (MS ? `\n  var reg_full = false;\n${ops.map((o) => Array.from({ length: shares(o.M) }, (_, i) => `  var ${o.mtag}${i}: LM;`).join("\n")).join("\n")}` : "");
  // the share matrices of subgroup sg: matrix m = sg + SG·i of an operand's BB16 × KW tiles (row block m / KW)
  const share = (o: (typeof ops)[number], i: number, f: (jn: string, kd: string) => string) => {
    const guard = (i + 1) * c.subgroups > o.M;
    return `      {
        let m = sg + ${i * c.subgroups}u;
        ${guard ? `if (m < ${o.M}u) ` : ""}{ ${f(`(m / ${o.KW}u)`, `(m % ${o.KW}u)`)} }
      }`;
  };
  // loads of the tile starting at `t0` whose block ends at `lim` (zero past it and in the padding)
  const vecLoad = (t0: string, lim: string) => ops.map((o) => Array.from({ length: regs(o.widthP) }, (_, i) => {
    const total = (c.BB * o.widthP) / 4;
    return `      {
        let idx = tid + ${i * NT}u;
        let n = idx / ${o.widthP / 4}u;
        let d4 = idx % ${o.widthP / 4}u;
        ${o.tag}${i} = vec4<f16>(0.0h);
        if (${(i + 1) * NT > total ? `idx < ${total}u && ` : ""}${t0} + n < ${lim}${o.width === o.widthP ? "" : ` && d4 < ${o.width / 4}u`}) { ${o.tag}${i} = ${read4(o.arr, `(b_base + ${t0} + n) * ${o.width / 4}u + d4`)}; }
      }`;
  }).join("\n")).join("\n");
  const matLoad = (t0: string) => ops.map((o) => Array.from({ length: shares(o.M) }, (_, i) => share(o, i, (jn, kd) =>
    `${o.mtag}${i} = subgroupMatrixLoad<LM, row_major>(&${o.arr}, (b_base + ${t0} + 16u * ${jn}) * ${o.width}u + 16u * ${kd}, ${o.width}u);`)).join("\n")).join("\n");
  const regLoad = (t0: string, lim: string) => (MS ? `      reg_full = ${t0} + ${c.BB}u <= ${lim};
      if (reg_full) {
${matLoad(t0)}
      } else {
${vecLoad(t0, lim)}
      }` : vecLoad(t0, lim)) + (dq ? "" : `
      rl = vec2<f32>(POS_INF, 0.0);
      if (tid < ${c.BB}u && ${t0} + tid < ${lim}) { rl = ldg[b_base + ${t0} + tid]; }`);
  const vecStore = (slotOff: string) => ops.map((o) => Array.from({ length: regs(o.widthP) }, (_, i) => {
    const total = (c.BB * o.widthP) / 4;
    const st = `{
        let idx = tid + ${i * NT}u;
        let o = ${slotOff} + ${o.base}u + (idx / ${o.widthP / 4}u) * ${ST}u + 4u * (idx % ${o.widthP / 4}u);
        ${put4("o", `${o.tag}${i}`)}
      }`;
    return `      ${(i + 1) * NT > total ? `if (tid + ${i * NT}u < ${total}u) ` : ""}${st}`;
  }).join("\n")).join("\n");
  const matStore = (slotOff: string) => ops.map((o) => Array.from({ length: shares(o.M) }, (_, i) => share(o, i, (jn, kd) =>
    `subgroupMatrixStore<row_major>(&hs, ${slotOff} + ${o.base}u + 16u * ${jn} * ${ST}u + 16u * ${kd}, ${o.mtag}${i}, ${ST}u);`)).join("\n")).join("\n");
  const regStore = (slotOff: string, ldSlot: string) => (MS ? `      if (reg_full) {
${matStore(slotOff)}
      } else {
${vecStore(slotOff)}
      }` : vecStore(slotOff)) + (dq ? "" : `
      if (tid < ${c.BB}u) { ld_s[${ldSlot} + tid] = rl; }`);

  // ---- X = A·Bᵀ over the tile (B's rows are the tile's columns: Bᵀ read col-major from the slot)
  const ownerAt = (own: string) => OWN_OFF + (own === "a1" ? 0 : c.BA * ST);
  const scoreProduct = (res: string, own: string, KW: number, base: number | string) =>
    each([["tk", 0, KW], ["tj", 0, BB16]], (k, j) => `      {
        let br = ${mx.load("right", "hs", "col_major", `slot_off + ${u(base)} + 16u * (${j}) * ${ST}u + 16u * (${k})`, `${ST}u`)};
${each([["ti", 0, TR]], (i) => OSM ? `        {
          let al = ${mx.load("left", "hs", "row_major", `${ownerAt(own)}u + (${RG} * ${R}u + 16u * (${i})) * ${ST}u + 16u * (${k})`, `${ST}u`)};
          ${fr(res, BB16, i, j)} = ${mx.mma("al", "br", fr(res, BB16, i, j))};
        }` : `        ${fr(res, BB16, i, j)} = ${mx.mma(fr(own, KW, i, k), "br", fr(res, BB16, i, j))};`)}
      }`);
  const storeTile = (res: string, off: number | string) =>
    each([["ti", 0, TR], ["tj", 0, BB16]], (i, j) => `      ${mx.store("fs", `${u(off)} + (${RG} * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j})`, fr(res, BB16, i, j), `${SST}u`)}`);
  // ---- acc += L·B: L (f16 [BA][PST] at lOff) as left matrices, the slot's operand rows as right matrices
  const accumulate = (acc: string, lOff: number | string, KW: number, base: number | string) =>
    each([["tk", 0, BB16]], (k) => `      {
${E ? `        var lf: array<LM, ${TR}>;` : ""}
${each([["ti", 0, TR]], (i) => `        ${E ? `lf[${i}]` : `let l${lit(i)}`} = ${mx.load("left", "hs", "row_major", `${u(lOff)} + (${RG} * ${R}u + 16u * (${i})) * ${PST}u + 16u * (${k})`, `${PST}u`)};`)}
${each([["tj", 0, KW]], (j) => `        {
          let br = ${mx.load("right", "hs", "row_major", `slot_off + ${u(base)} + 16u * (${k}) * ${ST}u + 16u * (${j})`, `${ST}u`)};
${each([["ti", 0, TR]], (i) => `          ${fr(acc, KW, i, j)} = ${mx.mma(E ? `lf[${i}]` : `l${lit(i)}`, "br", fr(acc, KW, i, j))};`)}
        }`)}
      }`);

  // ---- the fused scalar pass: P = exp2(s'·log2 e − lse·log2 e), dS' = P∘(dP − Δ)·∂mod/∂score, both f16
  const qi = dq ? "i32(row)" : "i32(col)", ki = dq ? "i32(col)" : "i32(row)";
  const scalarPass = `
      for (var e = 0u; e < ${EPT}u${E ? " + zero" : ""}; e++) {
        let idx = tid + e * ${NT}u;
        let r = idx / ${c.BB}u;
        let cl = idx % ${c.BB}u;
        let row = row0 + r;
        let col = tile + cl;
        let ld = ${dq ? "ld_s[r]" : "ld_s[ld_off + cl]"};
        var p = 0.0;
        var ds = 0.0;
        if (row < row_limit && col < col_limit && ld.x != POS_INF && (!partial || mask_mod(ib, ih, ${qi}, ${ki}))) {
          let raw = fs[r * ${SST}u + cl] * P.scale;
          let sm = ${hooks.identityScore ? "raw" : `score_mod(raw, ib, ih, ${qi}, ${ki})`};
          if (bitcast<u32>(sm) != NEG_INF_BITS) {
            p = exp2(sm * LOG2E - ld.x);
            ${hooks.identityScore ? "let g = 1.0;" : `let g = score_mod_grad(raw, ib, ih, ${qi}, ${ki});
            flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(g));`}
            ds = select(0.0, p * (fs[${FSP}u + r * ${SST}u + cl] - ld.y) * g, p != 0.0);
          }
        }${dq ? "" : `
        hs[${P_OFF}u + r * ${PST}u + cl] = f16(p);`}
        hs[${DS_OFF}u + r * ${PST}u + cl] = f16(ds);
      }`;

  // the same pass over quads (4 consecutive columns of a row per step: one index computation, vec4 reads of S / dP,
  // the row's ld once in dq; `quadPass`)
  const quadEntry = (t: number) => `
          {
            let col = tile + c0 + ${t}u;${dq ? "" : `
            let ld = ld_s[ld_off + c0 + ${t}u];`}
            if (col < col_limit && ld.x != POS_INF && (!partial || mask_mod(ib, ih, ${qi}, ${ki}))) {
              let raw = s4[${t}];
              let sm = ${hooks.identityScore ? "raw" : `score_mod(raw, ib, ih, ${qi}, ${ki})`};
              if (bitcast<u32>(sm) != NEG_INF_BITS) {
                let p = exp2(sm * LOG2E - ld.x);
                ${hooks.identityScore ? "let g = 1.0;" : `let g = score_mod_grad(raw, ib, ih, ${qi}, ${ki});
                flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(g));`}
                p4[${t}] = p;
                ds4[${t}] = select(0.0, p * (dp4[${t}] - ld.y) * g, p != 0.0);
              }
            }
          }`;
  // storeDs: element (kv row r of the tile, q column c0) of dS'ᵀ at ds_at + r·(row stride) + c0
  const dsAt = SD === "compact"
    ? `
      let ds_at = (caps[P.off_ds_head + b * P.Hq + h] - P.ds_base + caps[P.off_ds_slot + trow * P.row_width + t / tpb]) * P.QB * P.KB + (row0 - ablk * P.KB) * P.QB + tile - sb_cur * P.QB;`
    : SD ? `
      let ds_at = (ds_head + row0) * ds_stride + tile;` : "";
  // ownRows: quad qd = lane + 32·e of the subgroup's own R × BB elements (the rows its matrices stored / will load)
  const quadIndex = OWN ? `
        let qd = ${E ? "tid % 32u" : "sg_lane"} + e * 32u;
        let r = sg * ${R}u + qd / ${c.BB / 4}u;
        let c0 = 4u * (qd % ${c.BB / 4}u);` : `
        let idx = tid + e * ${NT}u;
        let r = idx / ${c.BB / 4}u;
        let c0 = 4u * (idx % ${c.BB / 4}u);`;
  const quadPass = `${dsAt}
      for (var e = 0u; e < ${EPT / 4}u${E ? " + zero" : ""}; e++) {${quadIndex}
        let row = row0 + r;
        let so = r * ${SST}u + c0;
        var p4 = vec4<f32>(0.0);
        var ds4 = vec4<f32>(0.0);
        if (row < row_limit) {${dq ? `
          let ld = ld_s[r];` : ""}
          let s4 = vec4<f32>(fs[so], fs[so + 1u], fs[so + 2u], fs[so + 3u]) * P.scale;
          let dp4 = vec4<f32>(fs[${FSP}u + so], fs[${FSP}u + so + 1u], fs[${FSP}u + so + 2u], fs[${FSP}u + so + 3u]);${[0, 1, 2, 3].map(quadEntry).join("")}
        }
        let po = r * ${PST}u + c0;${dq ? "" : `
        let ph = vec4<f16>(p4);
        hs[${P_OFF}u + po] = ph.x; hs[${P_OFF}u + po + 1u] = ph.y; hs[${P_OFF}u + po + 2u] = ph.z; hs[${P_OFF}u + po + 3u] = ph.w;`}
        let dh = vec4<f16>(ds4);
        hs[${DS_OFF}u + po] = dh.x; hs[${DS_OFF}u + po + 1u] = dh.y; hs[${DS_OFF}u + po + 2u] = dh.z; hs[${DS_OFF}u + po + 3u] = dh.w;${SD ? `
        if (row < row_limit && tile + c0 < col_limit) { dsg[(ds_at + r * ${SD === "compact" ? "P.QB" : "ds_stride"} + c0) / 4u] = dh; }` : ""}
      }`;

  // oneFs: the quad pass in two halves around the dP store (S and dP share fs): P (and ∂mod/∂score) of the quads kept
  // in registers, then dS' from dP
  const Q = EPT / 4;
  const quadHead = `
        let row = row0 + r;
        let so = r * ${SST}u + c0;
        let po = r * ${PST}u + c0;`;
  const halfEntry = (t: number) => `
          {
            let col = tile + c0 + ${t}u;${dq ? "" : `
            let ld = ld_s[ld_off + c0 + ${t}u];`}
            if (col < col_limit && ld.x != POS_INF && (!partial || mask_mod(ib, ih, ${qi}, ${ki}))) {
              let raw = s4[${t}];
              let sm = ${hooks.identityScore ? "raw" : `score_mod(raw, ib, ih, ${qi}, ${ki})`};
              if (bitcast<u32>(sm) != NEG_INF_BITS) {
                p4[${t}] = exp2(sm * LOG2E - ld.x);${hooks.identityScore ? "" : `
                let g = score_mod_grad(raw, ib, ih, ${qi}, ${ki});
                flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(g));
                g4[${t}] = g;`}
              }
            }
          }`;
  const passP = `
      var pk: array<vec4<f32>, ${Q}>;${hooks.identityScore ? "" : `
      var gk: array<vec4<f32>, ${Q}>;`}
      for (var e = 0u; e < ${Q}u${E ? " + zero" : ""}; e++) {${quadIndex}${quadHead}
        var p4 = vec4<f32>(0.0);${hooks.identityScore ? "" : `
        var g4 = vec4<f32>(0.0);`}
        if (row < row_limit) {${dq ? `
          let ld = ld_s[r];` : ""}
          let s4 = vec4<f32>(fs[so], fs[so + 1u], fs[so + 2u], fs[so + 3u]) * P.scale;${[0, 1, 2, 3].map(halfEntry).join("")}
        }
        pk[e] = p4;${hooks.identityScore ? "" : `
        gk[e] = g4;`}${dq ? "" : `
        let ph = vec4<f16>(p4);
        hs[${P_OFF}u + po] = ph.x; hs[${P_OFF}u + po + 1u] = ph.y; hs[${P_OFF}u + po + 2u] = ph.z; hs[${P_OFF}u + po + 3u] = ph.w;`}
      }`;
  const passDs = `${dsAt}
      for (var e = 0u; e < ${Q}u${E ? " + zero" : ""}; e++) {${quadIndex}${quadHead}
        let p4 = pk[e];
        var ds4 = vec4<f32>(0.0);
        if (row < row_limit) {
          let dp4 = vec4<f32>(fs[so], fs[so + 1u], fs[so + 2u], fs[so + 3u]);
          let d4 = ${dq ? "vec4<f32>(ld_s[r].y)" : `vec4<f32>(${[0, 1, 2, 3].map((t) => `ld_s[ld_off + c0 + ${t}u].y`).join(", ")})`};
          ds4 = select(vec4<f32>(0.0), p4 * (dp4 - d4)${hooks.identityScore ? "" : " * gk[e]"}, p4 != vec4<f32>(0.0));
        }
        let dh = vec4<f16>(ds4);
        hs[${DS_OFF}u + po] = dh.x; hs[${DS_OFF}u + po + 1u] = dh.y; hs[${DS_OFF}u + po + 2u] = dh.z; hs[${DS_OFF}u + po + 3u] = dh.w;${SD ? `
        if (row < row_limit && tile + c0 < col_limit) { dsg[(ds_at + r * ${SD === "compact" ? "P.QB" : "ds_stride"} + c0) / 4u] = dh; }` : ""}
      }`;

  // the walk's workgroup words: two stages use all five, as ONE 16-byte-multiple array (five lone u32 are 20 bytes: the
  // dQ GEMM's lone words were seen, natively, to shift the arrays after them — kernels/flex_bwd_dq_from_ds_tensor.ts —
  // and the two-stage kernels, exact emulated, came out wrong natively); one stage keeps its four lone words (16 bytes,
  // the layout checked on the H200)
  const W = c.oneStage
    ? { np: "walk_np", nf: "walk_nf", sb0: "walk_sb0", sb1: "walk_sb1", sb2: "walk_sb2" }
    : { np: "walk_w[0]", nf: "walk_w[1]", sb0: "walk_w[2]", sb1: "walk_w[3]", sb2: "walk_w[4]" };
  // block index of walk position `blk` into walk var `v`, broadcast (uniform control flow only)
  const lookup = (blk: string, v: string, into: string) => `
      if (tid == 0u) {
        if (${blk} < n_partial) { ${v} = caps[P.off_idx + trow * P.row_width + ${blk}]; }
        else { ${v} = caps[P.off_full_idx + trow * P.row_width + (${blk} - n_partial)]; }
      }
      ${into} = workgroupUniformLoad(&${v});`;
  const tileStart = (sb: string, t: string) => `${sb} * ${blockLen} + (${t} % tpb) * ${c.BB}u`;
  const limitOf = (sb: string) => `min(${sb} * ${blockLen} + ${blockLen}, ${streamLen})`;

  // both walks: the block list's counts through workgroupUniformLoad (bounds uniform by construction), then tile 0
  // into slot 0 (its block's index broadcast the same way)
  const walkCounts = `\n${walkCountsWgsl(blockLen, c.BB, "    ", { np: W.np, nf: W.nf })}`;
  const firstTile = `    if (n_tiles > 0u) {${lookup("0u", W.sb0, "sb_cur")}
${regLoad(tileStart("sb_cur", "0u"), limitOf("sb_cur"))}
${regStore("0u", "0u")}
    }`;
  const walkTwo = `${walkCounts}    // sb_cur: block of tile t (in slot t & 1), sb_nxt: of tile t + 1 (in the registers)
    var sb_cur = 0u;
    var sb_nxt = 0u;
${firstTile}
    if (n_tiles > 1u) {
      sb_nxt = sb_cur;
      if (tpb == 1u) {${lookup("1u", W.sb1, "sb_nxt")}
      }
${regLoad(tileStart("sb_nxt", "1u"), limitOf("sb_nxt"))}${c.probe === "noStage" ? `
${regStore(`${SLOT}u`, `${c.BB}u`)}` : ""}
    }
    workgroupBarrier(); // slot 0 visible
    for (var t = 0u; t < n_tiles; t++) {
      let slot_off = (t & 1u) * ${SLOT}u;
      let ld_off = (t & 1u) * ${c.BB}u;
      let partial = t / tpb < n_partial;
      let tile = ${tileStart("sb_cur", "t")};
      let col_limit = ${limitOf("sb_cur")};
      // ---- S = A1·B1ᵀ, dP = A2·B2ᵀ → fs
      ${decl("s", TR, BB16, "CM")}
${scoreProduct("s", "a1", K1, 0)}
${storeTile("s", 0)}
      ${decl("x", TR, BB16, "CM")}
${scoreProduct("x", "a2", K2, B2_OFF)}
${storeTile("x", FSP)}
      workgroupBarrier(); // A: S, dP visible; every subgroup is past tile t − 1's accumulate
      // ---- the pipeline: tile t + 1 from the registers into the other slot, tile t + 2's loads issued
      var sb_pf = sb_nxt;
      if (t + 2u < n_tiles && (t + 2u) % tpb == 0u) {${lookup("(t + 2u) / tpb", W.sb2, "sb_pf")}
      }
${c.probe === "noStage" ? "      // DIAGNOSTIC (probe noStage): the slots keep tiles 0 and 1" : `      if (t + 1u < n_tiles) {
${regStore(`${SLOT}u - slot_off`, `${c.BB}u - ld_off`)}
      }
      if (t + 2u < n_tiles) {
${regLoad(tileStart("sb_pf", "(t + 2u)"), limitOf("sb_pf"))}
      }`}
${c.probe === "noScalar" ? "      // DIAGNOSTIC (probe noScalar): no scalar pass" : c.quadPass ? quadPass : scalarPass}
      workgroupBarrier(); // B: P, dS' and slot t + 1 visible
      // ---- accumulate: ${dq ? "dQ += dS'·K" : "dK += dS'·Q, dV += P·dO"}
${accumulate("c1", DS_OFF, K1, 0)}${dq ? "" : `\n${accumulate("c2", P_OFF, K2, B2_OFF)}`}
      sb_cur = sb_nxt;
      sb_nxt = sb_pf;
    }`;

  // a tile's slot offsets, partial flag and key range (both tile bodies open with it)
  const tileHead = (pipeIn: string) => `
      let slot_off = (t & 1u) * ${SLOT}u;
      let ld_off = (t & 1u) * ${c.BB}u;
      let partial = t / tpb < n_partial;
      let tile = ${tileStart("sb_cur", "t")};
      let col_limit = ${limitOf("sb_cur")};${pipeIn}`;
  // one stage (the forward's pipelined order, kernels/flex_forward_tensor_pipe.ts): tile t + 1's loads issued at the
  // top of tile t, into the other slot after the scalar pass (its latency hides behind the products and the pass)
  // roleSplit: role 0 (K rows) makes S = K·Qᵀ and accumulates dK += dS'·Q; role 1 (V rows) makes dP = V·dOᵀ and
  // accumulates dV += P·dO — one product code, the operands' offsets by role (role_b: Q or dO in the slot, role_f: S or
  // dP in fs, role_l: dS' or P in hs)
  const products = RS ? `      // ---- role 0: S = K·Qᵀ, role 1: dP = V·dOᵀ → fs
      ${decl("s", TR, BB16, "CM")}
${scoreProduct("s", "a1", K1, "role_b")}
${storeTile("s", "role_f")}` : `      // ---- S = A1·B1ᵀ, dP = A2·B2ᵀ → fs
      ${decl("s", TR, BB16, "CM")}
${scoreProduct("s", "a1", K1, 0)}
${storeTile("s", 0)}
      ${decl("x", TR, BB16, "CM")}
${scoreProduct("x", "a2", K2, B2_OFF)}
${storeTile("x", FSP)}`;
  const accumulateAll = RS ? `      // ---- accumulate: role 0 dK += dS'·Q, role 1 dV += P·dO
${accumulate("c1", "role_l", K1, "role_b")}` : `      // ---- accumulate: ${dq ? "dQ += dS'·K" : "dK += dS'·Q, dV += P·dO"}
${accumulate("c1", DS_OFF, K1, 0)}${dq ? "" : `\n${accumulate("c2", P_OFF, K2, B2_OFF)}`}`;
  // lateLoads: the loads after barrier A, beside the pass (no barrier between them and their stores)
  const LATE = !!c.lateLoads;
  if (LATE && (!c.oneStage || OWN)) throw new Error("flex backward tensor (pipelined): lateLoads needs one stage, no ownRows");
  const tileBody = (pipeIn: string, pipeOut: string) => `${tileHead(LATE ? "" : pipeIn)}
${products}
      workgroupBarrier(); // A: S, dP visible; every subgroup is past tile t − 1's accumulate${LATE ? pipeIn : ""}
${c.probe === "noScalar" ? "      // DIAGNOSTIC (probe noScalar): no scalar pass" : c.quadPass ? quadPass : scalarPass}${pipeOut}
      workgroupBarrier(); // B: P, dS' and slot t + 1 visible
${accumulateAll}
      sb_cur = sb_nxt;`;
  // ownRows: S, dP, P and dS' rows are the subgroup's own (its matrix stores, its lanes' pass, its matrix loads), so
  // natively only the slots need the workgroup: tile t + 1 goes into slot^1 after tile t's accumulate, then ONE barrier
  // (slot^1 visible; every subgroup is done with slot t, which tile t + 1 overwrites). The emulation keeps a barrier
  // around the pass (lavapipe runs a workgroup's invocations in chunks between barriers: its lanes do not share a step)
  const ownSync = (why: string) => E ? `      workgroupBarrier(); // emulation only: ${why}` : `      // natively subgroup-private: ${why}`;
  const tileBodyOwn = (pipeIn: string, pipeOut: string) => `${tileHead(pipeIn)}
      // ---- S = A1·B1ᵀ, dP = A2·B2ᵀ → the subgroup's rows of fs
      ${decl("s", TR, BB16, "CM")}
${scoreProduct("s", "a1", K1, 0)}
${ONE_FS ? `      ${decl("x", TR, BB16, "CM")}
${scoreProduct("x", "a2", K2, B2_OFF)}
${storeTile("s", 0)}
${ownSync("the subgroup's S rows stored")}
${passP}
${ownSync("the subgroup's lanes have read its S rows")}
${storeTile("x", 0)}
${ownSync("the subgroup's dP rows stored (over S)")}
${passDs}` : `${storeTile("s", 0)}
      ${decl("x", TR, BB16, "CM")}
${scoreProduct("x", "a2", K2, B2_OFF)}
${storeTile("x", FSP)}
${ownSync("the subgroup's S, dP rows stored")}
${quadPass}`}
${ownSync("the subgroup's P, dS' rows written")}
      // ---- accumulate: ${dq ? "dQ += dS'·K" : "dK += dS'·Q, dV += P·dO"}
${accumulate("c1", DS_OFF, K1, 0)}${dq ? "" : `\n${accumulate("c2", P_OFF, K2, B2_OFF)}`}${pipeOut}
      workgroupBarrier(); // slot t + 1 visible; every subgroup is done with slot t
      sb_cur = sb_nxt;`;
  const walkOne = `${walkCounts}    // sb_cur: block of tile t (in slot t & 1)
    var sb_cur = 0u;
${firstTile}
    workgroupBarrier(); // slot 0 visible
    for (var t = 0u; t < n_tiles; t++) {${(OWN ? tileBodyOwn : tileBody)(`
      // ---- the pipeline: tile t + 1's loads issued now, stored into the other slot after the scalar pass
      var sb_nxt = sb_cur;
      if (t + 1u < n_tiles && (t + 1u) % tpb == 0u) {${lookup("(t + 1u) / tpb", W.sb2, "sb_nxt")}
      }
      if (t + 1u < n_tiles) {
${regLoad(tileStart("sb_nxt", "(t + 1u)"), limitOf("sb_nxt"))}
      }`, `
      if (t + 1u < n_tiles) {
${regStore(`${SLOT}u - slot_off`, `${c.BB}u - ld_off`)}
      }`)}
    }`;
  const walk = c.oneStage ? walkOne : walkTwo;

  // ---- epilogue: an accumulator set through fs in chunks of BB columns, guarded, × factor
  const writeAcc = tensorBwdWriteAcc({ mx, each, fr, BA: c.BA, R, TR, BB16, NT, SST });
  // roleSplit: each subgroup's one accumulator set (role 0 dK, role 1 dV) into its role's half of fs, then both written
  const writeAccRoles = () => {
    const out: string[] = [];
    for (let j0 = 0; j0 < K1; j0 += BB16) {
      const j1 = Math.min(K1, j0 + BB16), w = 16 * (j1 - j0);
      out.push(`  workgroupBarrier();
${each([["ti", 0, TR], ["tj", j0, j1]], (i, j) => `  ${mx.store("fs", `role * ${c.BA * SST}u + (rg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j} - ${j0}u)`, fr("c1", K1, i, j), `${SST}u`)}`)}
  workgroupBarrier();
  for (var idx = tid; idx < ${2 * c.BA * w}u; idx += ${NT}u) {
    let ro = idx / ${c.BA * w}u;
    let r = (idx % ${c.BA * w}u) / ${w}u;
    let cc = idx % ${w}u;
    let row = row0 + r;
    if (row < row_limit${16 * j1 <= Math.min(c.D, c.Dv) ? "" : ` && ${16 * j0}u + cc < select(${c.D}u, ${c.Dv}u, ro == 1u)`}) {
      let x = fs[ro * ${c.BA * SST}u + r * ${SST}u + cc];
      if (ro == 0u) { grads[4u * P.off_dk + (a_base + row) * ${c.D}u + ${16 * j0}u + cc] = x * P.scale; }
      else { grads[4u * P.off_dv + (a_base + row) * ${c.Dv}u + ${16 * j0}u + cc] = x; }
    }
  }`);
    }
    return out.join("\n");
  };

  // ownerSmem: both owner operands' BA rows into their regions (zero past row_limit and in the padding); the barrier
  // before the walk makes them visible, nothing overwrites them
  const ownerStage = (name: string, arr: string, width: number, widthP: number) => `
  for (var idx = tid; idx < ${c.BA * (widthP / 4)}u; idx += ${NT}u) {
    let n = idx / ${widthP / 4}u;
    let d4 = idx % ${widthP / 4}u;
    var x = vec4<f16>(0.0h);
    if (row0 + n < row_limit${width === widthP ? "" : ` && d4 < ${width / 4}u`}) { x = ${arr}[(a_base + row0 + n) * ${width / 4}u + d4]; }
    let o = ${ownerAt(name)}u + n * ${ST}u + 4u * d4;
    ${put4("o", "x")}
  }`;
  const ownerSetup = OSM ? `${ownerStage("a1", A1, c.D, Dp)}${ownerStage("a2", A2, c.Dv, Dvp)}
  ${decl("c1", TR, K1, "CM")}
  ${dq ? "" : decl("c2", TR, K2, "CM")}
${regDecl}` : RS ? `
  ${E ? `var a1_f: array<LM, ${TR * K1}>;` : each([["ti", 0, TR], ["tk", 0, K1]], (i, k) => `var ${fr("a1", K1, i, k)} = LM();`)}
${ownerBlock("a1", A1, c.D, Dp, K1, 0)}
${ownerBlock("a1", A2, c.Dv, Dvp, K2, 1)}
  ${decl("c1", TR, K1, "CM")}
${regDecl}` : `
  ${E ? `var a1_f: array<LM, ${TR * K1}>;\n  var a2_f: array<LM, ${TR * K2}>;` : `${each([["ti", 0, TR], ["tk", 0, K1]], (i, k) => `var ${fr("a1", K1, i, k)} = LM();`)}
${each([["ti", 0, TR], ["tk", 0, K2]], (i, k) => `var ${fr("a2", K2, i, k)} = LM();`)}`}
${ownerBlock("a1", A1, c.D, Dp, K1)}
${ownerBlock("a2", A2, c.Dv, Dvp, K2)}
  ${decl("c1", TR, K1, "CM")}
  ${dq ? "" : decl("c2", TR, K2, "CM")}
${regDecl}`;

  const main = dq
    ? `${backwardOwnerCoords(true, c.BA)}
  let ib = i32(b);
  let ih = i32(h);
  for (var n = tid; n < ${c.BA}u; n += ${NT}u) {
    var x = vec2<f32>(POS_INF, 0.0);
    if (row0 + n < row_limit) { x = ldg[a_base + row0 + n]; }
    ld_s[n] = x;
  }${ownerSetup}
  {
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;
    workgroupBarrier(); // the owner matrices are loaded: the staging area is free${walk}
  }
${writeAcc("c1", K1, c.D, "0u", " * P.scale")}`
    : `${backwardOwnerCoords(false, c.BA, SD ? "(P.ds_head0 + wid.y) % P.Hkv" : "wid.y")}${RS ? `
  // roleSplit: role 0 holds K rows and dK, role 1 V rows and dV, of row group rg (the operands' offsets by role)
  let role = sg / ${c.subgroups / 2}u;
  let rg = sg % ${c.subgroups / 2}u;
  let role_b = role * ${B2_OFF}u;
  let role_f = role * ${FSP}u;
  let role_l = select(${DS_OFF}u, ${P_OFF}u, role == 1u);` : ""}${ownerSetup}${SD === "dense" ? `
  let ds_stride = ${dsTStrideWgsl(c.dsPad)};` : ""}
  for (var hg = 0u; hg < group; hg++) {
    let h = hk * group + hg;
    let ib = i32(b);
    let ih = i32(h);
    let b_base = (b * P.Hq + h) * P.Sq;${SD === "dense" ? `
    let ds_head = ((b * P.Hq + h) - P.ds_head0 * group) * P.Skv; // this q head's first kv row in the chunk's scratch` : ""}
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;
    workgroupBarrier(); // the owner matrices (or the previous head's last tile) are done with the staging area${walk}
  }
${RS ? writeAccRoles() : `${writeAcc("c1", K1, c.D, "4u * P.off_dk", " * P.scale")}
${writeAcc("c2", K2, c.Dv, "4u * P.off_dv", "")}`}`;

  return `${mx.directives()}
// FlexAttention backward (${dq ? "dQ" : "dK/dV"}), tensor family, pipelined staging (${E ? "EMULATED subgroup matrices" : "subgroup matrices"},
// f16 operands, f32 accumulate). Generated by kernels/flex_backward_tensor_pipe.ts.
//
//   D = ${c.D} (padded ${Dp}), Dv = ${c.Dv} (padded ${Dvp}); BLOCK_A = ${c.BA} = ${RS ? `${c.subgroups / 2} row groups (two subgroups each)` : `${c.subgroups} subgroups`} × ${R} rows; BLOCK_B = ${c.BB}${RS ? `
//   role split: subgroups 0..${c.subgroups / 2 - 1} hold K rows and dK (S = K·Qᵀ), ${c.subgroups / 2}..${c.subgroups - 1} the same rows' V and dV (dP = V·dOᵀ)` : ""}${OWN ? `
//   own rows: each subgroup's scalar pass covers its own rows (S, dP, P, dS' subgroup-private), one barrier a tile` : ""}
//   hs (f16)   two slots [2][BB][${ST}] (B1 then B2) at 0 (the owner staging at the start); ${dq ? "" : `P [BA][${PST}] at ${P_OFF}; `}dS' [BA][${PST}] at ${DS_OFF}
${OSM ? `//   owner operands in workgroup memory: A1 [BA][${ST}] at ${OWN_OFF}, A2 at ${OWN_OFF + c.BA * ST}
` : ""}//   fs (f32)   S [BA][${SST}] at 0, dP at ${FSP}${ONE_FS ? " (over S: each subgroup reads its S rows first)" : ""}; the accumulators' chunks in the epilogue
//   ld = (lse·log2 e, Δ) per query row; lse = −∞ rows hold +∞ and contribute 0. err[0]: bit 1 NaN derivative.

${tensorBwdBindings({ q: MS && !dq ? "f16" : "vec4<f16>", k: MS && dq ? "f16" : "vec4<f16>", v: MS && dq ? "f16" : "vec4<f16>", dO: MS && !dq ? "f16" : "vec4<f16>" }, SD ? { params: DS_TENSOR_PARAMS, bindings: "@group(0) @binding(9) var<storage, read_write> dsg: array<vec4<f16>>;" } : undefined)}

${mx.prelude()}

var<workgroup> hs: array<f16, ${d.HS}>;
var<workgroup> fs: array<f32, ${d.FS}>;
var<workgroup> ld_s: array<vec2<f32>, ${dq ? c.BA : 2 * c.BB}>;
${c.oneStage ? `var<workgroup> walk_np: u32;
var<workgroup> walk_nf: u32;
var<workgroup> walk_sb0: u32;
var<workgroup> walk_sb1: u32;
var<workgroup> walk_sb2: u32;` : "var<workgroup> walk_w: array<u32, 8>;"}

${tensorBwdEntry(mx, hooks, NT, E, SD ? "(P.ds_head0 + wid.y) / P.Hkv" : undefined, OWN)}
${main}
  ${FLUSH_ERRORS}
}
`;
}
