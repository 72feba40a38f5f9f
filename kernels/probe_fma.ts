/**
 * Peak-throughput probe: every invocation runs ITERS rounds of 8 independent vec4 FMA chains (enough ILP to
 * fill the pipes), so FLOPs = invocations · ITERS · 8 · 4 · 2. Multiplier and addend come from uniforms and the
 * result is stored, so no compiler can fold the loop away. Used by the bench to report % of the device's peak
 * measured through the same provider in the same run.
 */
export function fmaProbeWgsl(): string {
  return /* wgsl */ `
struct U { iters: u32, m: f32, c: f32, _p: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> u: U;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let id = g.x + g.y * n.x * 256u;
  let s = f32(id) * 1e-9;
  var a0 = vec4f(s, s + 1.0, s + 2.0, s + 3.0);
  var a1 = a0 + 0.1; var a2 = a0 + 0.2; var a3 = a0 + 0.3;
  var a4 = a0 + 0.4; var a5 = a0 + 0.5; var a6 = a0 + 0.6; var a7 = a0 + 0.7;
  let m = vec4f(u.m);
  let c = vec4f(u.c);
  for (var i = 0u; i < u.iters; i++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  let r = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
  // the 2-D grid rounds the workgroup count up (x·⌈W/x⌉ > W past 32768): the extra invocations write nothing
  if (id < arrayLength(&out)) { out[id] = r.x + r.y + r.z + r.w; }
}
`;
}
