/**
 * The fused FlexAttention backward kernels, tensor family: every product is a 16×16×16 subgroup-matrix product
 * (f16 operands, f32 accumulate) through kernels/subgroup_matrix.ts, or, with `emulate`, the same template with
 * plain-WGSL matrix operations (runs on any adapter with shader-f16: CI's lavapipe).
 *
 * Same two modes, bindings (q, k, v, dO, ld, caps, err, grads, uniform), uniforms (FLEX_BWD_UNIFORMS), grid and
 * block-table walk as the portable kernels (kernels/flex_backward.ts); q, k, v, dO are f16, the packed
 * gradients f32 (the graph casts them to f16). One workgroup owns BLOCK_A rows, split among its subgroups
 * (R = 16·TR rows each); it streams BLOCK_B columns per tile:
 *
 *   owner A1, A2   dq: Q, dO      dkdv: K, V        left matrices, loaded once, kept in registers
 *   streamed B1, B2 dq: K, V      dkdv: Q, dO       right matrices, per tile
 *   S  = A1·B1ᵀ   (result, to `fs`) → mods, P = exp2(s'·log2 e − lse·log2 e)           pass 1
 *   dP = A2·B2ᵀ   (result, to `fs`) → dS' = P∘(dP − Δ)·∂mod/∂score, f16 in `ds16`      pass 2
 *   acc1 += dS'·B1   (dq: dQ, dkdv: dK)        acc2 += P·B2   (dkdv only: dV; P f16 in `p16`)
 *   dQ, dK ×scale, written once through `fs` with row / column guards.
 *
 * Where each operand's matrices load from is a config choice (the H200 gave wrong results for the forward's
 * right matrices loaded from workgroup memory, while left matrices from workgroup memory and any matrix from
 * global memory were right):
 *   ownerDirect    A1 / A2 straight from global memory when the workgroup's BLOCK_A rows are all in range
 *                  (else staged in workgroup memory, zero past the rows and in the head-dim padding)
 *   streamDirect   B1 / B2 straight from global memory for whole tiles (edge tiles are always staged)
 * Both need D and Dv multiples of 16. P and dS' are always left matrices from workgroup memory. On the H200 all
 * three combinations matched float64 (bench/tensor_bwd_probe.ts, bench/RESULTS.md).
 * `pipeline` configs use the other template, kernels/flex_backward_tensor_pipe.ts (every operand staged in padded
 * workgroup memory, the streamed tile shared by the subgroups in two slots, 2 barriers a tile): the native default
 * since session 6 for D % 16 = 0 and whole tiles (H200 B4 H16 S4096 D64: noop 47.6 → 25.6 ms, causal 25.6 → 9.2;
 * this template's kernels are the fallback elsewhere).
 * Captured-tensor gradients are not summed here: the lowering runs the portable backward for such mods.
 */
import { backwardBlockWalk, backwardOwnerCoords } from "./block_walk.ts";
import { FLUSH_ERRORS } from "./error_bits.ts";
import type { FlexBwdHooks, FlexBwdMode } from "./flex_backward.ts";
import { matrixNaming, SubgroupMatrixOps } from "./subgroup_matrix.ts";
import { tensorBwdBindings, tensorBwdEntry, tensorBwdWriteAcc } from "./flex_backward_tensor_parts.ts";
import { flexBackwardTensorPipeWgsl, pipeSmemBytes } from "./flex_backward_tensor_pipe.ts";

/** Uniform layout, u32 words (scale: f32 bits; off_dk / off_dv in vec4 units, as the portable kernels'). Keep in
 * sync with `struct Params` below. */
export const FLEX_BWD_TENSOR_UNIFORMS = [
  "B", "Hq", "Hkv", "Sq", "Skv", "QB", "KB", "a_tiles",
  "row_width", "tb_stride_b", "tb_stride_h", "off_num", "off_idx", "off_full_num", "off_full_idx", "has_full",
  "scale", "off_dk", "off_dv", "pad0",
] as const;

