/** The portable forward's uniform struct and bindings, shared by its narrow (kernels/flex_forward.ts) and wide
 * (kernels/flex_forward_wide.ts) templates. Keep the struct in sync with FLEX_FORWARD_UNIFORMS. */
import { DROPOUT_PARAMS } from "./dropout_hash.ts";

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
