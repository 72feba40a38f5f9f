/**
 * Independent references for the blockmask tests: random mask specs with a plain-JS twin (so the dense
 * truth never goes through the IR), block states from a dense mask, and tables by a stable sort.
 */
import fc from "fast-check";
import type { Expr } from "../../lib/ir/expr.ts";
import { Tensor } from "../../lib/tensor/tensor.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import type { BlockMask } from "../../lib/blockmask/block_mask.ts";

export type Spec =
  | { kind: "causal" }
  | { kind: "window"; w: number }
  | { kind: "prefix"; p: number }
  | { kind: "headWindow"; w: number } // depends on b and h
  | { kind: "table"; seed: number; cell: number; noise: boolean } // a captured 0/1 table [qLen, kvLen]
  | { kind: "docs"; seed: number } // captured document ids for q and kv
  | { kind: "and" | "or"; a: Spec; b: Spec }
  | { kind: "not"; a: Spec };

/** Length-independent leaves only (no captured tensors sized to the lengths): safe to `adjust`. */
export const lengthFreeSpec: fc.Arbitrary<Spec> = fc.letrec<{ spec: Spec }>((tie) => ({
  spec: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant<Spec>({ kind: "causal" }),
    fc.integer({ min: -40, max: 200 }).map((w): Spec => ({ kind: "window", w })),
    fc.integer({ min: 0, max: 300 }).map((p): Spec => ({ kind: "prefix", p })),
    fc.integer({ min: 0, max: 100 }).map((w): Spec => ({ kind: "headWindow", w })),
    fc.record({ kind: fc.constantFrom("and" as const, "or" as const), a: tie("spec"), b: tie("spec") }),
    fc.record({ kind: fc.constant("not" as const), a: tie("spec") }),
  ),
})).spec;

export const anySpec: fc.Arbitrary<Spec> = fc.letrec<{ spec: Spec }>((tie) => ({
  spec: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    lengthFreeSpec,
    fc.record({ kind: fc.constant("table" as const), seed: fc.nat(), cell: fc.constantFrom(4, 16, 48), noise: fc.boolean() }),
    fc.record({ kind: fc.constant("docs" as const), seed: fc.nat() }),
    fc.record({ kind: fc.constantFrom("and" as const, "or" as const), a: tie("spec"), b: tie("spec") }),
  ),
})).spec;

function lcg(seed: number): () => number {
  let s = (seed >>> 0) || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomDocs(r: () => number, len: number): Int32Array {
  const ids = new Int32Array(len);
  let doc = 0;
  for (let i = 0; i < len; i++) {
    if (r() < 0.02) doc++;
    ids[i] = doc;
  }
  return ids;
}

/** A mask mod and its plain-JS twin for `spec` at the given lengths. */
export interface Built {
  readonly mod: MaskMod;
  readonly js: (b: number, h: number, q: number, kv: number) => boolean;
}

export function build(spec: Spec, qLen: number, kvLen: number): Built {
  switch (spec.kind) {
    case "causal":
      return { mod: (_b, _h, q, kv) => q.ge(kv), js: (_b, _h, q, kv) => q >= kv };
    case "window":
      return { mod: (_b, _h, q, kv) => q.sub(kv).abs().le(spec.w), js: (_b, _h, q, kv) => Math.abs(q - kv) <= spec.w };
    case "prefix":
      return { mod: (_b, _h, _q, kv) => kv.lt(spec.p), js: (_b, _h, _q, kv) => kv < spec.p };
    case "headWindow":
      return {
        mod: (b, h, q, kv) => q.sub(kv).le(b.mul(17).add(h.mul(29)).add(spec.w)).and(kv.le(q.add(h.mul(7)))),
        js: (b, h, q, kv) => q - kv <= b * 17 + h * 29 + spec.w && kv <= q + h * 7,
      };
    case "table": {
      const r = lcg(spec.seed);
      const cq = Math.ceil(qLen / spec.cell), ckv = Math.ceil(kvLen / spec.cell);
      const coarse = Array.from({ length: cq * ckv }, () => r() < 0.5);
      const data = new Int32Array(qLen * kvLen);
      for (let i = 0; i < qLen; i++) {
        for (let j = 0; j < kvLen; j++) {
          const c = coarse[Math.floor(i / spec.cell) * ckv + Math.floor(j / spec.cell)];
          data[i * kvLen + j] = (spec.noise && r() < 0.002) !== c ? 1 : 0;
        }
      }
      const t = new Tensor("const", [], [qLen, kvLen], "i32", data);
      return { mod: (_b, _h, q, kv) => t.at(q, kv).eq(1), js: (_b, _h, q, kv) => data[q * kvLen + kv] === 1 };
    }
    case "docs": {
      const r = lcg(spec.seed);
      const dq = randomDocs(r, qLen), dkv = randomDocs(r, kvLen);
      const tq = new Tensor("const", [], [qLen], "i32", dq), tkv = new Tensor("const", [], [kvLen], "i32", dkv);
      return { mod: (_b, _h, q, kv) => tq.at(q).eq(tkv.at(kv)), js: (_b, _h, q, kv) => dq[q] === dkv[kv] };
    }
    case "and":
    case "or": {
      const a = build(spec.a, qLen, kvLen), c = build(spec.b, qLen, kvLen);
      const and = spec.kind === "and";
      return {
        mod: (b, h, q, kv) => {
          const x = a.mod(b, h, q, kv) as Expr, y = c.mod(b, h, q, kv) as Expr;
          return and ? x.and(y) : x.or(y);
        },
        js: (b, h, q, kv) => (and ? a.js(b, h, q, kv) && c.js(b, h, q, kv) : a.js(b, h, q, kv) || c.js(b, h, q, kv)),
      };
    }
    case "not": {
      const a = build(spec.a, qLen, kvLen);
      return { mod: (b, h, q, kv) => (a.mod(b, h, q, kv) as Expr).not(), js: (b, h, q, kv) => !a.js(b, h, q, kv) };
    }
  }
}

/** Dense 0/1 [B, H, qLen, kvLen] from the JS twin. */
export function denseOf(js: Built["js"], B: number, H: number, qLen: number, kvLen: number): Uint8Array {
  const out = new Uint8Array(B * H * qLen * kvLen);
  let o = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    for (let q = 0; q < qLen; q++) for (let kv = 0; kv < kvLen; kv++) out[o++] = js(b, h, q, kv) ? 1 : 0;
  }
  return out;
}

