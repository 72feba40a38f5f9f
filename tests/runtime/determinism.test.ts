/**
 * Determinism (hardening): the same inputs give bit-identical results on the GPU across realizes — forward
 * out and lse, backward dq / dk / dv and the gradient of learnable ALiBi slopes (a captured f32 tensor passed
 * to vjp as a primal: its per-workgroup partials go through a fixed-order reduction, no atomics). Every run
 * builds fresh tensors and nodes from the same host data; results are compared as bit patterns.
 */
import { describe, expect, it } from "../harness.ts";
import { alibi, causalMask, createBlockMask, flexAttention, realizeAll, type Tensor, tensor, vjp } from "../../mod.ts";
import { rng } from "../../lib/tensor/tensor.ts";
import type { TypedData } from "../../lib/tensor/tensor.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";

const noGpu = await gpuSkipReason();

const B = 1, H = 4, S = 96, D = 32;
const random = rng(7);
const data = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);
const host = {
  q: data(B * H * S * D), k: data(B * H * S * D), v: data(B * H * S * D),
  dOut: data(B * H * S * D), dLse: data(B * H * S, 0.5),
  slopes: Float32Array.from({ length: H }, (_, i) => 0.05 + 0.1 * i),
};

const NAMES = ["out", "lse", "dq", "dk", "dv", "dslopes"];

/** Fresh tensors and nodes over the same host data: [out, lse, dq, dk, dv, dslopes]. */
async function build(): Promise<Tensor[]> {
  const t = (d: Float32Array, shape: number[]) => tensor(d.slice(), shape);
  const shape = [B, H, S, D];
  const blockMask = await createBlockMask(causalMask, 1, 1, S, S, { blockSize: 32 });
  const [y, back] = vjp(
    (q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) => flexAttention(q, k, v, { blockMask, scoreMod: alibi(slopes), returnLse: true }),
    t(host.q, shape), t(host.k, shape), t(host.v, shape), t(host.slopes, [H]),
  );
  return [y.out, y.lse, ...back({ out: t(host.dOut, shape), lse: t(host.dLse, [B, H, S]) })];
}

const bits = (d: TypedData) => new Uint32Array(d.buffer, d.byteOffset, d.length);

function expectBitIdentical(a: TypedData[], b: TypedData[]): void {
  expect(a.length).toBe(NAMES.length);
  a.forEach((x, i) => {
    const [p, q] = [bits(x), bits(b[i])];
    expect({ name: NAMES[i], length: q.length }).toEqual({ name: NAMES[i], length: p.length });
    let differ = 0;
    for (let j = 0; j < p.length; j++) if (p[j] !== q[j]) differ++;
    expect({ name: NAMES[i], differ }).toEqual({ name: NAMES[i], differ: 0 });
  });
}

describe("determinism", () => {
  it.skipIf(noGpu)("forward and backward (with a learnable captured bias) are bit-identical across realizes", async () => {
    const first = await realizeAll(await build());
    // sanity: real values, not an all-zero or NaN result that would compare equal trivially
    for (const [i, v] of first.entries()) {
      expect({ name: NAMES[i], finite: Array.from(v).every(Number.isFinite) }).toEqual({ name: NAMES[i], finite: true });
      expect({ name: NAMES[i], nonzero: Array.from(v).some((x) => x !== 0) }).toEqual({ name: NAMES[i], nonzero: true });
    }
    expectBitIdentical(await realizeAll(await build()), first);
    // realized one by one (each gradient's own realize runs the whole backward again): still the same bits
    const roots = await build();
    expectBitIdentical(await Promise.all(roots.map((r) => r.toArray())), first);
  });
});

releaseGpuAfterAll();