export interface FlexBwdTensorConfig {
  readonly family: "tensor";
  readonly D: number;
  readonly Dv: number;
  /** Owner rows per workgroup = subgroups · 16·TR. */
  readonly BA: number;
  readonly subgroups: number;
  /** Streamed columns per tile (multiple of 16, divides the streamed block). */
  readonly BB: number;
  /** Plain-WGSL matrix operations on 32-lane virtual subgroups. */
  readonly emulate: boolean;
  /** 32: the lane layout of the emulation and of NVIDIA's subgroups. */
  readonly subgroupSize: number;
  readonly ownerDirect: boolean;
  readonly streamDirect: boolean;
  /** Every operand staged in padded workgroup memory, the streamed tile shared by the subgroups, two slots with the
   * next tiles' global loads in registers, two barriers per tile (kernels/flex_backward_tensor_pipe.ts). Needs both
   * direct flags off; any D and ragged lengths natively. */
  readonly pipeline?: boolean;
  /** Timing only, pipelined template (wrong gradients): "noScalar" leaves out the scalar pass (P / dS' keep whatever
   * they hold), "noStage" the streamed tiles' loads after the first two (the slots keep them): what bounds the tile. */
  readonly probe?: "noScalar" | "noStage";
  /** Pipelined template: the scalar pass walks quads (4 consecutive columns per step, vec4 reads of S / dP). */
  readonly quadPass?: boolean;
  /** Pipelined template, native: whole streamed tiles travel storage → registers → workgroup memory as 16×16
   * matrices (subgroupMatrixLoad / Store, shared out among the subgroups) instead of vec4s per thread. */
  readonly matrixStage?: boolean;
  /** Pipelined template: one register stage (tile t + 1's loads at the top of tile t, stored after its scalar pass),
   * else two (tile t + 2's loads in flight while tile t + 1 waits in its slot). */
  readonly oneStage?: boolean;
  /** Pipelined template: owner rows staged at a time (tests; default: what the two slots hold). */
  readonly ownerChunk?: number;
  /** Pipelined template, dkdv, quad pass, one stage: also store dS' (f16, transposed, "dense" or "compact" scratch)
   * for the dQ GEMM of kernels/flex_bwd_dq_from_ds_tensor.ts (lib/lower/plan_flex_grad_tensor.ts plans both). */
  readonly storeDs?: "dense" | "compact";
  /** storeDs "dense": f16 elements added to the scratch's row stride (device probes; the dQ GEMM's config carries the same). */
  readonly dsPad?: number;
  /** Pipelined template, quad pass, one stage: each subgroup's scalar pass covers its own rows, so S, dP, P and dS'
   * stay within the subgroup and natively one workgroup barrier a tile remains (kernels/flex_backward_tensor_pipe.ts). */
  readonly ownRows?: boolean;
  /** With ownRows: S and dP through one f32 region (10 KiB less at BA 128, BB 16): the pass reads S, the dP store
   * overwrites it, then dS' forms. */
  readonly oneFs?: boolean;
  /** With ownRows: the owner operands stay in workgroup memory (left matrices loaded per product, fewer registers). */
  readonly ownerSmem?: boolean;
  /** Pipelined template, dkdv, quad pass, one stage (session 12): the subgroups in two roles over the same owner rows
   * (R = BA / (subgroups / 2)): role 0 holds K and dK (S = K·Qᵀ, dK += dS'·Q), role 1 V and dV (dP = V·dOᵀ, dV += P·dO),
   * so a lane holds one owner set and one accumulator set (half the registers of the plain form's two). */
  readonly roleSplit?: boolean;
  /** Pipelined template, one stage, no ownRows (session 15): the next tile's global loads issued after barrier A (beside
   * the scalar pass) instead of at the tile's top, so no barrier lies between them and their stores into the other slot
   * (on the H200 a barrier waits for the warp's loads in flight: bench/RESULTS.md, session 15). Built without a device
   * run left: exact emulated, not yet timed. */
  readonly lateLoads?: boolean;
}

interface Derived { R: number; TR: number; NT: number; Dp: number; Dvp: number; ST: number; SST: number; PST: number; EPT: number; STG: number; PS: number }

const up16 = (x: number) => Math.ceil(x / 16) * 16;

function derive(c: FlexBwdTensorConfig, mode: FlexBwdMode): Derived {
  const R = c.BA / c.subgroups;
  const NT = c.subgroups * c.subgroupSize;
  const Dp = up16(c.D), Dvp = up16(c.Dv);
  const ST = Math.max(Dp, Dvp) + 8; // row stride of a staged operand (f16)
  const SST = c.BB + 4, PST = c.BB + 8;
  // staging: the owner operands one at a time at the start (BA rows), the two streamed operands of an edge tile
  const STG = Math.max(c.BA, 2 * c.BB) * ST;
  const PS = c.BA * PST;
  return { R, TR: R / 16, NT, Dp, Dvp, ST, SST, PST, EPT: (c.BA * c.BB) / NT, STG, PS: mode === "dkdv" ? 2 * PS : PS };
}

