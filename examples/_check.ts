/**
 * What every seed example shares: random inputs, a dense float64 reference attention written in plain JS (the
 * example restates its mod as an ordinary function, so the check does not reuse the library's own evaluation of
 * the mod), and the comparison that prints the max error and fails past a tolerance.
 * Not an example itself (the leading underscore); examples/README.md lists the examples.
 */
import { type BlockMask, providerReport, randn, setPoison, type Tensor } from "../mod.ts";

/** Plain-JS restatement of a mask mod. */
export type RefMask = (b: number, h: number, q: number, kv: number) => boolean;
/** Plain-JS restatement of a score mod (score in the scaled units flexAttention's mods see). */
export type RefScore = (score: number, b: number, h: number, q: number, kv: number) => number;

// unwritten output elements come back as NaN, which fails the check below
setPoison(true);

/** Random q [B, H, Sq, D] and k, v [B, H, Skv, D] (f32). */
export function inputs(B: number, H: number, Sq: number, Skv: number, D: number): { q: Tensor; k: Tensor; v: Tensor } {
  return { q: randn([B, H, Sq, D]), k: randn([B, H, Skv, D]), v: randn([B, H, Skv, D]) };
}

/**
 * Dense attention in float64: softmax over kv of score(q·k · scale) where mask keeps (q, kv), times v.
 * A row that keeps no key is 0 (flexAttention's convention for fully masked rows).
 */
export async function reference(
  q: Tensor, k: Tensor, v: Tensor, mods: { mask?: RefMask; score?: RefScore; scale?: number } = {},
): Promise<Float64Array> {
  const [B, H, Sq, D] = q.shape, Skv = k.shape[2], Dv = v.shape[3];
  const [qd, kd, vd] = [await q.toArray(), await k.toArray(), await v.toArray()];
  const scale = mods.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * H * Sq * Dv);
  const s = new Float64Array(Skv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      for (let i = 0; i < Sq; i++) {
        let max = -Infinity;
        for (let j = 0; j < Skv; j++) {
          if (mods.mask && !mods.mask(b, h, i, j)) { s[j] = -Infinity; continue; }
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qd[(bh * Sq + i) * D + d] * kd[(bh * Skv + j) * D + d];
          s[j] = mods.score ? mods.score(dot * scale, b, h, i, j) : dot * scale;
          max = Math.max(max, s[j]);
        }
        if (max === -Infinity) continue; // fully masked row: 0
        let sum = 0;
        for (let j = 0; j < Skv; j++) sum += (s[j] = Math.exp(s[j] - max));
        for (let j = 0; j < Skv; j++) {
          const p = s[j] / sum;
          if (p === 0) continue;
          for (let d = 0; d < Dv; d++) out[(bh * Sq + i) * Dv + d] += p * vd[(bh * Skv + j) * Dv + d];
        }
      }
    }
  }
  return out;
}

/**
 * Prints the provider, the mask's picture (if any) and max |got − ref|; throws (exit code 1) past `tol` or on a
 * NaN (an element the kernel never wrote).
 */
export async function report(name: string, out: Tensor, ref: Float64Array, mask?: BlockMask, tol = 1e-4): Promise<void> {
  const got = await out.toArray();
  const { provider, adapter } = await providerReport();
  if (mask) console.log(mask.toString());
  let err = got.length === ref.length ? 0 : Infinity;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    err = Number.isNaN(e) ? Infinity : Math.max(err, e);
  }
  console.log(`${name}: ${got.length} outputs on ${provider} (${adapter}), max |flex − float64 reference| = ${err.toExponential(2)} (tolerance ${tol})`);
  if (!(err <= tol)) throw new Error(`${name}: flexAttention differs from the dense float64 reference by ${err} > ${tol}`);
}
