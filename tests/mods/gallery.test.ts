/**
 * Every gallery mod against a hand-written dense reference in plain JS loops (never through the IR), on
 * S ∈ {12, 37, 128}; the mods themselves go trace → IR → interpreter (compileExpr).
 */
import { describe, expect, it } from "../harness.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import { traceMaskMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { noopMask } from "../../lib/mods/algebra.ts";
import { rng, tensor } from "../../lib/tensor/tensor.ts";
import {
  alibi, alibiSlopes, causalMask, checkerboard, docIdsFromOffsets, documentMask, flamingo, flamingoIntervals, GALLERY,
  galleryOffsets, imageShape, jaggedMask, natten, prefixLm, sasa, slidingWindow, softcap, softcapApprox, tanhApproxValue,
} from "../../lib/mods/gallery/mod.ts";
import { capturesOf, denseMask, firstDiff, maskFn, scoreFn } from "./dense.ts";
import { simplify } from "../../lib/mods/simplify.ts";
import { compileExpr } from "../../lib/mods/evaluate.ts";

type Pred = (q: number, kv: number) => boolean;

function expectMask(mod: MaskMod, ref: Pred, S: number, Skv = S, h = 0): void {
  const f = maskFn(mod);
  const got = denseMask(S, (q, kv) => f(0, h, q, kv), Skv), want = denseMask(S, ref, Skv);
  const i = firstDiff(got, want);
  if (i >= 0) throw new Error(`${mod.name}: S=${S} differs at q=${Math.floor(i / Skv)}, kv=${i % Skv} (got ${got[i]}, want ${want[i]})`);
}

// ----------------------------------------------------------------- plain-JS references
const causalRef: Pred = (q, kv) => q >= kv;
const windowRef = (w: number): Pred => (q, kv) => q >= kv && q - kv <= w;
const prefixRef = (n: number): Pred => (q, kv) => kv < n || q >= kv;
const docRef = (ids: ArrayLike<number>): Pred => (q, kv) => ids[q] === ids[kv];
function jaggedRef(off: number[], inner: Pred): Pred {
  const docOf = (t: number) => { let d = 0; while (!(t >= off[d] && t < off[d + 1])) d++; return d; };
  return (q, kv) => docOf(q) === docOf(kv) && inner(q - off[docOf(q)], kv - off[docOf(kv)]);
}
function sasaRef(H: number, W: number, win: number): Pred {
  const r = Math.floor(win / 2);
  return (q, kv) => q < H * W && kv < H * W &&
    Math.abs(Math.floor(q / W) - Math.floor(kv / W)) <= r && Math.abs((q % W) - (kv % W)) <= r;
}
function nattenRef(H: number, W: number, kH: number, kW: number): Pred {
  const rh = Math.floor(kH / 2), rw = Math.floor(kW / 2);
  const clamp = (x: number, lo: number, hi: number) => Math.min(Math.max(x, lo), hi);
  return (q, kv) => {
    if (q >= H * W || kv >= H * W) return false;
    const cr = clamp(Math.floor(q / W), rh, H - 1 - rh), cc = clamp(q % W, rw, W - 1 - rw);
    return Math.abs(cr - Math.floor(kv / W)) <= rh && Math.abs(cc - (kv % W)) <= rw;
  };
}
const flamingoRef = (iv: number[][], imageOf: (kv: number) => number): Pred => (q, kv) =>
  q >= iv[imageOf(kv)][0] && q < iv[imageOf(kv)][1];

/** Random partition of S tokens into `docs` documents (some possibly empty). */
function randomOffsets(S: number, docs: number, seed: number): number[] {
  const r = rng(seed);
  const cuts = Array.from({ length: docs - 1 }, () => Math.floor(r() * (S + 1))).sort((a, b) => a - b);
  return [0, ...cuts, S];
}

const SIZES = [12, 37, 128];

