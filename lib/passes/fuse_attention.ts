/**
 * Attention-pattern fusion (graph → graph): attention written by hand with tensor ops becomes one flex call.
 *
 * Matched:  out = matmul(softmax(z, -1), v)   with   z = g(S),   S = matmul(q, transpose(k, -2, -1))
 *   - softmax is matched as its composite (ops_reduce.ts): div(e, sum(e, -1, keepdim)), e = exp(z − max(z, -1, keepdim))
 *   - g is any elementwise function of S, of broadcast leaves (tensors that do not depend on S: index tensors,
 *     biases, masks, scalars) — each leaf becomes a captured-tensor read indexed by the (b, h, q, kv) of the
 *     dims it is not broadcast along, a size-1 constant becomes a literal;
 *   - `where(c, x, −∞)`, `where(c, −∞, x)` and additive `where(c, 0, −∞)` terms at the top of g whose condition
 *     does not depend on S become the MASK mod (and-ed), so block sparsity is used: the BlockMask is computed
 *     here from the mask on the CPU when its captures are constants (else every block is partial: correct,
 *     not sparse); the rest of g becomes the SCORE mod; a top-level multiplication of S by a scalar constant
 *     becomes `scale` (the identity-score fast path stays available);
 *   - k, v = repeatInterleave(k0, r, 1), repeatInterleave(v0, r, 1) become `enableGqa` on k0, v0.
 * Not matched (runs unfused, correct): anything else, including shapes flexAttention refuses. A fully masked
 * row gives out 0 fused (flex semantics) where the unfused softmax gives NaN.
 *
 * Fusion is memoized per node, so the realize pipeline and vjp (which fuses before differentiating: the
 * backward of a fused subgraph is the flex backward) produce the same flex call for the same graph.
 */
import { isConst, type Tensor } from "../tensor/tensor.ts";
import { Expr, readsArg, where as exprWhere } from "../ir/expr.ts";
import { cast } from "../tensor/ops.ts";
import { reshape } from "../tensor/ops.ts";
import { flexAttention } from "../attention/flex_attention.ts";
import { BlockMask } from "../blockmask/block_mask.ts";
import { maskBlockStatesCpu } from "../blockmask/mask_blocks.ts";
import { type MaskMod, type ScoreMod, traceMaskMod } from "../mods/trace.ts";
import { rebuild } from "./rebuild.ts";

