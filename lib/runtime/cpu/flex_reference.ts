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
import { type CaptureData, type Compiled, compileExpr, type ModEnv } from "../../mods/evaluate.ts";

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

/**
 * What one query row's score pass reads. The row loops live in small functions of their own (not one deep loop
 * nest): V8 optimizes a function called per row reliably, while a long-running nest kept deoptimizing on OSR.
 * q, k, v are float64 copies so every element read is monomorphic.
 */
export interface RowScorer {
  readonly Q: Float64Array;
  readonly K: Float64Array;
  readonly D: number;
  readonly Skv: number;
  readonly bkv: number;
  readonly scale: number;
  readonly scoreFn: Compiled;
  readonly maskFn: Compiled;
  readonly scoreCaptures: readonly CaptureData[];
  readonly maskCaptures: readonly CaptureData[];
  /** Modded scores of the row's attended entries. */
  readonly s: Float64Array;
  /** 1 where the row attends (listed full, or partial with mask_mod true, and a score above −∞). */
  readonly allowed: Uint8Array;
  /** The mods' point; b, h, q set by the caller. */
  readonly env: ModEnv;
}

export function rowScorer(call: FlexCall, x: FlexInputs): RowScorer {
  return {
    Q: Float64Array.from(x.q), K: Float64Array.from(x.k), D: call.dims.D, Skv: call.dims.Skv, bkv: call.blockMask.blockSize[1],
    scale: call.scale, scoreFn: compileExpr(call.scoreMod.expr), maskFn: compileExpr(call.blockMask.tracedMask.expr),
    scoreCaptures: x.scoreCaptures, maskCaptures: x.maskCaptures,
    s: new Float64Array(call.dims.Skv), allowed: new Uint8Array(call.dims.Skv), env: { score: 0, b: 0, h: 0, q: 0, kv: 0 },
  };
}

/**
 * One row's scores, kv ascending (fills `allowed` and `s`; `raw`, when given, gets the scaled q·k before the
 * score mod). Returns the row max, NaN when an attended score is NaN (`s > m` would skip it and could leave the
 * row "fully masked"), −∞ when nothing is attended.
 */
export function rowScores(r: RowScorer, states: Uint8Array, qOff: number, kBase: number, raw?: Float64Array): number {
  const { Q, K, D, Skv, bkv, scale, scoreFn, maskFn, scoreCaptures, maskCaptures, s, allowed, env } = r;
  let m = -Infinity, nan = false;
  for (let j0 = 0, kb = 0; j0 < Skv; j0 += bkv, kb++) {
    const j1 = Math.min(j0 + bkv, Skv);
    const st = states[kb];
    if (st === 0) { allowed.fill(0, j0, j1); continue; }
    for (let j = j0; j < j1; j++) {
      env.kv = j;
      if (st === 1 && !maskFn(env, maskCaptures)) { allowed[j] = 0; continue; }
      allowed[j] = 1;
      const kOff = (kBase + j) * D;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += Q[qOff + d] * K[kOff + d];
      const score = dot * scale;
      if (raw) raw[j] = score;
      env.score = score;
      const sj = Number(scoreFn(env, scoreCaptures));
      s[j] = sj;
      // a score mod may itself mask with −∞
      if (sj === -Infinity) { allowed[j] = 0; continue; }
      if (Number.isNaN(sj)) nan = true;
      if (sj > m) m = sj;
    }
  }
  return nan ? NaN : m;
}

/** out[o·Dv …] += softmax(s)·V over the attended entries (with dropout factors); returns lse. */
function rowOutput(
  r: RowScorer, V: Float64Array, Dv: number, m: number, out: Float64Array, o: number, vBase: number,
  drop: FlexCall["dropout"], rowKey: number,
): number {
  const { s, allowed, Skv } = r;
  let l = 0;
  for (let j = 0; j < Skv; j++) if (allowed[j]) l += Math.exp(s[j] - m);
  for (let j = 0; j < Skv; j++) {
    if (!allowed[j]) continue;
    const p = (Math.exp(s[j] - m) / l) * (drop ? dropFactor(drop, rowKey, j) : 1);
    const vOff = (vBase + j) * Dv;
    for (let d = 0; d < Dv; d++) out[o * Dv + d] += p * V[vOff + d];
  }
  return m + Math.log(l);
}

export function flexReference(call: FlexCall, x: FlexInputs, tables: BlockTables = constTables(call)) {
  const { B, Hq, Hkv, Sq, Skv, D, Dv } = call.dims;
  const group = Hq / Hkv;
  const bq = call.blockMask.blockSize[0];
  const r = rowScorer(call, x);
  const V = Float64Array.from(x.v);
  const out = new Float64Array(B * Hq * Sq * Dv);
  const lse = new Float64Array(B * Hq * Sq);
  const maxScore = new Float64Array(B * Hq * Sq);
  const drop = call.dropout;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      const kvBase = (b * Hkv + hk) * Skv;
      let states: Uint8Array = new Uint8Array(0), statesBlock = -1;
      for (let i = 0; i < Sq; i++) {
        const qb = Math.floor(i / bq);
        if (qb !== statesBlock) { states = blockStates(call, tables, b, h, qb); statesBlock = qb; }
        const o = (b * Hq + h) * Sq + i;
        r.env.b = b; r.env.h = h; r.env.q = i;
        const m = rowScores(r, states, o * D, kvBase);
        maxScore[o] = m;
        if (Number.isNaN(m)) { lse[o] = NaN; out.fill(NaN, o * Dv, (o + 1) * Dv); continue; }
        if (m === -Infinity) { lse[o] = -Infinity; continue; } // fully masked row: out stays 0
        lse[o] = rowOutput(r, V, Dv, m, out, o, kvBase, drop, drop ? dropRowKey(drop.seed, b, h, i) : 0);
      }
    }
  }
  return { out, lse, maxScore };
}