/** Throws when a config cannot be generated (the config search filters with it). */
export function checkFlexBwdTensorConfig(c: FlexBwdTensorConfig): void {
  const bad = (why: string) => { throw new Error(`flex backward tensor config ${JSON.stringify(c)}: ${why}`); };
  for (const [k, v] of [["D", c.D], ["Dv", c.Dv]] as const) {
    if (!Number.isInteger(v) || v % 4 !== 0 || v < 4 || v > 256) bad(`${k} must be a multiple of 4 in 4..256`);
  }
  if (c.subgroupSize !== 32) bad("the lane layout needs 32-lane subgroups");
  const R = c.BA / (c.roleSplit ? c.subgroups / 2 : c.subgroups);
  if (!Number.isInteger(R) || R % 16 !== 0 || R > 32) bad(c.roleSplit ? "BA / (subgroups / 2) must be 16 or 32" : "BA / subgroups must be 16 or 32");
  if (c.roleSplit && (!c.pipeline || !c.quadPass || !c.oneStage || c.probe || c.ownRows || c.matrixStage || c.subgroups % 2 !== 0 || up16(c.D) !== up16(c.Dv))) {
    bad("roleSplit needs the pipelined template's quad pass and one stage, no ownRows / matrixStage, an even subgroup count, D and Dv of one padded width");
  }
  if (c.BB % 16 !== 0 || c.BB < 16) bad("BB must be a positive multiple of 16");
  if ((c.ownerDirect || c.streamDirect) && (c.D % 16 !== 0 || c.Dv % 16 !== 0)) bad("direct loads need D and Dv multiples of 16");
  if (c.pipeline && (c.ownerDirect || c.streamDirect)) bad("the pipelined template stages every operand (no direct loads)");
  if (c.oneStage && !c.pipeline) bad("oneStage is a knob of the pipelined template");
  if (c.probe && (!c.pipeline || c.oneStage)) bad("probe knobs are the two-stage pipelined template's");
  if (c.storeDs && (!c.pipeline || !c.quadPass || c.probe)) bad("storeDs needs the pipelined template's quad pass");
  if (c.ownRows && (!c.pipeline || !c.quadPass || !c.oneStage || c.probe)) bad("ownRows needs the pipelined template's quad pass and one stage");
  if (c.oneFs && !c.ownRows) bad("oneFs needs ownRows");
  if (c.lateLoads && (!c.pipeline || !c.oneStage || c.ownRows)) bad("lateLoads needs the pipelined template's one stage, no ownRows");
  if (c.ownerSmem && !c.ownRows) bad("ownerSmem needs ownRows");
  if (c.matrixStage && (!c.pipeline || c.emulate || c.D % 16 !== 0 || c.Dv % 16 !== 0)) bad("matrixStage needs the pipelined template, the intrinsics and D, Dv multiples of 16");
}

/** Workgroup memory in bytes. */
export function flexBwdTensorSmemBytes(c: FlexBwdTensorConfig, mode: FlexBwdMode): number {
  if (c.pipeline) return pipeSmemBytes(c, mode);
  const d = derive(c, mode);
  return 2 * (d.STG + d.PS) + 4 * c.BA * d.SST + 8 * Math.max(c.BA, c.BB) + 4;
}

export function flexBwdTensorThreads(c: Pick<FlexBwdTensorConfig, "subgroups" | "subgroupSize">): number {
  return c.subgroups * c.subgroupSize;
}