for (const S of SIZES) {
  describe(`gallery masks vs dense references, S=${S}`, () => {
    it("causalMask", () => expectMask(causalMask, causalRef, S));

    it("slidingWindow(w) for w ∈ {0, 3, S/8}", () => {
      for (const w of [0, 3, Math.floor(S / 8)]) expectMask(slidingWindow(w), windowRef(w), S);
    });

    it("prefixLm(n) for n ∈ {0, 5, S/2}", () => {
      for (const n of [0, 5, Math.floor(S / 2)]) expectMask(prefixLm(n), prefixRef(n), S);
    });

    it("documentMask: contiguous and scattered document ids", () => {
      const contiguous = docIdsFromOffsets(randomOffsets(S, 4, S));
      const r = rng(7 * S);
      const scattered = Int32Array.from({ length: S }, () => Math.floor(r() * 3));
      expectMask(documentMask(contiguous), docRef(contiguous), S);
      expectMask(documentMask(tensor(scattered, undefined, { dtype: "i32" })), docRef(scattered), S);
    });

    it("jaggedMask with inner noop / causal / slidingWindow(2), local positions", () => {
      for (const [seed, docs] of [[S, 3], [S + 1, 5], [S + 2, 1]]) {
        const off = randomOffsets(S, docs, seed);
        expectMask(jaggedMask(off), jaggedRef(off, () => true), S);
        expectMask(jaggedMask(off, noopMask), jaggedRef(off, () => true), S);
        expectMask(jaggedMask(tensor(off, undefined, { dtype: "i32" }), causalMask), jaggedRef(off, causalRef), S);
        expectMask(jaggedMask(off, slidingWindow(2)), jaggedRef(off, windowRef(2)), S);
      }
      // an inner mask that depends on local positions only (not causal): the first 2 tokens of each document
      const off = galleryOffsets(S);
      const firstTwo: MaskMod = (_b, _h, _q, kv) => kv.lt(2);
      expectMask(jaggedMask(off, firstTwo), jaggedRef(off, (_q, kv) => kv < 2), S);
    });

    it("sasa(H, W, window) for windows 1, 3, 5 (and tokens beyond the image masked)", () => {
      const [H, W] = imageShape(S);
      for (const win of [1, 3, 5, 4]) expectMask(sasa(H, W, win), sasaRef(H, W, win), S);
      expectMask(sasa(2, Math.floor(S / 2), 3), sasaRef(2, Math.floor(S / 2), 3), S);
    });

    it("natten(H, W, kH, kW): full windows clamped at the borders", () => {
      const [H, W] = imageShape(S);
      for (const [kH, kW] of [[3, 3], [1, 3], [3, 1], [H, 3], [H % 2 ? H : H - 1, W % 2 ? W : W - 1]]) {
        expectMask(natten(H, W, kH, kW), nattenRef(H, W, kH, kW), S);
      }
      // every in-image query sees exactly kH·kW keys
      const f = maskFn(natten(H, W, 3, 3));
      for (let q = 0; q < H * W; q++) {
        let n = 0;
        for (let kv = 0; kv < S; kv++) n += f(0, 0, q, kv) ? 1 : 0;
        expect(n).toBe(9);
      }
    });

    it("flamingo: per-token image ids and a fixed number of tokens per image", () => {
      const positions = [Math.floor(S / 6), Math.floor(S / 2), Math.floor((5 * S) / 6)];
      const iv = flamingoIntervals(positions, S);
      const ivRows = [0, 1, 2].map((i) => [iv.data![2 * i], iv.data![2 * i + 1]]);
      const imageOf = (kv: number) => Math.floor((kv * 3) / S);
      const ids = Int32Array.from({ length: S }, (_, kv) => imageOf(kv));
      expectMask(flamingo(iv, ids), flamingoRef(ivRows, imageOf), S);
      // 4 tokens per image: kv length = 3 images × 4 tokens, overlapping intervals given as nested arrays
      const overlapping = [[0, Math.floor(S / 2)], [Math.floor(S / 3), S], [S - 1, S]];
      expectMask(flamingo(overlapping, 4), flamingoRef(overlapping, (kv) => Math.floor(kv / 4)), S, 12);
    });
  });

  describe(`gallery score mods vs dense references, S=${S}`, () => {
    const r = rng(1000 + S);
    const scores = Float64Array.from({ length: S * S }, () => Math.fround((r() - 0.5) * 16));
    function expectScores(mod: Parameters<typeof scoreFn>[0], ref: (s: number, h: number, q: number, kv: number) => number, heads = 1) {
      const f = scoreFn(mod);
      for (let h = 0; h < heads; h++) {
        for (let q = 0; q < S; q++) {
          for (let kv = 0; kv < S; kv++) {
            const s = scores[q * S + kv], got = f(s, 0, h, q, kv), want = ref(s, h, q, kv);
            if (!(Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want)))) {
              throw new Error(`${mod.name}: h=${h} q=${q} kv=${kv} score=${s}: got ${got}, want ${want}`);
            }
          }
        }
      }
    }

    it("alibi(slopes): score + slopes[h]·(kv − q), with attention-gym's slopes", () => {
      const H = 4, slopes = alibiSlopes(H);
      expect(Array.from(slopes.data!)).toEqual([0.25, 0.0625, 0.015625, 0.00390625]);
      expectScores(alibi(slopes), (s, h, q, kv) => s + Math.pow(2, (-8 * (h + 1)) / H) * (kv - q), H);
      const custom = [0.5, -1.25, 3];
      expectScores(alibi(custom), (s, h, q, kv) => s + custom[h] * (kv - q), 3);
    });

    it("softcap(cap): cap·tanh(score/cap)", () => {
      for (const cap of [1, 2.5, 20]) expectScores(softcap(cap), (s) => cap * Math.tanh(s / cap));
    });

    it("softcapApprox(cap): cap·tanh_approx(score/cap)", () => {
      for (const cap of [1, 4]) expectScores(softcapApprox(cap), (s) => cap * tanhApproxValue(s / cap));
    });

    it("checkerboard: ×0.5 where |kv − q| is odd, ×2 where even", () => {
      expectScores(checkerboard, (s, _h, q, kv) => (Math.abs(kv - q) % 2 === 1 ? s * 0.5 : s * 2));
    });
  });
}

