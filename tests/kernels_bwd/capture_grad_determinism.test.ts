/**
 * Captured-tensor gradients without atomics (DESIGN.md §3 "Backward", lib/lower/plan_flex_grad.ts): every dQ
 * workgroup sums its contributions in a fixed order into its own slice of the `err` scratch and a fixed-order
 * reduce pass sums the slices. Checked here: learnable ALiBi slopes (f32 [H]) and a relative-position bias
 * table (f32 [2S − 1], indexed by q − kv + S − 1) and a per-query temperature (f32 [S], indexed by q; a per-query
 * additive bias would have a zero gradient: softmax ignores a row's shift), each with a causal
 * mask and passed to vjp as primals:
 *   - gradients (dq, dk, dv, dcapture) equal the CPU executor (float64) within rel. L2 1e-4;
 *   - realizing the backward twice (fresh nodes from the same host data) gives bit-identical results;
 *   - the dQ kernel's WGSL has no compare-exchange for these cases, while a capture as large as a full
 *     [S, S] bias (partial slices over the 64 MiB threshold) still takes the atomic fallback;
 *   - indices free of kv and score (slopes, per-query temperature) merge once per workgroup, not once per column;
 *   - on the dS' path (the default where it applies) the dK/dV kernel sums them instead (no compare-exchange), one
 *     round per group head where the index is free of q and score (slopes), per column otherwise; a full [S, S] bias
 *     takes it where its slices fit and the fused path (atomic) where they do not.
 */
import { Effect } from "effect";
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { alibi, causalMask, createBlockMask, type Expr, flexAttention, realizeAll, type ScoreMod, type Tensor, tensor, vjp } from "../../mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexBackwardSource } from "../../lib/lower/plan_flex_grad.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { rng, type TypedData } from "../../lib/tensor/tensor.ts";

const noGpu = await gpuSkipReason();

const B = 1, H = 4, S = 64, D = 16;
const random = rng(11);
const data = (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * random());
const host = {
  q: data(B * H * S * D), k: data(B * H * S * D), v: data(B * H * S * D), dOut: data(B * H * S * D),
  slopes: data(H, 0.05, 0.5),
  table: data(2 * S - 1),
  perQuery: data(S, 0.5, 1.5),
};

interface Case {
  readonly name: string;
  readonly capture: Float32Array;
  readonly shape: number[];
  readonly mod: (t: Tensor) => ScoreMod;
  /** The index reads neither kv nor score: one merge round at the end of the walk. */
  readonly fixedIndex: boolean;
  /** The index reads neither q nor score: the dK/dV kernel (dS' path) merges once per group head. */
  readonly fixedIndexDkdv: boolean;
}

const relPos = (table: Tensor): ScoreMod => (s: Expr, _b: Expr, _h: Expr, q: Expr, kv: Expr) => s.add(table.at(q.sub(kv).add(S - 1)));

const perQuery = (temp: Tensor): ScoreMod => (s: Expr, _b: Expr, _h: Expr, q: Expr) => s.mul(temp.at(q));

const CASES: Case[] = [
  { name: "learnable alibi slopes [H]", capture: host.slopes, shape: [H], mod: (t) => alibi(t), fixedIndex: true, fixedIndexDkdv: true },
  { name: "relative-position bias table [2S − 1]", capture: host.table, shape: [2 * S - 1], mod: relPos, fixedIndex: false, fixedIndexDkdv: false },
  { name: "per-query temperature [S]", capture: host.perQuery, shape: [S], mod: perQuery, fixedIndex: true, fixedIndexDkdv: false },
];

const NAMES = ["dq", "dk", "dv", "dcapture"];

/** Fresh tensors and nodes over the same host data: the gradient roots and the flex call. */
async function build(c: Case): Promise<{ roots: Tensor[]; call: FlexCall }> {
  const t = (d: Float32Array, shape: number[]) => tensor(d.slice(), shape);
  const shape = [B, H, S, D];
  const blockMask = await createBlockMask(causalMask, 1, 1, S, S, { blockSize: 32 });
  const [y, back] = vjp(
    (q: Tensor, k: Tensor, v: Tensor, cap: Tensor) => flexAttention(q, k, v, { blockMask, scoreMod: c.mod(cap) }),
    t(host.q, shape), t(host.k, shape), t(host.v, shape), t(c.capture, c.shape),
  );
  return { roots: back(t(host.dOut, shape)), call: y.arg as FlexCall };
}

