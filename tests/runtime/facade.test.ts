import { describe, expect, it, relL2 } from "../harness.ts";
import { CaptureOutOfRange } from "../../lib/errors.ts";
import { getExecutor, liveBufferCount, poisonEnabled, realizeAll, setPoison } from "../../lib/runtime/mod.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { randn, tensor } from "../../lib/tensor/tensor.ts";
import { flexAttention } from "../../lib/attention/flex_attention.ts";
import { maskBlocksNode } from "../../lib/blockmask/mask_blocks.ts";
import { traceMaskMod } from "../../lib/mods/trace.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { withGpu } from "./fakes.ts";
import { readEnv } from "../../lib/runtime/env.ts";

const noGpu = await gpuSkipReason();

describe("runtime façade", () => {
  it("toArray() realizes through the default runtime and matches the CPU executor", async () => {
    setPoison(true);
    try {
      const q = randn([1, 2, 40, 16]), k = randn([1, 2, 40, 16]), v = randn([1, 2, 40, 16]);
      const out = flexAttention(q, k, v);
      const got = await out.toArray();
      const [want] = await runPromise(createCpuExecutor().realize([out]));
      expect(relL2(got, want)).toBeLessThanOrEqual(1e-4);
    } finally {
      setPoison(false);
    }
  });

  it("a failing realize rejects with the tagged error itself", async () => {
    const ids = tensor(Int32Array.from([0, 1]), [2], { dtype: "i32" });
    const node = maskBlocksNode({ mask: traceMaskMod((_b, _h, q, kv) => ids.at(q).eq(ids.at(kv))), B: 1, H: 1, qLen: 4, kvLen: 4, blockSize: [4, 4] });
    const e = await node.toArray().then(() => undefined, (e) => e);
    expect(e).toBeInstanceOf(CaptureOutOfRange);
    expect((e as Error).message.length).toBeGreaterThan(0);
  });

  it("setPoison / poisonEnabled toggle", () => {
    setPoison(true); expect(poisonEnabled()).toBe(true);
    setPoison(false); expect(poisonEnabled()).toBe(false);
  });

  it.skipIf(noGpu)("repeated realizes do not grow the live GPU buffers (no leak)", async () => {
    const ex = await getExecutor();
    expect(ex.info.provider).toBe(readEnv("FLEX_WEBGPU") || ex.info.provider);
    const q = randn([1, 1, 32, 16]);
    const { out, lse } = flexAttention(q, q, q, { returnLse: true });
    await realizeAll([out, lse]); // warms caches (pipelines, persistent uploads)
    const warm = liveBufferCount();
    for (let i = 0; i < 3; i++) await realizeAll([out, lse]);
    expect(liveBufferCount()).toBe(warm);
  });

  it.skipIf(noGpu)("a released device leaves no tracked buffer behind", async () => {
    const before = liveBufferCount();
    let during = -1;
    await withGpu({}, async (g) => {
      const q = randn([1, 1, 16, 16]);
      await runPromise(g.executor.realize([flexAttention(q, q, q)]));
      during = liveBufferCount();
    });
    expect(during).toBeGreaterThanOrEqual(before);
    expect(liveBufferCount()).toBe(before);
  });
});

releaseGpuAfterAll();