export function flexBackwardTensorWgsl(mode: FlexBwdMode, c: FlexBwdTensorConfig, hooks: FlexBwdHooks): string {
  checkFlexBwdTensorConfig(c);
  if (c.pipeline) return flexBackwardTensorPipeWgsl(mode, c, hooks);
  const dq = mode === "dq";
  const d = derive(c, mode);
  const { R, TR, NT, Dp, Dvp, ST, SST, PST, EPT } = d;
  const K1 = Dp / 16, K2 = Dvp / 16, BB16 = c.BB / 16;
  const mx = new SubgroupMatrixOps(c.emulate);
  const E = c.emulate;
  const P_OFF = d.STG, DS_OFF = d.STG + (dq ? 0 : c.BA * PST);
  // owner and streamed operands: (array, width)
  const A1 = dq ? "qg" : "kg", A2 = dq ? "dog" : "vg", B1 = dq ? "kg" : "qg", B2 = dq ? "vg" : "dog";

  // ---- unrolled named matrices (intrinsics) or loops over fragment arrays (emulation: keeps Mesa's compile small)
  // `zero` (a uniform that is 0) hides the emulated loops' trip counts: Mesa's LLVM would otherwise unroll every
  // nest around the inlined fragment products and compile for minutes
  const { lit, each, fr, decl } = matrixNaming(E, " + zero");

  // ---- staging an operand's rows [row0_, row0_ + rows) (< limit) into hs at `base` (zero elsewhere)
  const stage = (arr: string, width: number, widthP: number, rows: number, first: string, limit: string, gbase: string, base: number) => `
    for (var idx = tid; idx < ${rows * (widthP / 4)}u; idx += ${NT}u) {
      let n = idx / ${widthP / 4}u;
      let d4 = idx % ${widthP / 4}u;
      var x = vec4<f16>(0.0h);
      if (${first} + n < ${limit}${width === widthP ? "" : ` && d4 < ${width / 4}u`}) {
        let g = (${gbase} + ${first} + n) * ${width}u + 4u * d4;
        x = vec4<f16>(${arr}[g], ${arr}[g + 1u], ${arr}[g + 2u], ${arr}[g + 3u]);
      }
      let o = ${base}u + n * ${ST}u + 4u * d4;
      hs[o] = x.x; hs[o + 1u] = x.y; hs[o + 2u] = x.z; hs[o + 3u] = x.w;
    }`;

  // ---- owner matrices: A (TR × KW) left matrices of the subgroup's rows
  const ownerLoad = (name: string, arr: string, width: number, KW: number, fromHs: boolean) =>
    each([["ti", 0, TR], ["tk", 0, KW]], (i, k) => {
      const off = fromHs ? `(sg * ${R}u + 16u * (${i})) * ${ST}u + 16u * (${k})` : `(a_base + row0 + sg * ${R}u + 16u * (${i})) * ${width}u + 16u * (${k})`;
      return `  ${fr(name, KW, i, k)} = ${mx.load("left", fromHs ? "hs" : arr, "row_major", off, fromHs ? `${ST}u` : `${width}u`)};`;
    });
  const ownerBlock = (name: string, arr: string, width: number, widthP: number, KW: number) => `
  workgroupBarrier();
  ${c.ownerDirect ? "if (!owner_whole) " : ""}{${stage(arr, width, widthP, c.BA, "row0", "row_limit", "a_base", 0)}
  }
  workgroupBarrier();
  ${c.ownerDirect ? `if (owner_whole) {\n${ownerLoad(name, arr, width, KW, false)}\n  } else ` : ""}{
${ownerLoad(name, arr, width, KW, true)}
  }`;

  // ---- X = A·Bᵀ over the tile: B's rows are the tile's columns (Bᵀ read col-major)
  const scoreProduct = (res: string, own: string, arr: string, width: number, KW: number, hsBase: number, fromHs: boolean) =>
    each([["tk", 0, KW], ["tj", 0, BB16]], (k, j) => {
      const off = fromHs ? `${hsBase}u + 16u * (${j}) * ${ST}u + 16u * (${k})` : `(b_base + tile + 16u * (${j})) * ${width}u + 16u * (${k})`;
      return `        {
          let br = ${mx.load("right", fromHs ? "hs" : arr, "col_major", off, fromHs ? `${ST}u` : `${width}u`)};
${each([["ti", 0, TR]], (i) => `          ${fr(res, BB16, i, j)} = ${mx.mma(fr(own, KW, i, k), "br", fr(res, BB16, i, j))};`)}
        }`;
    });
  const storeTile = (res: string) =>
    each([["ti", 0, TR], ["tj", 0, BB16]], (i, j) => `      ${mx.store("fs", `(sg * ${R}u + 16u * (${i})) * ${SST}u + 16u * (${j})`, fr(res, BB16, i, j), `${SST}u`)}`);
  // ---- acc += L·B: L (f16 tile in hs at lOff, [BA][PST]) as left matrices, B (the tile's rows) as right
  const accumulate = (acc: string, lOff: number, arr: string, width: number, KW: number, hsBase: number, fromHs: boolean) =>
    each([["tk", 0, BB16]], (k) => `        {
${E ? `          var lf: array<LM, ${TR}>;` : ""}
${each([["ti", 0, TR]], (i) => `          ${E ? `lf[${i}]` : `let l${lit(i)}`} = ${mx.load("left", "hs", "row_major", `${lOff}u + (sg * ${R}u + 16u * (${i})) * ${PST}u + 16u * (${k})`, `${PST}u`)};`)}
${each([["tj", 0, KW]], (j) => {
      const off = fromHs ? `${hsBase}u + 16u * (${k}) * ${ST}u + 16u * (${j})` : `(b_base + tile + 16u * (${k})) * ${width}u + 16u * (${j})`;
      return `          {
            let br = ${mx.load("right", fromHs ? "hs" : arr, "row_major", off, fromHs ? `${ST}u` : `${width}u`)};
${each([["ti", 0, TR]], (i) => `            ${fr(acc, KW, i, j)} = ${mx.mma(E ? `lf[${i}]` : `l${lit(i)}`, "br", fr(acc, KW, i, j))};`)}
          }`;
    })}
        }`);

  // the streamed tile's products, from global memory (whole tiles, streamDirect) or from the staged copies
  const B2_OFF = c.BB * ST;
  const tileProducts = (fromHs: boolean) => ({
    s: scoreProduct("s", "a1", B1, c.D, K1, 0, fromHs),
    dp: scoreProduct("x", "a2", B2, c.Dv, K2, B2_OFF, fromHs),
    acc: `${accumulate("c1", DS_OFF, B1, c.D, K1, 0, fromHs)}${dq ? "" : `\n${accumulate("c2", P_OFF, B2, c.Dv, K2, B2_OFF, fromHs)}`}`,
  });
  const direct = tileProducts(false), staged = tileProducts(true);
  const split = (what: "s" | "dp" | "acc") => c.streamDirect
    ? `      if (full_tile) {\n${direct[what]}\n      } else {\n${staged[what]}\n      }`
    : `      {\n${staged[what]}\n      }`;

  // q and kv of an element (owner row, streamed column)
  const qi = dq ? "i32(row)" : "i32(col)", ki = dq ? "i32(col)" : "i32(row)";
  const ldOf = dq ? "ld_s[r]" : "ld_s[cl]";
  const elemIndex = `
        let idx = tid + e * ${NT}u;
        let r = idx / ${c.BB}u;
        let cl = idx % ${c.BB}u;
        let row = row0 + r;
        let col = tile + cl;`;
  const pass1 = `
      for (var e = 0u; e < ${EPT}u${E ? " + zero" : ""}; e++) {${elemIndex}
        var p = 0.0;
        var g = 0.0;
        let ld = ${ldOf};
        if (row < row_limit && col < col_limit && ld.x != POS_INF && (!partial || mask_mod(ib, ih, ${qi}, ${ki}))) {
          let raw = fs[r * ${SST}u + cl] * P.scale;
          let sm = ${hooks.identityScore ? "raw" : `score_mod(raw, ib, ih, ${qi}, ${ki})`};
          if (bitcast<u32>(sm) != NEG_INF_BITS) {
            p = exp2(sm * LOG2E - ld.x);
            ${hooks.identityScore ? "g = 1.0;" : `g = score_mod_grad(raw, ib, ih, ${qi}, ${ki});
            flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(g));`}
          }
        }
        pe[e] = p;
        ge[e] = g;${dq ? "" : `
        hs[${P_OFF}u + r * ${PST}u + cl] = f16(p);`}
      }`;
  const pass2 = `
      for (var e = 0u; e < ${EPT}u${E ? " + zero" : ""}; e++) {${elemIndex}
        let ld = ${ldOf};
        let ds = select(0.0, pe[e] * (fs[r * ${SST}u + cl] - ld.y) * ge[e], pe[e] != 0.0);
        hs[${DS_OFF}u + r * ${PST}u + cl] = f16(ds);
      }`;

  const walk = (body: string) => backwardBlockWalk(dq, c.BB, body);

  const tileBody = `
        workgroupBarrier(); // the previous tile is done with hs / fs
        let full_tile = tile + ${c.BB}u <= col_limit;${dq ? "" : `
        for (var n = tid; n < ${c.BB}u; n += ${NT}u) {
          var x = vec2<f32>(POS_INF, 0.0);
          if (tile + n < col_limit) { x = ldg[b_base + tile + n]; }
          ld_s[n] = x;
        }`}
        ${c.streamDirect ? "if (!full_tile) " : ""}{${stage(B1, c.D, Dp, c.BB, "tile", "col_limit", "b_base", 0)}${stage(B2, c.Dv, Dvp, c.BB, "tile", "col_limit", "b_base", B2_OFF)}
        }
        workgroupBarrier();
        // ---- S = A1·B1ᵀ → fs; pass 1: mods and P
        ${decl("s", TR, BB16, "CM")}
${split("s")}
${storeTile("s")}
        workgroupBarrier();
${pass1}
        workgroupBarrier();
        // ---- dP = A2·B2ᵀ → fs; pass 2: dS' (f16)
        ${decl("x", TR, BB16, "CM")}
${split("dp")}
${storeTile("x")}
        workgroupBarrier();
${pass2}
        workgroupBarrier();
        // ---- accumulate: ${dq ? "dQ += dS'·K" : "dK += dS'·Q, dV += P·dO"}
${split("acc")}`;

  // ---- epilogue: an accumulator set through fs in chunks of BB columns, guarded, × factor
  const writeAcc = tensorBwdWriteAcc({ mx, each, fr, BA: c.BA, R, TR, BB16, NT, SST });

  const ownerSetup = `
  let owner_whole = row0 + ${c.BA}u <= row_limit;
  ${E ? `var a1_f: array<LM, ${TR * K1}>;\n  var a2_f: array<LM, ${TR * K2}>;` : `${each([["ti", 0, TR], ["tk", 0, K1]], (i, k) => `var ${fr("a1", K1, i, k)} = LM();`)}