/** Block states by the definition: full iff every valid entry is true and the block lies inside both lengths. */
export function statesOfDense(
  dense: ArrayLike<number>, B: number, H: number, qLen: number, kvLen: number, [bq, bkv]: readonly [number, number],
): Int32Array {
  const nQ = Math.ceil(qLen / bq), nKV = Math.ceil(kvLen / bkv);
  const out = new Int32Array(B * H * nQ * nKV);
  for (let g = 0; g < B * H; g++) {
    for (let i = 0; i < nQ; i++) for (let j = 0; j < nKV; j++) {
      let trues = 0, valid = 0;
      for (let q = i * bq; q < Math.min((i + 1) * bq, qLen); q++) {
        for (let kv = j * bkv; kv < Math.min((j + 1) * bkv, kvLen); kv++) {
          valid++;
          trues += dense[(g * qLen + q) * kvLen + kv];
        }
      }
      const inside = (i + 1) * bq <= qLen && (j + 1) * bkv <= kvLen;
      out[(g * nQ + i) * nKV + j] = trues === 0 ? 0 : trues === valid && inside ? 2 : 1;
    }
  }
  return out;
}

/** One ordered table pair by a stable sort: rows of `cols` entries, valid ones first. */
function sortedTables(rows: number, cols: number, valid: (r: number, c: number) => boolean) {
  const num: number[] = [], idx: number[] = [];
  for (let r = 0; r < rows; r++) {
    const order = [...Array(cols).keys()].sort((x, y) => Number(!valid(r, x)) - Number(!valid(r, y)));
    num.push(order.filter((c) => valid(r, c)).length);
    idx.push(...order);
  }
  return { num, idx };
}

/** The eight tables PyTorch would build from states [G, nQ, nKV]. */
export function referenceTables(states: ArrayLike<number>, G: number, nQ: number, nKV: number) {
  const s = (g: number, i: number, j: number) => states[(g * nQ + i) * nKV + j];
  const kvOf = (v: number) => sortedTables(G * nQ, nKV, (r, c) => s(Math.floor(r / nQ), r % nQ, c) === v);
  const qOf = (v: number) => sortedTables(G * nKV, nQ, (r, c) => s(Math.floor(r / nKV), c, r % nKV) === v);
  return { kv: kvOf(1), fullKv: kvOf(2), q: qOf(1), fullQ: qOf(2) };
}

/** The mask's tables as plain arrays, with their shapes, for deep equality. */
export function tablesOf(m: BlockMask) {
  const arr = (t: Tensor | null) => (t ? { shape: [...t.shape], data: Array.from(t.data!) } : null);
  return {
    kvNumBlocks: arr(m.kvNumBlocks), kvIndices: arr(m.kvIndices),
    fullKvNumBlocks: arr(m.fullKvNumBlocks), fullKvIndices: arr(m.fullKvIndices),
    qNumBlocks: arr(m.qNumBlocks), qIndices: arr(m.qIndices),
    fullQNumBlocks: arr(m.fullQNumBlocks), fullQIndices: arr(m.fullQIndices),
  };
}

export const blockSizes: fc.Arbitrary<number | [number, number]> = fc.constantFrom<number | [number, number]>(
  16, 32, 64, 128, [32, 64], [64, 16],
);
