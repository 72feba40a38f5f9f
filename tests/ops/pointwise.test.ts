/**
 * The autodiff glue ops (lib/tensor/ops.ts) on the GPU against their CPU implementations (GRAD_CPU_OPS via
 * CPU_OPS), on fresh random inputs with poisoned outputs, at sizes around one workgroup (255/256/257), one
 * element and many workgroups (70000); f32 and i32; scalar broadcast; a forced 2-D dispatch; the plans'
 * length independence; and the typed errors at construction.
 */
import { Effect } from "effect";
import { describe, expect, it, maxAbs, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { Tensor, tensor } from "../../lib/tensor/tensor.ts";
import { add, expand, mul, mulScalar, neg, reshape, sub, sum } from "../../lib/tensor/ops.ts";
import { grad } from "../../lib/passes/mod.ts";
import { planPointwise } from "../../lib/lower/plan_pointwise.ts";
import { planNode } from "../../lib/lower/plan_node.ts";
import { type Capabilities, DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { createGpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { DTypeError, InvalidArgument, ShapeError } from "../../lib/errors.ts";
import { cpu, gpu, gpuService, randF32, randI32 } from "./fixtures.ts";

const noGpu = await gpuSkipReason();
// Deno's built-in WebGPU panics on queue.writeBuffer of 0 bytes; the executor skips empty uploads, and this
// case proves it on every provider.
const noEmptyUpload = noGpu;
const SIZES = [1, 255, 256, 257, 70000];
const DTYPES = ["f32", "i32"] as const;

const rand = (dtype: "f32" | "i32", shape: readonly number[]) =>
  dtype === "f32" ? randF32(shape) : randI32(shape);

/** GPU and CPU agree: exactly for i32 (wrapping integer arithmetic), to f32 rounding for f32. */
function expectAgrees(got: ArrayLike<number>, want: ArrayLike<number>, dtype: "f32" | "i32" | "f16" | "bool", label: string) {
  expect(got.length).toBe(want.length);
  if (dtype === "i32") expect({ label, diff: maxAbs(got, want) }).toEqual({ label, diff: 0 });
  else expect({ label, ok: relL2(got, want) <= 1e-6 }).toEqual({ label, ok: true });
}

async function checkOnGpu(nodes: { node: Tensor; label: string }[]) {
  const got = await gpu(...nodes.map((n) => n.node));
  const want = cpu(...nodes.map((n) => n.node));
  nodes.forEach((n, i) => expectAgrees(got[i], want[i], n.node.dtype, n.label));
}

describe("ops on the GPU vs the CPU executor", () => {
  for (const op of [add, sub, mul]) {
    for (const dtype of DTYPES) {
      it.skipIf(noGpu)(`${op.name} ${dtype}: same shapes and a scalar on either side, sizes ${SIZES}`, async () => {
        const nodes = SIZES.flatMap((n) => {
          const a = rand(dtype, [n]), b = rand(dtype, [n]), s = rand(dtype, []);
          return [
            { node: op(a, b), label: `${op.name}(a, b) n=${n}` },
            { node: op(s, b), label: `${op.name}(scalar, b) n=${n}` },
            { node: op(a, s), label: `${op.name}(a, scalar) n=${n}` },
          ];
        });
        nodes.push({ node: op(rand(dtype, [3, 5, 7]), rand(dtype, [3, 5, 7])), label: "rank 3" });
        nodes.push({ node: op(rand(dtype, []), rand(dtype, [])), label: "two scalars" });
        await checkOnGpu(nodes);
      });
    }
  }

  for (const dtype of DTYPES) {
    it.skipIf(noGpu)(`neg, mulScalar (integer and fractional factor), reshape, expand ${dtype}, sizes ${SIZES}`, async () => {
      const factor = 1 + Math.floor(Math.random() * 5);
      const frac = factor + 0.5 * Math.sign(Math.random() - 0.5) + 0.25;
      const nodes = SIZES.flatMap((n) => {
        const a = rand(dtype, [n]), s = rand(dtype, []);
        return [
          { node: neg(a), label: `neg n=${n}` },
          { node: mulScalar(a, factor), label: `mulScalar(${factor}) n=${n}` },
          { node: mulScalar(a, -frac), label: `mulScalar(${-frac}) n=${n}` },
          { node: reshape(a, n === 70000 ? [7, 100, 100] : [1, n]), label: `reshape n=${n}` },
          { node: expand(s, [n]), label: `expand n=${n}` },
        ];
      });
      await checkOnGpu(nodes);
    });

    it.skipIf(noGpu)(`sum ${dtype} to a scalar, sizes ${SIZES} and 300000 (over 1024 partials)`, async () => {
      const inputs = [...SIZES, 300000].map((n) => rand(dtype, [n]));
      const got = await gpu(...inputs.map(sum));
      const want = cpu(...inputs.map(sum));
      inputs.forEach((a, i) => {
        expect(got[i].length).toBe(1);
        if (dtype === "i32") expect(got[i][0]).toBe(want[i][0]);
        else {
          // f32 accumulation: error relative to Σ|x| (the sum itself may cancel to near 0)
          const mass = Array.from(a.data!).reduce((t, x) => t + Math.abs(x), 0);
          expect({ n: a.size, err: Math.abs(got[i][0] - want[i][0]) / mass < 1e-6 }).toEqual({ n: a.size, err: true });
        }
      });
    });
  }

  it.skipIf(noGpu)("sum is deterministic: the same input twice gives bit-identical results", async () => {
    const a = randF32([123457], -10, 10);
    const [x] = await gpu(sum(a));
    const [y] = await gpu(sum(a));
    expect(Object.is(x[0], y[0])).toBe(true);
    expect(Number.isFinite(x[0])).toBe(true);
  });

  it.skipIf(noEmptyUpload)("empty tensors: add gives an empty result, sum gives 0", async () => {
    const [s, e] = await gpu(sum(randF32([0])), add(randF32([0]), randF32([0])));
    expect(Array.from(s)).toEqual([0]);
    expect(e.length).toBe(0);
  });

  it.skipIf(noGpu)("a composed graph (autodiff of Σ (a+b)(a−3b) − Σ a) realized on the GPU matches the CPU", async () => {
    const a = randF32([3, 257]), b = randF32([3, 257]);
    const f = (a: Tensor, b: Tensor) => add(sum(mul(add(a, b), sub(a, mulScalar(b, 3)))), neg(sum(a)));
    const roots = [f(a, b), ...grad(f)(a, b)];
    const got = await gpu(...roots);
    const want = cpu(...roots);
    expect(Math.abs(got[0][0] - want[0][0]) / Math.max(1, Math.abs(want[0][0]))).toBeLessThan(1e-5);
    expect(relL2(got[1], want[1])).toBeLessThan(1e-6);
    expect(relL2(got[2], want[2])).toBeLessThan(1e-6);
  });

  it.skipIf(noGpu)("a 2-D dispatch (x capped at 100 workgroups) covers every element", async () => {
    const service = await gpuService();
    const { executor, device } = service;
    const caps: Capabilities = { ...executor.caps, limits: { ...executor.caps.limits, maxComputeWorkgroupsPerDimension: 100 } };
    const small = createGpuExecutor(device!, caps, executor.info);
    try {
      const a = randF32([70000]), b = randF32([70000]), s = randI32([]);
      const nodes = [add(a, b), neg(a), expand(s, [70001]), mulScalar(a, 0.5)];
      expect(planPointwise(nodes[0], caps).launches[0].workgroups).toEqual([100, 3, 1]);
      const got = await Effect.runPromise(small.realize(nodes));
      const want = cpu(...nodes);
      nodes.forEach((n, i) => expectAgrees(got[i], want[i], n.dtype, `${n.op}`));
    } finally {
      small.dispose();
    }
  });
});

describe("pointwise plans", () => {
  it("one kernel per (op, dtype): a new length or factor changes uniforms, never the WGSL", () => {
    const code = (t: Tensor) => planPointwise(t, DEFAULT_CAPABILITIES).launches.map((l) => l.code).join("\n");
    const a = randF32([255]), b = randF32([70000]);
    expect(code(add(a, a))).toBe(code(add(b, b)));
    expect(code(add(a, a))).toBe(code(add(randF32([]), a))); // broadcast is a stride, not a new kernel
    expect(code(mulScalar(a, 2))).toBe(code(mulScalar(b, 0.1)));
    expect(code(sum(a))).toBe(code(sum(b)));
    expect(code(add(a, a))).not.toBe(code(add(randI32([255]), randI32([255]))));
    expect(code(add(a, a))).not.toBe(code(sub(a, a)));
  });

  it("grids: 2-D past the per-dimension limit, sum partials capped at 1024", () => {
    const caps: Capabilities = { ...DEFAULT_CAPABILITIES, limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupsPerDimension: 10 } };
    const p = planPointwise(neg(randF32([2561])), caps);
    expect(p.launches[0].workgroups).toEqual([10, 2, 1]);
    expect(p.launches[0].bindings.map((b) => b.kind)).toEqual(["input", "output", "uniform"]);
    const s = planPointwise(sum(randF32([1_000_000])), DEFAULT_CAPABILITIES);
    expect(s.launches.map((l) => l.workgroups)).toEqual([[1024, 1, 1], [1, 1, 1]]);
    expect(s.launches[0].bindings[1]).toEqual({ kind: "scratch", name: "partials", bytes: 4096 });
  });

  it("planNode routes every glue op here and refuses ops it has no kernel for", () => {
    const a = randF32([4]);
    for (const t of [add(a, a), sub(a, a), mul(a, a), neg(a), mulScalar(a, 2), sum(a), reshape(a, [2, 2]), expand(sum(a), [3])]) {
      expect(planNode(t, DEFAULT_CAPABILITIES).launches[0].label).toMatch(/^pointwise\./);
    }
    expect(() => planPointwise(new Tensor("frobnicate" as never, [a], [4], "f32", undefined as never), DEFAULT_CAPABILITIES)).toThrow(InvalidArgument);
    expect(() => planNode(new Tensor("frobnicate" as never, [a], [4], "f32", undefined as never), DEFAULT_CAPABILITIES)).toThrow(InvalidArgument);
  });
});

describe("glue ops: typed errors at construction", () => {
  it("shapes, dtypes, factors and operands are checked when the node is built", () => {
    expect(() => add(randF32([2]), randF32([3]))).toThrow(ShapeError);
    expect(() => sub(randF32([2, 3]), randF32([3, 2]))).toThrow(ShapeError);
    expect(() => mul(randF32([2]), tensor(new Int32Array([1, 2])))).toThrow(DTypeError);
    expect(() => reshape(randF32([2, 3]), [4])).toThrow(ShapeError);
    expect(() => expand(randF32([2]), [4])).toThrow(ShapeError);
    expect(() => mulScalar(randF32([2]), NaN)).toThrow(InvalidArgument);
    expect(() => neg(42 as unknown as Tensor)).toThrow(InvalidArgument);
    expect(() => sum([1, 2] as unknown as Tensor)).toThrow(InvalidArgument);
  });
});

releaseGpuAfterAll();