const bits = (d: TypedData) => new Uint32Array(d.buffer, d.byteOffset, d.length);

function differing(a: TypedData, b: TypedData): number {
  const [p, q] = [bits(a), bits(b)];
  if (p.length !== q.length) return Math.max(p.length, q.length);
  let n = 0;
  for (let j = 0; j < p.length; j++) if (p[j] !== q[j]) n++;
  return n;
}

describe("captured-tensor gradients: per-workgroup partials and a fixed-order reduction (no atomics)", () => {
  for (const c of CASES) {
    it(`${c.name}: the dQ kernel uses no compare-exchange`, async () => {
      const { call } = await build(c);
      const src = flexBackwardSource(call, "dq", DEFAULT_CAPABILITIES);
      expect(src.capGrad.mode).toBe("partials");
      expect(src.code.includes("atomicCompareExchangeWeak")).toBe(false);
      // merge rounds: one per (unrolled) column step plus the final one, or only the final one
      const rounds = src.code.split("cg_round(tid, cg_slice);").length - 1;
      expect({ fixed: rounds === 1 }).toEqual({ fixed: c.fixedIndex });
    });
  }

  for (const c of CASES) {
    it(`${c.name}: the dS' path's dK/dV kernel sums it without compare-exchange`, async () => {
      const { call } = await build(c);
      const src = flexBackwardSource(call, "dkdv", DEFAULT_CAPABILITIES, { writeDs: true, dsHeadsFastest: true });
      expect(src.capGrad.mode).toBe("partials");
      expect(src.code.includes("atomicCompareExchangeWeak")).toBe(false);
      const rounds = src.code.split("cg_round(tid, cg_slice);").length - 1;
      expect({ fixed: rounds === 1 }).toEqual({ fixed: c.fixedIndexDkdv });
    });
  }

  it("a full [S, S] bias: dK/dV partial slices where they fit (S 64), the atomic fallback (fused path) where not (S 1024)", () => {
    const mk = (S2: number) => {
      const bias = tensor(new Float32Array(S2 * S2), [S2, S2]);
      const q = tensor(new Float32Array(4 * S2 * 16), [1, 4, S2, 16]);
      const call = flexAttention(q, q, q, { scoreMod: (s, _b, _h, qi, kv) => s.add(bias.at(qi, kv)) }).arg as FlexCall;
      return flexBackwardSource(call, "dkdv", DEFAULT_CAPABILITIES, { writeDs: true }).capGrad.mode;
    };
    expect([mk(64), mk(1024)]).toEqual(["partials", "atomic"]);
  });

  it("a capture as large as a full [S, S] bias falls back to the atomic path", () => {
    const S2 = 1024, H2 = 4;
    const bias = tensor(new Float32Array(S2 * S2), [S2, S2]);
    const q = tensor(new Float32Array(H2 * S2 * 16), [1, H2, S2, 16]);
    const call = flexAttention(q, q, q, { scoreMod: (s, _b, _h, qi, kv) => s.add(bias.at(qi, kv)) }).arg as FlexCall;
    const src = flexBackwardSource(call, "dq", DEFAULT_CAPABILITIES);
    expect(src.capGrad.mode).toBe("atomic");
    expect(src.code.includes("atomicCompareExchangeWeak")).toBe(true);
  });

  for (const c of CASES) {
    it.skipIf(noGpu)(`${c.name}: matches the CPU executor (float64) and is bit-identical across realizes`, async () => {
      const first = await build(c);
      const got = await realizeAll(first.roots);
      const want = await Effect.runPromise(createCpuExecutor().realize(first.roots));
      got.forEach((g, i) => {
        const err = relL2(g, want[i]);
        expect({ name: NAMES[i], ok: err <= 1e-4, err }).toEqual({ name: NAMES[i], ok: true, err });
        // real values, not an all-zero result that would compare equal trivially
        expect({ name: NAMES[i], nonzero: Array.from(g).some((x) => x !== 0) }).toEqual({ name: NAMES[i], nonzero: true });
      });
      const again = await realizeAll((await build(c)).roots);
      got.forEach((g, i) => expect({ name: NAMES[i], differ: differing(g, again[i]) }).toEqual({ name: NAMES[i], differ: 0 }));
    }, 900_000);
  }
});

releaseGpuAfterAll();