${each([["ti", 0, TR], ["tk", 0, K2]], (i, k) => `var ${fr("a2", K2, i, k)} = LM();`)}`}
${ownerBlock("a1", A1, c.D, Dp, K1)}
${ownerBlock("a2", A2, c.Dv, Dvp, K2)}
  ${decl("c1", TR, K1, "CM")}
  ${dq ? "" : decl("c2", TR, K2, "CM")}`;

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
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;${walk(tileBody)}
  }
${writeAcc("c1", K1, c.D, "0u", " * P.scale")}`
    : `${backwardOwnerCoords(false, c.BA)}${ownerSetup}
  for (var hg = 0u; hg < group; hg++) {
    let h = hk * group + hg;
    let ib = i32(b);
    let ih = i32(h);
    let b_base = (b * P.Hq + h) * P.Sq;
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;${walk(tileBody)}
  }
${writeAcc("c1", K1, c.D, "4u * P.off_dk", " * P.scale")}
${writeAcc("c2", K2, c.Dv, "4u * P.off_dv", "")}`;

  return `${mx.directives()}
// FlexAttention backward (${dq ? "dQ" : "dK/dV"}), tensor family (${E ? "EMULATED subgroup matrices" : "subgroup matrices"}, f16 operands,
// f32 accumulate). Generated by kernels/flex_backward_tensor.ts.
//
//   D = ${c.D} (padded ${Dp}), Dv = ${c.Dv} (padded ${Dvp}); BLOCK_A = ${c.BA} = ${c.subgroups} subgroups × ${R} rows; BLOCK_B = ${c.BB}
//   owner matrices ${c.ownerDirect ? "from global memory (whole owner tiles), else staged" : "staged in workgroup memory"};
//   streamed matrices ${c.streamDirect ? "from global memory (whole tiles), else staged" : "staged in workgroup memory"}
//   hs (f16)   staging [rows][${ST}] at 0; ${dq ? "" : `P [BA][${PST}] at ${P_OFF}; `}dS' [BA][${PST}] at ${DS_OFF}
//   fs (f32)   S, then dP [BA][${SST}]; the accumulators' chunks in the epilogue
//   ld = (lse·log2 e, Δ) per query row; lse = −∞ rows hold +∞ and contribute 0. err[0]: bit 0 capture range, bit 1 NaN derivative.

${tensorBwdBindings({ q: "f16", k: "f16", v: "f16", dO: "f16" })}

${mx.prelude()}

var<workgroup> hs: array<f16, ${d.STG + d.PS}>;
var<workgroup> fs: array<f32, ${c.BA * SST}>;
var<workgroup> ld_s: array<vec2<f32>, ${Math.max(c.BA, c.BB)}>;

${tensorBwdEntry(mx, hooks, NT, E)}
  var pe: array<f32, ${EPT}>;
  var ge: array<f32, ${EPT}>;
${main}
  ${FLUSH_ERRORS}
}
`;
}
