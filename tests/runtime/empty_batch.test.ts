/**
 * B = 0 or H = 0 (hardening): every provider returns empty results of the right shapes — out [0, …],
 * lse [0, …], dq / dk / dv — and zeros for the gradient of a captured bias that has no score to act on;
 * on the GPU no zero-size tensor reaches a dispatch (no 0-workgroup launch), a 0-byte buffer or a 0-byte
 * writeBuffer (Deno's built-in WebGPU panics on one).
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { alibi, flexAttention, randn, type Tensor, tensor, vjp } from "../../mod.ts";
import { createCpuExecutor, runPromise } from "../../effect.ts";
import type { Executor } from "../../lib/runtime/executor.ts";
import type { TypedData } from "../../lib/tensor/tensor.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { withGpu } from "./fakes.ts";

const noGpu = await gpuSkipReason();

interface Case { name: string; q: number[]; kv: number[]; gqa?: boolean }

const CASES: Case[] = [
  { name: "B = 0", q: [0, 2, 16, 32], kv: [0, 2, 16, 32] },
  { name: "H = 0", q: [1, 0, 16, 32], kv: [1, 0, 16, 32] },
  { name: "Hq = 0 with GQA (k/v have 2 heads)", q: [1, 0, 16, 32], kv: [1, 2, 12, 32], gqa: true },
];

/** out, lse, dq, dk, dv, dslopes of one case (slopes: a learnable f32 capture [2]). */
function graph(c: Case): { roots: Tensor[]; shapes: number[][] } {
  const q = randn(c.q), k = randn(c.kv), v = randn(c.kv);
  const slopes = tensor([0.25, 0.5], [2]);
  const [y, back] = vjp((q: Tensor, k: Tensor, v: Tensor, s: Tensor) =>
    flexAttention(q, k, v, { scoreMod: alibi(s), enableGqa: c.gqa, returnLse: true }), q, k, v, slopes);
  const grads = back({ out: randn(y.out.shape), lse: randn(y.lse.shape) });
  const [B, Hq, Sq] = c.q;
  return {
    roots: [y.out, y.lse, ...grads],
    shapes: [[B, Hq, Sq, 32], [B, Hq, Sq], c.q, c.kv, c.kv, [2]],
  };
}

async function expectEmpty(executor: Executor, c: Case): Promise<void> {
  const { roots, shapes } = graph(c);
  expect(roots.map((r) => [...r.shape])).toEqual(shapes);
  const values: TypedData[] = await runPromise(executor.realize(roots));
  expect(values.map((v) => v.length)).toEqual(shapes.map((s) => s.reduce((a, b) => a * b, 1)));
  for (const v of values) expect(Array.from(v).every((x) => x === 0)).toBe(true); // empty, or zeros
}

describe("B = 0 / H = 0", () => {
  for (const c of CASES) {
    it(`${c.name}: the CPU executor returns empty results (and zero capture gradients)`, async () => {
      await expectEmpty(createCpuExecutor(), c);
    });
  }

  it.skipIf(noGpu)("the GPU returns the same, with no dispatch, 0-byte buffer or 0-byte writeBuffer", async () => {
    await withGpu({}, async (g) => {
      const device = g.device!;
      const dispatches: number[][] = [], buffers: number[] = [], writes: number[] = [];
      // record what reaches the device (methods patched on the objects themselves: native objects check `this`)
      const createBuffer = device.createBuffer.bind(device);
      device.createBuffer = (d: GPUBufferDescriptor) => { buffers.push(d.size); return createBuffer(d); };
      const queue = device.queue;
      const writeBuffer = queue.writeBuffer.bind(queue);
      queue.writeBuffer = ((b: GPUBuffer, o: number, data: ArrayBuffer, dOff?: number, size?: number) => {
        writes.push(size ?? data.byteLength);
        return writeBuffer(b, o, data, dOff, size);
      }) as GPUQueue["writeBuffer"];
      const createEncoder = device.createCommandEncoder.bind(device);
      device.createCommandEncoder = (d?: GPUCommandEncoderDescriptor) => {
        const encoder = createEncoder(d);
        const begin = encoder.beginComputePass.bind(encoder);
        encoder.beginComputePass = (pd?: GPUComputePassDescriptor) => {
          const pass = begin(pd);
          const dispatch = pass.dispatchWorkgroups.bind(pass);
          pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => { dispatches.push([x, y ?? 1, z ?? 1]); dispatch(x, y, z); };
          return pass;
        };
        return encoder;
      };
      for (const c of CASES) await expectEmpty(g.executor, c);
      expect(dispatches).toEqual([]);
      expect(writes.filter((n) => n === 0)).toEqual([]);
      expect(buffers.filter((n) => n === 0)).toEqual([]);

      // an empty call next to a real one in the same realize: the real one runs, nothing dispatches 0 workgroups
      const q = randn([1, 1, 16, 16]);
      const real = flexAttention(q, q, q);
      const empty = graph(CASES[0]).roots;
      const [got, ...rest] = await runPromise(g.executor.realize([real, ...empty]));
      const [want] = await runPromise(createCpuExecutor().realize([real]));
      expect(relL2(got, want)).toBeLessThanOrEqual(1e-4);
      expect(rest.map((v) => v.length)).toEqual([0, 0, 0, 0, 0, 2]);
      expect(dispatches.length).toBeGreaterThan(0);
      for (const d of dispatches) expect(Math.min(...d)).toBeGreaterThan(0);
      expect(writes.filter((n) => n === 0)).toEqual([]);
      expect(buffers.filter((n) => n === 0)).toEqual([]);
    });
  });
});

releaseGpuAfterAll();