describe("gallery factories", () => {
  it("have descriptive names", () => {
    expect(causalMask.name).toBe("causal");
    expect(slidingWindow(3).name).toBe("slidingWindow(3)");
    expect(prefixLm(8).name).toBe("prefixLm(8)");
    expect(natten(4, 4, 3, 3).name).toBe("natten(4x4, 3x3)");
    expect(sasa(4, 8, 3).name).toBe("sasa(4x8, 3)");
    expect(softcap(20).name).toBe("softcap(20)");
    expect(checkerboard.name).toBe("checkerboard");
    expect(jaggedMask([0, 2, 6, 9], causalMask).name).toBe("jagged(3 docs, causal)");
  });

  it("jaggedMask reads offsets through the doc-id table: a gather of depth 2", () => {
    const t = traceMaskMod(jaggedMask([0, 2, 6, 9], causalMask));
    expect(t.captures.length).toBe(2);
    const nested = (e: typeof t.expr): boolean =>
      (e.op === "load" && e.src.some((s) => s.op === "load")) || e.src.some(nested);
    expect(nested(t.expr)).toBe(true);
    expect(Array.from(docIdsFromOffsets([0, 2, 6, 9]))).toEqual([0, 0, 1, 1, 1, 1, 2, 2, 2]);
  });

  it("reject invalid parameters with typed errors", () => {
    const tag = (t: string) => expect.objectContaining({ _tag: t });
    expect(() => slidingWindow(-1)).toThrow(tag("InvalidArgument"));
    expect(() => slidingWindow(1.5)).toThrow(tag("InvalidArgument"));
    expect(() => prefixLm(-2)).toThrow(tag("InvalidArgument"));
    expect(() => jaggedMask([1, 2, 3])).toThrow(tag("InvalidArgument"));
    expect(() => jaggedMask([0, 5, 3])).toThrow(tag("InvalidArgument"));
    expect(() => documentMask(tensor([0.5, 1], [2], { dtype: "f32" }))).toThrow(tag("DTypeError"));
    expect(() => documentMask(tensor([0, 1, 2, 3], [2, 2], { dtype: "i32" }))).toThrow(tag("ShapeError"));
    expect(() => natten(4, 4, 5, 3)).toThrow(tag("InvalidArgument"));
    expect(() => sasa(0, 4, 3)).toThrow(tag("InvalidArgument"));
    expect(() => softcap(0)).toThrow(tag("InvalidArgument"));
    expect(() => alibiSlopes(0)).toThrow(tag("InvalidArgument"));
    expect(() => flamingo([[0, 1, 2]], 2)).toThrow(tag("InvalidArgument"));
    expect(() => flamingo([[0, 1]], 0)).toThrow(tag("InvalidArgument"));
  });

  it("imageShape picks the largest near-square area ≤ S", () => {
    expect(imageShape(12)).toEqual([3, 4]);
    expect(imageShape(37)).toEqual([6, 6]);
    expect(imageShape(128)).toEqual([8, 16]);
    expect(imageShape(64)).toEqual([8, 8]);
    expect(imageShape(3)).toEqual([1, 3]);
    for (let S = 1; S <= 300; S++) {
      const [h, w] = imageShape(S);
      expect(h * w <= S && h <= w && w <= 4 * h).toBe(true);
      expect(S - h * w).toBeLessThan(Math.max(2, S / 10));
    }
  });
});

