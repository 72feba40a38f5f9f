/**
 * The WGSL twin of lib/attention/dropout.ts's counter-based hash (same constants, same order; u32 arithmetic
 * wraps in WGSL as Math.imul / >>> 0 do in JS), so kernels and the float64 oracle drop the same entries.
 * Needs `P.drop_seed`, `P.drop_threshold` (u32) and `P.drop_scale` (f32) in the kernel's uniforms: the
 * portable forward and backward append DROPOUT_UNIFORMS to their own words (DROPOUT_PARAMS in `struct Params`).
 */

/** Uniform words appended after a kernel's own (drop_scale is f32 bits). Keep in sync with DROPOUT_PARAMS. */
export const DROPOUT_UNIFORMS = ["drop_seed", "drop_threshold", "drop_scale", "drop_pad"] as const;
export const DROPOUT_PARAMS = "drop_seed: u32, drop_threshold: u32, drop_scale: f32, drop_pad: u32,";
export const DROPOUT_WGSL = /* wgsl */ `
fn drop_mix(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  return x ^ (x >> 16u);
}
fn drop_step(key: u32, x: u32) -> u32 { return drop_mix((key ^ x) + 0x9e3779b9u); }
// the key of query row (b, h, q): once per row
fn drop_row_key(b: u32, h: u32, q: u32) -> u32 {
  return drop_step(drop_step(drop_step(drop_mix(P.drop_seed + 0x632be5abu), b), h), q);
}
// the factor of entry (row, kv): 0 (dropped) or 1/(1 − p)
fn drop_factor(row_key: u32, kv: u32) -> f32 {
  return select(0.0, P.drop_scale, drop_step(row_key, kv) >= P.drop_threshold);
}
`;
