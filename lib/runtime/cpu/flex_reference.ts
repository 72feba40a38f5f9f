/**
 * The float64 oracle of the forward pass: dense scores, the mods interpreted from their IR, the BlockMask's
 * semantics applied exactly as the kernels do (a kv block listed as full → every entry attends; listed as
 * partial → mask_mod decides; not listed → skipped), a plain (not online) softmax.
 * Fully masked rows give out = 0 and lse = −∞ (PyTorch's convention). A NaN score at an attended entry makes
 * its row's out and lse NaN, as the GPU kernels and any float64 softmax give (NaN never reads as "masked").
 * Dropout (call.dropout) multiplies each probability by its factor (0 or 1/(1 − p)) from the same hash the
 * kernels use (lib/attention/dropout.ts) before ·V; lse is the undropped softmax's. maxScore is each row's max
 * of the modded scores over the attended entries (−∞ fully masked, NaN with the row).
 */
import type { FlexCall } from "../../attention/flex_attention.ts";
import { dropFactor, dropRowKey } from "../../attention/dropout.ts";
import { type CaptureData, compileExpr, type ModEnv } from "../../mods/evaluate.ts";

export interface FlexInputs {
  readonly q: ArrayLike<number>;
  readonly k: ArrayLike<number>;
  readonly v: ArrayLike<number>;
  /** Data of call.scoreMod.captures, by slot. */
  readonly scoreCaptures: readonly CaptureData[];
  /** Data of call.blockMask.tracedMask.captures, by slot. */
  readonly maskCaptures: readonly CaptureData[];
}

export interface BlockTables {
  readonly kvNum: ArrayLike<number>;
  readonly kvIdx: ArrayLike<number>;
  readonly fullNum: ArrayLike<number> | null;
  readonly fullIdx: ArrayLike<number> | null;
}

/** The tables of a BlockMask whose tables are constants (as createBlockMask / fromKvBlocks produce). */
export function constTables(call: FlexCall): BlockTables {
  const m = call.blockMask;
  const need = (t: { data?: ArrayLike<number> } | null, name: string) => {
    if (t === null) return null;
    if (!t.data) throw new Error(`BlockMask.${name} is not a constant tensor`);
    return t.data;
  };
  return {
    kvNum: need(m.kvNumBlocks, "kvNumBlocks")!,
    kvIdx: need(m.kvIndices, "kvIndices")!,
    fullNum: need(m.fullKvNumBlocks, "fullKvNumBlocks"),
    fullIdx: need(m.fullKvIndices, "fullKvIndices"),
  };
}

/** Per-(b, h, q-block): 0 skipped, 1 partial (mask_mod decides), 2 full, for each kv block. */
export function blockStates(call: FlexCall, t: BlockTables, b: number, h: number, qb: number): Uint8Array {
  const [mB, mH, nQ, nKV] = call.blockMask.kvIndices.shape;
  const row = ((mB === 1 ? 0 : b) * mH + (mH === 1 ? 0 : h)) * nQ + qb;
  const states = new Uint8Array(nKV);
  for (let i = 0; i < t.kvNum[row]; i++) states[t.kvIdx[row * nKV + i]] = 1;
  if (t.fullNum && t.fullIdx) for (let i = 0; i < t.fullNum[row]; i++) states[t.fullIdx[row * nKV + i]] = 2;
  return states;
}

export function flexReference(call: FlexCall, x: FlexInputs, tables: BlockTables = constTables(call)) {
  const { B, Hq, Hkv, Sq, Skv, D, Dv } = call.dims;
  const group = Hq / Hkv;
  const [bq, bkv] = call.blockMask.blockSize;
  const scoreFn = compileExpr(call.scoreMod.expr);
  const maskFn = compileExpr(call.blockMask.tracedMask.expr);
  const out = new Float64Array(B * Hq * Sq * Dv);
  const lse = new Float64Array(B * Hq * Sq);
  const maxScore = new Float64Array(B * Hq * Sq);
  const drop = call.dropout;
  const s = new Float64Array(Skv);
  const allowed = new Uint8Array(Skv);
  const env: ModEnv = { score: 0, b: 0, h: 0, q: 0, kv: 0 };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      let states: Uint8Array = new Uint8Array(0), statesBlock = -1;
      for (let i = 0; i < Sq; i++) {
        const qb = Math.floor(i / bq);
        if (qb !== statesBlock) { states = blockStates(call, tables, b, h, qb); statesBlock = qb; }
        const qOff = ((b * Hq + h) * Sq + i) * D;
        let m = -Infinity, nan = false;
        env.b = b; env.h = h; env.q = i;
        for (let j = 0; j < Skv; j++) {
          const st = states[Math.floor(j / bkv)];
          env.kv = j;
          allowed[j] = st === 2 ? 1 : st === 1 ? (maskFn(env, x.maskCaptures) ? 1 : 0) : 0;
          if (!allowed[j]) continue;
          const kOff = ((b * Hkv + hk) * Skv + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += x.q[qOff + d] * x.k[kOff + d];
          env.score = dot * call.scale;
          s[j] = Number(scoreFn(env, x.scoreCaptures));
          // a score mod may itself mask with −∞
          if (s[j] === -Infinity) { allowed[j] = 0; continue; }
          if (Number.isNaN(s[j])) nan = true; // `s[j] > m` would skip it and could leave the row "fully masked"
          if (s[j] > m) m = s[j];
        }
        const o = ((b * Hq + h) * Sq + i);
        maxScore[o] = nan ? NaN : m;
        if (nan) { lse[o] = NaN; out.fill(NaN, o * Dv, (o + 1) * Dv); continue; }
        if (m === -Infinity) { lse[o] = -Infinity; continue; } // fully masked row: out stays 0
        const rowKey = drop ? dropRowKey(drop.seed, b, h, i) : 0;
        let l = 0;
        for (let j = 0; j < Skv; j++) if (allowed[j]) l += Math.exp(s[j] - m);
        lse[o] = m + Math.log(l);
        for (let j = 0; j < Skv; j++) {
          if (!allowed[j]) continue;
          const p = (Math.exp(s[j] - m) / l) * (drop ? dropFactor(drop, rowKey, j) : 1);
          const vOff = ((b * Hkv + hk) * Skv + j) * Dv;
          for (let d = 0; d < Dv; d++) out[o * Dv + d] += p * x.v[vOff + d];
        }
      }
    }
  }
  return { out, lse, maxScore };
}
