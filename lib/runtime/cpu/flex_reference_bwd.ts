/**
 * The float64 oracle of the backward pass: the dense gradient of `flexReference` (same BlockMask semantics,
 * same score-mod masking with −∞), for the GPU backward kernels to be checked against.
 *
 * Per query row i (P = softmax of the modified scores s = mod(q·k·scale) over the attended entries):
 *   dV_j += P_ij · dO_i                     dP_ij = dO_i · V_j
 *   Δ_i   = Σ_d dO_id · O_id                 dS_ij = P_ij · (dP_ij − Δ_i + dLse_i)   (∂lse/∂s_ij = P_ij)
 *   through the mod: dRaw_ij = dS_ij · ∂mod/∂score,  dQ_i += dRaw_ij · scale · K_j,  dK_j += dRaw_ij · scale · Q_i
 *   captured f32 tensors of the score mod: cap[idx(b,h,i,j)] += dS_ij · ∂mod/∂cap[idx] for every read.
 * Dropout (z_ij = 0 or 1/(1 − p), the forward's factor): O = (P∘z)·V, so dV_j += P_ij·z_ij·dO_i and
 * dS_ij = P_ij · (z_ij·dP_ij − Δ_i + dLse_i) with Δ_i = Σ_d dO_id · O_id of the dropped O (= Σ_j P_ij z_ij dP_ij).
 * GQA: a kv head's dK/dV sum over the query heads of its group. Masked entries and fully masked rows
 * (out = 0, lse = −∞) contribute nothing. The mask mod has no gradient.
 * A NaN derivative at an attended entry fails with UndefinedDerivative (NaN is never returned silently), except
 * in a row whose forward is already NaN (a NaN score, as flexReference): its gradients are NaN like its out.
 */
import type { FlexCall } from "../../attention/flex_attention.ts";
import { type CaptureData, type Compiled, compileExpr, type ModEnv } from "../../mods/evaluate.ts";
import { scoreModGradients } from "../../mods/derivative.ts";
import type { LoadArg } from "../../ir/expr.ts";
import { UndefinedDerivative } from "../../errors.ts";
import { type BlockTables, blockStates, constTables, type FlexInputs, type RowScorer, rowScorer, rowScores } from "./flex_reference.ts";
import { dropFactor, dropRowKey } from "../../attention/dropout.ts";

export interface FlexBwdInputs extends FlexInputs {
  /** Cotangent of out, [B, Hq, Sq, Dv]. */
  readonly dOut: ArrayLike<number>;
  /** Cotangent of lse, [B, Hq, Sq]; absent = zero. */
  readonly dLse?: ArrayLike<number> | null;
}

export interface FlexBwdResult {
  readonly dq: Float64Array;
  readonly dk: Float64Array;
  readonly dv: Float64Array;
  /** Gradient of each score-mod capture, by slot; null for i32 captures (they get no gradient). */
  readonly dScoreCaptures: readonly (Float64Array | null)[];
}

/** One compiled read of a captured tensor: flat index and derivative at a point. */
interface CompiledRead {
  readonly slot: number;
  readonly index: (env: ModEnv, caps: readonly CaptureData[]) => number;
  readonly d: Compiled;
}

function compileReads(call: FlexCall): CompiledRead[] {
  const grads = scoreModGradients(call.scoreMod.expr);
  const reads: CompiledRead[] = [];
  for (const [slot, list] of grads.captures) {
    for (const r of list) {
      const shape = (r.load.arg as LoadArg).shape;
      const strides = shape.map((_, d) => shape.slice(d + 1).reduce((x, y) => x * y, 1));
      const idx = r.indices.map(compileExpr);
      reads.push({
        slot,
        index: (env, caps) => {
          let flat = 0;
          for (let d = 0; d < idx.length; d++) flat += Number(idx[d](env, caps)) * strides[d];
          return flat;
        },
        d: compileExpr(r.d),
      });
    }
  }
  return reads;
}

function undefinedAt(call: FlexCall, what: string, env: ModEnv): UndefinedDerivative {
  return new UndefinedDerivative({
    message: `the derivative of score mod "${call.scoreMod.name}" ${what} is undefined (NaN) at ` +
      `b=${env.b}, h=${env.h}, q=${env.q}, kv=${env.kv}, score=${env.score}; ` +
      `rewrite the mod so it is differentiable where it is evaluated (e.g. avoid sqrt/log at 0)`,
  });
}

/** What the backward of one row reads and accumulates into (beside the forward's RowScorer). */
interface RowGrad {
  readonly call: FlexCall;
  readonly V: Float64Array;
  readonly dOut: Float64Array;
  readonly dLse: ArrayLike<number> | null | undefined;
  readonly Dv: number;
  readonly dScoreFn: Compiled;
  readonly reads: readonly CompiledRead[];
  readonly dq: Float64Array;
  readonly dk: Float64Array;
  readonly dv: Float64Array;
  readonly dCaps: readonly (Float64Array | null)[];
  readonly raw: Float64Array;
  readonly p: Float64Array;
  /** Dropout factors of the row (1 without dropout). */
  readonly z: Float64Array;
  readonly o: Float64Array;
}

