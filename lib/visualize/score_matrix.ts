/**
 * The attention score matrix of one (b, h) after the mods, as the float64 oracle computes it: scale·q·k, then
 * scoreMod, with maskMod false (or a score of −∞) marking an entry masked. The same row scorer as the
 * reference executor (lib/runtime/cpu/flex_reference.ts), so a picture shows exactly the oracle's scores.
 */
import { makeFlexCall } from "../attention/flex_attention.ts";
import { InvalidArgument } from "../errors.ts";
import { pictureSlot } from "./slot.ts";
import { compileExpr } from "../mods/evaluate.ts";
import { type MaskMod, type ScoreMod, traceMaskMod } from "../mods/trace.ts";
import { type RowScorer, rowScores } from "../runtime/cpu/flex_reference.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Options of {@link scoreMatrix} (and of `visualizeScores`).
 *
 * @example
 * ```ts
 * import { causalMask, randn, scoreMatrix } from "@flex/attention";
 * const q = randn([1, 2, 64, 16]), k = randn([1, 2, 64, 16]);
 * const m = await scoreMatrix(q, k, { maskMod: causalMask, h: 1 });
 * ```
 */
export interface ScoreMatrixOptions {
  /** Applied to each scaled score (as in flexAttention). */
  readonly scoreMod?: ScoreMod;
  /** Entries where it is false are masked. */
  readonly maskMod?: MaskMod;
  /** The batch index (default 0). */
  readonly b?: number;
  /** The (query) head index (default 0); with fewer k heads, head h reads k head ⌊h / (Hq / Hkv)⌋. */
  readonly h?: number;
  /** The score scale (default 1/√D). */
  readonly scale?: number;
}

/**
 * One (b, h)'s scores: `values[i·Skv + j]` (NaN where masked), `masked[i·Skv + j]` 1 where masked, and the min and
 * max over the unmasked finite entries (both NaN when every entry is masked).
 *
 * @example
 * ```ts
 * import { randn, scoreMatrix } from "@flex/attention";
 * const m = await scoreMatrix(randn([1, 1, 8, 16]), randn([1, 1, 8, 16]));
 * console.log(m.values[1 * m.Skv + 2]); // the score of query 1 at key 2
 * ```
 */
export interface ScoreMatrix {
  /** Query rows. */
  readonly Sq: number;
  /** Key columns. */
  readonly Skv: number;
  /** Row-major [Sq, Skv] scores after the mods; NaN where masked. */
  readonly values: Float64Array;
  /** Row-major [Sq, Skv]: 1 where masked (mask mod false or a score of −∞). */
  readonly masked: Uint8Array;
  /** Smallest unmasked finite score. */
  readonly min: number;
  /** Largest unmasked finite score. */
  readonly max: number;
}

const MAX_ENTRIES = 1 << 22;

/**
 * The scores of one (b, h) after `scoreMod` and `maskMod`, in float64 (q and k are realized first).
 *
 * @example Causal scores of head 0
 * ```ts
 * import { causalMask, randn, scoreMatrix } from "@flex/attention";
 * const q = randn([1, 1, 32, 16]), k = randn([1, 1, 32, 16]);
 * const { values, masked, min, max } = await scoreMatrix(q, k, { maskMod: causalMask });
 * console.log(masked[1], Number.isNaN(values[1])); // 1 true: query 0 cannot see key 1
 * ```
 */
export async function scoreMatrix(q: Tensor, k: Tensor, options: ScoreMatrixOptions = {}): Promise<ScoreMatrix> {
  // flexAttention's own validation of shapes, the scale and the score mod (v = k: only q·k is needed)
  const call = makeFlexCall(q, k, k, { scoreMod: options.scoreMod, scale: options.scale, enableGqa: q.shape[1] !== k.shape[1] });
  const { B, Hq, Hkv, Sq, Skv, D } = call.dims;
  const b = pictureSlot("scoreMatrix", "b", options.b, B), h = pictureSlot("scoreMatrix", "h", options.h, Hq);
  if (Sq * Skv > MAX_ENTRIES) {
    throw new InvalidArgument({ message: `scoreMatrix: ${Sq}×${Skv} scores is too many to draw; slice q and k to at most ${MAX_ENTRIES} entries` });
  }
  const mask = options.maskMod ? traceMaskMod(options.maskMod) : null;
  const data = async (c: unknown) => Float64Array.from(await (c as Tensor).toArray());
  const r: RowScorer = {
    Q: await data(q), K: await data(k), D, Skv, bkv: Skv, scale: call.scale,
    scoreFn: compileExpr(call.scoreMod.expr), maskFn: mask ? compileExpr(mask.expr) : () => true,
    scoreCaptures: await Promise.all(call.scoreMod.captures.map(data)),
    maskCaptures: mask ? await Promise.all(mask.captures.map(data)) : [],
    s: new Float64Array(Skv), allowed: new Uint8Array(Skv), env: { score: 0, b, h, q: 0, kv: 0 },
  };
  const hk = Math.floor(h / (Hq / Hkv));
  const states = Uint8Array.of(1); // one "partial" block over all keys: the mask mod decides every entry
  const values = new Float64Array(Sq * Skv).fill(NaN), masked = new Uint8Array(Sq * Skv);
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < Sq; i++) {
    r.env.q = i;
    rowScores(r, states, ((b * Hq + h) * Sq + i) * D, (b * Hkv + hk) * Skv);
    for (let j = 0; j < Skv; j++) {
      if (!r.allowed[j]) { masked[i * Skv + j] = 1; continue; }
      const s = r.s[j];
      values[i * Skv + j] = s;
      if (Number.isFinite(s)) { if (s < min) min = s; if (s > max) max = s; }
    }
  }
  return { Sq, Skv, values, masked, min: min === Infinity ? NaN : min, max: max === -Infinity ? NaN : max };
}
