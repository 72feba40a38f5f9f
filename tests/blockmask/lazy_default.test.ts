/**
 * flexAttention's default mask (no blockMask given) builds nothing of size (S/128)² on the host at call time:
 * past EAGER_NOOP_BLOCKS blocks its tables are `blockTables` nodes of the noop grid, computed at realize.
 * Checked: a call at S = 2²⁰ returns at once without a large host allocation (not realized); the lazy
 * tables, once realized (provider, outputs poisoned), equal BlockMask.noop's; attention through the lazy
 * default equals the float64 oracle on the eager noop mask, forward and backward.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { BlockMask, expand, flexAttention, randn, type Tensor, tensor, vjp } from "../../mod.ts";
import { EAGER_NOOP_BLOCKS } from "../../lib/blockmask/block_mask.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const cpu = createCpuExecutor();
const onCpu = (...ts: Tensor[]) => runPromise(cpu.realize(ts));
async function onDevice(...ts: Tensor[]): Promise<ArrayLike<number>[]> {
  setPoison(true);
  try { return await Promise.all(ts.map((t) => t.toArray())); } finally { setPoison(false); }
}

/** Host memory in use (JS heap and array buffers), under Deno and Bun. */
function hostBytes(): number {
  const g = globalThis as { process?: { memoryUsage(): { heapUsed: number; external: number } }; Deno?: { memoryUsage(): { heapUsed: number; external: number } } };
  const m = g.Deno ? g.Deno.memoryUsage() : g.process!.memoryUsage();
  return m.heapUsed + m.external;
}

const tables = (m: BlockMask) => [m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks!, m.fullKvIndices!, m.qNumBlocks, m.qIndices, m.fullQNumBlocks!, m.fullQIndices!];

describe("the lazy default mask", () => {
  it("flexAttention(q, k, v) at S = 2^20 returns its lazy tensor in < 1 s with no large host allocation", () => {
    const S = 1 << 20;
    // lazy inputs too (a broadcast constant), so the only thing that could allocate is the default mask
    const x = expand(tensor([0.5], [1, 1, 1, 1]), [1, 1, S, 16]);
    const before = hostBytes();
    const t0 = performance.now();
    const out = flexAttention(x, x, x);
    const ms = performance.now() - t0;
    const grown = hostBytes() - before;
    expect(ms).toBeLessThan(1000);
    expect(grown).toBeLessThan(32 * 2 ** 20); // the eager tables would be 4 × 8192² i32 = 1 GiB
    const m = (out.arg as FlexCall).blockMask;
    expect(m.kvIndices.op).toBe("blockTables");
    expect(m.kvIndices.shape).toEqual([1, 1, 8192, 8192]);
    expect(out.shape).toEqual([1, 1, S, 16]);
  });

  it("lazy noop tables realize to BlockMask.noop's (odd lengths, [q, kv] block sizes)", async () => {
    for (const [qLen, kvLen, bs] of [[300, 129, [64, 32]], [40, 1000, [16, 128]]] as const) {
      const lazy = BlockMask.lazyNoop(qLen, kvLen, bs), eager = BlockMask.noop(qLen, kvLen, bs);
      const got = await onDevice(...tables(lazy));
      tables(eager).forEach((t, i) => expect(Array.from(got[i])).toEqual(Array.from(t.data!)));
      const [c] = await onCpu(lazy.fullQIndices!);
      expect(Array.from(c)).toEqual(Array.from(eager.fullQIndices!.data!));
    }
  });

  it("attention through the lazy default equals the oracle on the eager noop mask (forward and backward)", async () => {
    // one query row over more than EAGER_NOOP_BLOCKS kv blocks: the default mask is lazy
    const Skv = (EAGER_NOOP_BLOCKS + 1) * 128 + 37, D = 16;
    const q = randn([1, 1, 1, D]), k = randn([1, 1, Skv, D]), v = randn([1, 1, Skv, D]), dOut = randn([1, 1, 1, D]);
    const out = flexAttention(q, k, v);
    expect((out.arg as FlexCall).blockMask.kvIndices.op).toBe("blockTables");
    const [ref] = await onCpu(flexAttention(q, k, v, { blockMask: BlockMask.noop(1, Skv) }));
    const [got] = await onDevice(out);
    expect(relL2(got, ref)).toBeLessThanOrEqual(1e-4);
    // a smaller lazy mask for the backward (it walks the lazily built q-major tables)
    const [Sq, S2] = [70, 300];
    const q2 = randn([1, 2, Sq, D]), k2 = randn([1, 2, S2, D]), v2 = randn([1, 2, S2, D]), d2 = randn([1, 2, Sq, D]);
    const run = (blockMask: BlockMask) => {
      const [o, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask }), q2, k2, v2);
      return [o, ...back(d2)];
    };
    const want = await onCpu(...run(BlockMask.noop(Sq, S2, 32)));
    const have = await onDevice(...run(BlockMask.lazyNoop(Sq, S2, 32)));
    expect(relL2(have[0], want[0])).toBeLessThanOrEqual(1e-4);
    for (let i = 1; i < 4; i++) expect(relL2(have[i], want[i])).toBeLessThanOrEqual(1e-3);
    void dOut;
  }, 300_000);
});

releaseGpuAfterAll();