/** Recomputes row `row` (as flexReference) and adds its contributions to every gradient. */
function rowBackward(r: RowScorer, g: RowGrad, states: Uint8Array, row: number, kvBase: number, rowKey: number): void {
  const { Q, K, D, Skv, scale, s, allowed, env, scoreCaptures } = r;
  const { V, dOut, Dv, dScoreFn, reads, dq, dk, dv, dCaps, raw, p, z, o, call } = g;
  const drop = call.dropout;
  const nReads = reads.length; // read once: an empty and a filled array have different maps
  const qOff = row * D;
  const m = rowScores(r, states, qOff, kvBase, raw);
  // NaN flows through p, o, Δ into every gradient this row touches, as in the forward
  const nan = Number.isNaN(m);
  if (m === -Infinity) return; // fully masked row: out = 0, lse = −∞, no gradient
  let l = 0;
  for (let j = 0; j < Skv; j++) if (allowed[j]) l += Math.exp(s[j] - m);
  o.fill(0);
  for (let j = 0; j < Skv; j++) {
    if (!allowed[j]) continue;
    p[j] = Math.exp(s[j] - m) / l;
    if (drop) z[j] = dropFactor(drop, rowKey, j);
    const vOff = (kvBase + j) * Dv;
    for (let d = 0; d < Dv; d++) o[d] += p[j] * z[j] * V[vOff + d];
  }
  const dOff = row * Dv;
  let delta = 0;
  for (let d = 0; d < Dv; d++) delta += dOut[dOff + d] * o[d];
  const dLse = g.dLse ? g.dLse[row] : 0;
  for (let j = 0; j < Skv; j++) {
    if (!allowed[j]) continue;
    const vOff = (kvBase + j) * Dv;
    let dp = 0;
    for (let d = 0; d < Dv; d++) {
      dv[vOff + d] += p[j] * z[j] * dOut[dOff + d];
      dp += dOut[dOff + d] * V[vOff + d];
    }
    const ds = p[j] * (z[j] * dp - delta + dLse);
    env.kv = j; env.score = raw[j];
    const dmod = Number(dScoreFn(env, scoreCaptures));
    if (Number.isNaN(dmod) && !nan) throw undefinedAt(call, "with respect to the score", env);
    const dRaw = ds * dmod * scale;
    const kOff = (kvBase + j) * D;
    for (let d = 0; d < D; d++) {
      dq[qOff + d] += dRaw * K[kOff + d];
      dk[kOff + d] += dRaw * Q[qOff + d];
    }
    for (let k = 0; k < nReads; k++) {
      const rd = reads[k];
      const dc = Number(rd.d(env, scoreCaptures));
      if (Number.isNaN(dc) && !nan) throw undefinedAt(call, `with respect to captured tensor #${rd.slot}`, env);
      dCaps[rd.slot]![rd.index(env, scoreCaptures)] += ds * dc;
    }
  }
}

export function flexReferenceBwd(call: FlexCall, x: FlexBwdInputs, tables: BlockTables = constTables(call)): FlexBwdResult {
  const { B, Hq, Hkv, Sq, Skv, D, Dv } = call.dims;
  const group = Hq / Hkv;
  const bq = call.blockMask.blockSize[0];
  const r = rowScorer(call, x);
  const g: RowGrad = {
    call, V: Float64Array.from(x.v), dOut: Float64Array.from(x.dOut), dLse: x.dLse, Dv,
    dScoreFn: compileExpr(scoreModGradients(call.scoreMod.expr).dScore), reads: compileReads(call),
    dq: new Float64Array(B * Hq * Sq * D), dk: new Float64Array(B * Hkv * Skv * D), dv: new Float64Array(B * Hkv * Skv * Dv),
    dCaps: call.scoreMod.captures.map((c) => c.dtype === "f32" ? new Float64Array(c.shape.reduce((a, b) => a * b, 1)) : null),
    raw: new Float64Array(Skv), p: new Float64Array(Skv), z: new Float64Array(Skv).fill(1), o: new Float64Array(Dv),
  };
  const drop = call.dropout;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      let states: Uint8Array = new Uint8Array(0), statesBlock = -1;
      for (let i = 0; i < Sq; i++) {
        const qb = Math.floor(i / bq);
        if (qb !== statesBlock) { states = blockStates(call, tables, b, h, qb); statesBlock = qb; }
        r.env.b = b; r.env.h = h; r.env.q = i;
        rowBackward(r, g, states, (b * Hq + h) * Sq + i, (b * Hkv + hk) * Skv, drop ? dropRowKey(drop.seed, b, h, i) : 0);
      }
    }
  }
  return { dq: g.dq, dk: g.dk, dv: g.dv, dScoreCaptures: g.dCaps };
}