const ELEMENTWISE = new Set(["add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "where", "mulScalar", "cast"]);
const BLOCK = 128;

type Env = { readonly score: Expr; readonly idx: readonly Expr[] };

const fused = new WeakMap<Tensor, Tensor>();

/** The single value of a size-1 constant, or undefined. */
function scalarValue(t: Tensor): number | undefined {
  if (!isConst(t) || t.size !== 1) return undefined;
  return Number(t.arg[0]);
}

const isNegInf = (t: Tensor) => scalarValue(t) === -Infinity;
const isZero = (t: Tensor) => scalarValue(t) === 0;

/** Whether `t` depends on `s` (memoized per match). */
function dependsOn(t: Tensor, s: Tensor, memo: Map<Tensor, boolean>): boolean {
  if (t === s) return true;
  const hit = memo.get(t);
  if (hit !== undefined) return hit;
  const r = t.inputs.some((i) => dependsOn(i, s, memo));
  memo.set(t, r);
  return r;
}

function softmaxInput(p: Tensor): Tensor | undefined {
  if (p.op !== "div" || p.inputs.length !== 2) return undefined;
  const [e, d] = p.inputs;
  const last = (t: Tensor) => (t.arg as { dims: readonly number[]; keepdim: boolean });
  if (d.op !== "sumDim" || d.inputs[0] !== e || !last(d).keepdim || last(d).dims.length !== 1 || last(d).dims[0] !== e.rank - 1) return undefined;
  if (e.op !== "exp" || e.inputs[0].op !== "sub") return undefined;
  const [z, m] = e.inputs[0].inputs;
  if (m.op !== "maxDim" || m.inputs[0] !== z || !last(m).keepdim || last(m).dims[0] !== z.rank - 1 || last(m).dims.length !== 1) return undefined;
  return z;
}

/** q and k of S = matmul(q, transpose(k, -2, -1)); k unwrapped of a head repeat (GQA). */
function scoresOf(s: Tensor): { q: Tensor; k: Tensor; gqa: number } | undefined {
  if (s.op !== "matmul" || s.rank !== 4) return undefined;
  const [q, kt] = s.inputs;
  if (q.rank !== 4 || kt.op !== "transpose" || kt.rank !== 4) return undefined;
  const [a, b] = kt.arg as readonly [number, number];
  if (!((a === 2 && b === 3) || (a === 3 && b === 2))) return undefined;
  return { q, ...unrepeat(kt.inputs[0]) };
}

function unrepeat(t: Tensor): { k: Tensor; gqa: number } {
  if (t.op === "repeatInterleave") {
    const arg = t.arg as { repeats: number; dim: number };
    if (arg.dim === 1 && t.inputs[0].rank === 4) return { k: t.inputs[0], gqa: arg.repeats };
  }
  return { k: t, gqa: 1 };
}

/** A leaf broadcast over [B, H, Sq, Skv]: a literal, or a captured read at the indices of its non-1 dims. */
function leafExpr(t: Tensor, env: Env): Expr {
  const v = scalarValue(t);
  if (v !== undefined) return t.dtype === "bool" ? Expr.const(v !== 0) : Expr.const(v, t.dtype === "i32" ? "i32" : "f32");
  if (t.rank > 4) throw new Error("no match: a leaf of rank > 4");
  const dims = [...Array(4 - t.rank).fill(1), ...t.shape];
  const kept = dims.map((d, i) => (d === 1 ? -1 : i)).filter((i) => i >= 0);
  // an index tensor (0, 1, …, n−1 along one dim: arange, reshaped) is that position itself: no capture
  if (kept.length === 1 && t.dtype === "i32" && isIota(hostData(t))) return env.idx[kept[0]];
  const shape = kept.map((i) => dims[i]);
  const stored = t.dtype === "bool" ? cast(t, "i32") : t.dtype === "f16" ? cast(t, "f32") : t;
  const captured = shape.length > 0 && shape.length === stored.rank && shape.every((d, i) => d === stored.shape[i]) ? stored
    : reshape(stored, shape.length ? shape : [1]);
  const read = captured.at(...(shape.length ? kept.map((i) => env.idx[i]) : [0]));
  return t.dtype === "bool" ? read.ne(0) : read;
}

/** The Expr of an elementwise subgraph over `s` (mapped to `score`) and leaves. */
function toExpr(t: Tensor, s: Tensor | undefined, env: Env, deps: Map<Tensor, boolean>, memo: Map<Tensor, Expr>): Expr {
  const hit = memo.get(t);
  if (hit) return hit;
  let e: Expr;
  if (t === s) e = env.score;
  else if (s === undefined || !dependsOn(t, s, deps)) e = ELEMENTWISE.has(t.op) && t.inputs.some((i) => !isConst(i)) ? op(t) : leafExpr(t, env);
  else if (ELEMENTWISE.has(t.op)) e = op(t);
  else throw new Error(`no match: ${t.op} between the scores and the softmax`);
  memo.set(t, e);
  return e;

  function op(n: Tensor): Expr {
    const x = n.inputs.map((i) => toExpr(i, s, env, deps, memo));
    switch (n.op) {
      case "add": return x[0].add(x[1]);
      case "sub": return x[0].sub(x[1]);
      case "mul": return x[0].mul(x[1]);
      case "div": return x[0].div(x[1]);
      case "mulScalar": return x[0].mul(n.arg as number);
      case "neg": return x[0].neg();
      case "exp": return x[0].exp();
      case "log": return x[0].log();
      case "tanh": return x[0].tanh();
      case "eq": return x[0].eq(x[1]);
      case "ne": return x[0].ne(x[1]);
      case "lt": return x[0].lt(x[1]);
      case "le": return x[0].le(x[1]);
      case "gt": return x[0].gt(x[1]);
      case "ge": return x[0].ge(x[1]);
      case "and": return x[0].and(x[1]);
      case "or": return x[0].or(x[1]);
      case "not": return x[0].not();
      case "where": return exprWhere(x[0], x[1], x[2]);
      case "cast": return n.dtype === "i32" ? x[0] : x[0].toFloat();
      default: throw new Error(`no match: ${n.op}`);
    }
  }
}

/** Splits the top of g into mask conditions (independent of S) and the score part. */
function splitMask(z: Tensor, s: Tensor, deps: Map<Tensor, boolean>): { score: Tensor; masks: { cond: Tensor; negate: boolean }[] } {
  const masks: { cond: Tensor; negate: boolean }[] = [];
  let cur = z;
  for (;;) {
    if (cur.op === "where") {
      const [c, a, b] = cur.inputs;
      if (!dependsOn(c, s, deps) && isNegInf(b) && dependsOn(a, s, deps)) { masks.push({ cond: c, negate: false }); cur = a; continue; }
      if (!dependsOn(c, s, deps) && isNegInf(a) && dependsOn(b, s, deps)) { masks.push({ cond: c, negate: true }); cur = b; continue; }
    }
    if (cur.op === "add") {
      const [a, b] = cur.inputs;
      const additive = (t: Tensor) => t.op === "where" && !dependsOn(t, s, deps) && ((isZero(t.inputs[1]) && isNegInf(t.inputs[2])) || (isNegInf(t.inputs[1]) && isZero(t.inputs[2])));
      for (const [x, m] of [[a, b], [b, a]] as const) {
        if (additive(m) && dependsOn(x, s, deps)) {
          masks.push({ cond: m.inputs[0], negate: isNegInf(m.inputs[1]) });
          cur = x;
          break;
        }
      }
      if (cur !== a && cur !== b) return { score: cur, masks };
      continue;
    }
    return { score: cur, masks };
  }
}

/** A top-level scalar scale of S: z-side node that is S·c (or S/c), and c. */
function scaleOf(t: Tensor, s: Tensor): number | undefined {
  if (t.op === "mul") {
    const [a, b] = t.inputs;
    if (a === s && scalarValue(b) !== undefined) return scalarValue(b);
    if (b === s && scalarValue(a) !== undefined) return scalarValue(a);
  }
  if (t.op === "div" && t.inputs[0] === s && scalarValue(t.inputs[1])) return 1 / scalarValue(t.inputs[1])!;
  if (t.op === "mulScalar" && t.inputs[0] === s) return t.arg as number;
  return undefined;
}

/** The flex `out` node for a matched attention `node`, or undefined. */
function match(node: Tensor): Tensor | undefined {
  if (node.op !== "matmul" || node.rank !== 4) return undefined;
  const [p, vRep] = node.inputs;
  const z = softmaxInput(p);
  if (!z || z.rank !== 4) return undefined;
  const deps = new Map<Tensor, boolean>();
  // S: the matmul(q, kᵀ) that z depends on
  let s: Tensor | undefined;
  const find = (t: Tensor, seen = new Set<Tensor>()): void => {
    if (s || seen.has(t)) return;
    seen.add(t);
    if (scoresOf(t)) { s = t; return; }
    if (ELEMENTWISE.has(t.op)) t.inputs.forEach((i) => find(i, seen));
  };
  find(z);
  if (!s) return undefined;
  const { q, k, gqa } = scoresOf(s)!;
  const { k: v, gqa: gqaV } = unrepeat(vRep);
  if (gqaV !== gqa || q.dtype !== k.dtype || k.dtype !== v.dtype) return undefined;
  const [B, H, Sq] = q.shape, Skv = k.shape[2];
  if (z.shape.join() !== [B, H, Sq, Skv].join() || v.shape[0] !== B || k.shape[0] !== B) return undefined;
  try {
    const { score: scorePart, masks } = splitMask(z, s, deps);
    // the score part: a leading scalar scale becomes flex's scale
    let scoreNode: Tensor = s;
    let scale = 1;
    const found = findScaled(scorePart, s);
    if (found) { scoreNode = found.node; scale = found.scale; }
    const identity = scorePart === scoreNode;
    const scoreMod: ScoreMod | undefined = identity ? undefined : function fusedScore(score, b, h, qi, kvi) {
      const env = { score, idx: [b, h, qi, kvi] };
      // S itself (unscaled) where g reads it besides through the scaled node
      const memo = new Map<Tensor, Expr>([[scoreNode, score]]);
      if (scoreNode !== s) memo.set(s!, score.div(scale));
      return toExpr(scorePart, scoreNode, env, deps, memo);
    };
    const maskMod: MaskMod | undefined = masks.length === 0 ? undefined : function fusedMask(b, h, qi, kvi) {
      const env = { score: Expr.const(0), idx: [b, h, qi, kvi] };
      const memo = new Map<Tensor, Expr>();
      return masks.map((m) => {
        const c = toExpr(m.cond, undefined, env, deps, memo);
        return m.negate ? c.not() : c;
      }).reduce((a, c) => a.and(c));
    };
    const blockMask = maskMod ? blockMaskFor(maskMod, Sq, Skv) : undefined;
    // nested attention (a layer's q, k or v computed by an earlier hand-written attention) fuses too
    const [q2, k2, v2] = fuseAttention([q, k, v]);
    return flexAttention(q2, k2, v2, { scoreMod, blockMask, scale, enableGqa: gqa > 1 });
  } catch (e) {
    if ((globalThis as { FLEX_DEBUG_FUSE?: boolean }).FLEX_DEBUG_FUSE) console.error("fuse: no match:", e);
    return undefined; // no match, or a shape / dtype flexAttention refuses: stays unfused
  }
}

function findScaled(scorePart: Tensor, s: Tensor): { node: Tensor; scale: number } | undefined {
  // the node S·c directly used by the score part (its only scaled form)
  const seen = new Set<Tensor>();
  let found: { node: Tensor; scale: number } | undefined;
  const walk = (t: Tensor) => {
    if (found || seen.has(t)) return;
    seen.add(t);
    const c = scaleOf(t, s);
    if (c !== undefined && Number.isFinite(c) && c !== 0) { found = { node: t, scale: c }; return; }
    if (t !== s) t.inputs.forEach(walk);
  };
  walk(scorePart);
  return found;
}

/** The BlockMask of an extracted mask: sparse from CPU block states when its captures are constants. */
function blockMaskFor(maskMod: MaskMod, Sq: number, Skv: number): BlockMask {
  const traced = traceMaskMod(maskMod);
  const blockSize: [number, number] = [Math.min(BLOCK, Sq), Math.min(BLOCK, Skv)];
  const data = (traced.captures as Tensor[]).map(hostData);
  const o = { B: 1, H: 1, qLen: Sq, kvLen: Skv, blockSize, maskMod, tracedMask: traced };
  const nQ = Math.ceil(Sq / blockSize[0]), nKV = Math.ceil(Skv / blockSize[1]);
  if (data.every((d) => d !== undefined) && captureIndependentOfBatch(traced)) {
    return BlockMask.fromStates(maskBlockStatesCpu({ mask: traced, B: 1, H: 1, qLen: Sq, kvLen: Skv, blockSize }, data as ArrayLike<number>[]), o);
  }
  return BlockMask.fromStates(new Int32Array(nQ * nKV).fill(1), o); // every block partial: exact, not sparse
}

/** A mask that reads b or h cannot be evaluated for B = H = 1 states only: treat it as dense partial. */
function captureIndependentOfBatch(traced: ReturnType<typeof traceMaskMod>): boolean {
  return !readsArg(traced.expr, "b", "h");
}

/** The host data of a constant, or of a reshape / cast of a constant (the same values in the same order). */
function hostData(t: Tensor): ArrayLike<number> | undefined {
  if (isConst(t)) return t.arg;
  if ((t.op === "reshape" || t.op === "cast") && t.inputs.length === 1) {
    const d = hostData(t.inputs[0]);
    if (!d) return undefined;
    return t.op === "cast" && t.dtype === "i32" ? Int32Array.from(d as ArrayLike<number>) : d;
  }
  return undefined;
}

function isIota(d: ArrayLike<number> | undefined): boolean {
  if (!d) return false;
  for (let i = 0; i < d.length; i++) if (d[i] !== i) return false;
  return true;
}

/** The pass: every matched attention subgraph replaced by its flex call; other nodes rebuilt only when an input changed. */
export function fuseAttention(roots: readonly Tensor[]): Tensor[] {
  return rebuild(roots, (node) => {
    if (fused.has(node)) return fused.get(node);
    const f = match(node);
    if (f) fused.set(node, f);
    return f;
  });
}