describe("GALLERY table", () => {
  const refs: Record<string, (S: number, H: number) => Pred | ((s: number, h: number, q: number, kv: number) => number)> = {
    causal: () => causalRef,
    slidingWindow: (S) => windowRef(Math.max(1, Math.floor(S / 8))),
    prefixLm: (S) => prefixRef(Math.floor(S / 4)),
    document: (S) => docRef(docIdsFromOffsets(galleryOffsets(S))),
    causalDocument: (S) => { const d = docRef(docIdsFromOffsets(galleryOffsets(S))); return (q: number, kv: number) => q >= kv && d(q, kv); },
    jagged: (S) => jaggedRef(galleryOffsets(S), causalRef),
    sasa: (S) => { const [h, w] = imageShape(S); return sasaRef(h, w, h >= 8 ? 5 : 3); },
    natten: (S) => { const [h, w] = imageShape(S); const k = h >= 8 ? 5 : 3; return nattenRef(h, w, k, k); },
    flamingo: (S) => {
      const pos = [0, 1, 2].map((i) => Math.floor((S * (2 * i + 1)) / 6));
      const iv = pos.map((p, i) => [p, i < 2 ? pos[i + 1] : S]);
      return flamingoRef(iv, (kv) => Math.floor((kv * 3) / S));
    },
    alibi: (_S, H) => (s: number, h: number, q: number, kv: number) => s + Math.pow(2, (-8 * (h + 1)) / H) * (kv - q),
    softcap: () => (s: number) => 2 * Math.tanh(s / 2),
    softcapApprox: () => (s: number) => 2 * tanhApproxValue(s / 2),
    checkerboard: () => (s: number, _h: number, q: number, kv: number) => (Math.abs(kv - q) % 2 ? s / 2 : s * 2),
  };

  it("has a reference here for every entry (so new entries get tested)", () => {
    expect(Object.keys(GALLERY).sort()).toEqual(Object.keys(refs).sort());
  });

  for (const S of SIZES) {
    it(`every entry traces as its kind and matches its reference, S=${S}`, () => {
      const H = 4;
      for (const [name, entry] of Object.entries(GALLERY)) {
        expect(typeof entry.params).toBe("string");
        if (entry.kind === "mask") {
          const mod = entry.make(S, H);
          expect(traceMaskMod(mod).kind).toBe("mask");
          expectMask(mod, refs[name](S, H) as Pred, S);
        } else {
          const f = scoreFn(entry.make(S, H));
          const ref = refs[name](S, H) as (s: number, h: number, q: number, kv: number) => number;
          expect(traceScoreMod(entry.make(S, H)).kind).toBe("score");
          for (let h = 0; h < H; h++) {
            for (let q = 0; q < S; q += 3) {
              for (let kv = 0; kv < S; kv += 2) {
                const s = ((q * 7 + kv * 3 + h) % 17) - 8.5;
                expect(Math.abs(f(s, 0, h, q, kv) - ref(s, h, q, kv))).toBeLessThan(1e-9);
              }
            }
          }
        }
      }
    });
  }

  it("simplify preserves every entry exactly (S=37, all heads)", () => {
    const S = 37, H = 4;
    for (const [name, entry] of Object.entries(GALLERY)) {
      const t = entry.kind === "mask" ? traceMaskMod(entry.make(S, H)) : traceScoreMod(entry.make(S, H));
      const caps = capturesOf(t), a = compileExpr(t.expr), b = compileExpr(simplify(t.expr));
      for (let h = 0; h < H; h++) {
        for (let q = 0; q < S; q++) {
          for (let kv = 0; kv < S; kv++) {
            const env = { score: ((q * 5 + kv) % 11) - 5.25, b: 0, h, q, kv };
            const x = a(env, caps), y = b(env, caps);
            if (!Object.is(x, y)) throw new Error(`${name}: h=${h} q=${q} kv=${kv}: ${String(y)} ≠ ${String(x)}`);
          }
        }
      }
    }
  });

  it("masks are non-trivial on S=128 (neither all kept nor all dropped), except where documented", () => {
    for (const [name, entry] of Object.entries(GALLERY)) {
      if (entry.kind !== "mask") continue;
      const f = maskFn(entry.make(128));
      const grid = denseMask(128, (q, kv) => f(0, 0, q, kv));
      const kept = grid.reduce((a, x) => a + x, 0);
      expect([name, kept > 0 && kept < 128 * 128]).toEqual([name, true]);
    }
  });
});
