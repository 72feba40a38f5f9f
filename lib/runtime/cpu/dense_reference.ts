/** CPU (float64) evaluation of the materialized-mask baseline, for the CPU executor. */
import type { DenseAttentionArg } from "../../attention/baselines.ts";

export function denseReference(
  a: DenseAttentionArg,
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, mask?: ArrayLike<number>,
): Float32Array {
  const { B, Hq, Hkv, Sq, Skv, D, Dv } = a.dims;
  const out = new Float32Array(B * Hq * Sq * Dv);
  const s = new Float64Array(Skv);
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) {
    const hk = Math.floor(h / (Hq / Hkv));
    const mb = a.maskB > 1 ? b : 0, mh = a.maskH > 1 ? h : 0;
    for (let i = 0; i < Sq; i++) {
      let m = -Infinity;
      for (let j = 0; j < Skv; j++) {
        const keep = !mask || mask[((mb * Math.max(a.maskH, 1) + mh) * Sq + i) * Skv + j] !== 0;
        if (!keep) { s[j] = -Infinity; continue; }
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[((b * Hq + h) * Sq + i) * D + d] * k[((b * Hkv + hk) * Skv + j) * D + d];
        s[j] = dot * a.scale;
        m = Math.max(m, s[j]);
      }
      if (m === -Infinity) continue;
      let l = 0;
      for (let j = 0; j < Skv; j++) l += s[j] === -Infinity ? 0 : Math.exp(s[j] - m);
      for (let j = 0; j < Skv; j++) {
        if (s[j] === -Infinity) continue;
        const p = Math.exp(s[j] - m) / l;
        for (let d = 0; d < Dv; d++) out[((b * Hq + h) * Sq + i) * Dv + d] += p * v[((b * Hkv + hk) * Skv + j) * Dv + d];
      }
    }
  }
  return out;
}
