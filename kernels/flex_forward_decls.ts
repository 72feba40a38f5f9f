/** What the portable forward's narrow (kernels/flex_forward.ts) and wide (kernels/flex_forward_wide.ts) templates
 * emit alike: the uniform struct and bindings (keep the struct in sync with FLEX_FORWARD_UNIFORMS), the module's
 * helper functions and mods, and the workgroup's coordinates at the top of main. */
import { DROPOUT_PARAMS, DROPOUT_WGSL } from "./dropout_hash.ts";
import { ERROR_BITS_DECL } from "./error_bits.ts";
import { workgroupCoords } from "./block_walk.ts";
import { unroll } from "./unroll.ts";
import type { FlexForwardConfig, FlexForwardHooks } from "./flex_forward.ts";

export const PORTABLE_FORWARD_DECLS = `struct Params {
  Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, m_tiles: u32, n_kv_blocks: u32,
  nq_blocks: u32, tb_stride_b: u32, tb_stride_h: u32, off_kv_num: u32, off_kv_idx: u32,
  off_full_num: u32, off_full_idx: u32, has_full: u32, q_scale: f32, B: u32, n_splits: u32, pad1: u32,
  ${DROPOUT_PARAMS}
}

@group(0) @binding(0) var<storage, read> qg: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kg: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vg: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
@group(0) @binding(4) var<storage, read> caps: array<u32>;
@group(0) @binding(5) var<storage, read_write> err: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<uniform> P: Params;`;


/** Module scope after the workgroup variables: −∞, the error bits, the dropout hash (if any) and the mods. */
export const portableForwardFns = (c: Pick<FlexForwardConfig, "dropout">, hooks: FlexForwardHooks) => `fn neg_inf() -> f32 { var bits = 0xff800000u; return bitcast<f32>(bits); }
${ERROR_BITS_DECL}
${c.dropout ? DROPOUT_WGSL : ""}
${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}`;

/** The top of main: the workgroup's coordinates, its row group rg and lane c, the q / kv / table bases, and with
 * dropout the per-row keys of the thread's TM rows. */
export const portableForwardCoords = (c: Pick<FlexForwardConfig, "BM" | "G" | "TM" | "dropout">) => `${workgroupCoords(c.BM)}  let rg = tid / ${c.G}u;
  let c = tid % ${c.G}u;
  let q_base = (b * P.Hq + h) * P.Sq;
  let kv_base = (b * P.Hkv + hk) * P.Skv;
  let trow = b * P.tb_stride_b + h * P.tb_stride_h + qblk;
${c.dropout ? unroll(c.TM, (i) => `  let rk${i} = drop_row_key(b, h, row0 + rg * ${c.TM}u + ${i}u);`) : ""}`;
