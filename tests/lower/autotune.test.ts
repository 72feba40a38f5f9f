/**
 * `kernelOptions.autotune: "max"`: candidates are timed on the device once per key, the winner is used, it is
 * persisted under FLEX_TUNE_CACHE, a second executor (as a second process would) reads it and times nothing,
 * and every candidate the tuner may pick agrees with the float64 oracle (fresh inputs, poisoned outputs).
 */
import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "../kernels/device.ts";
import { blockMaskOf, makeCall, runAgainstOracle } from "../kernels/helpers.ts";
import { flexNodes } from "../../lib/attention/flex_attention.ts";
import { flexConfigOverride, flexTuneCandidates } from "../../lib/lower/flex_config.ts";
import { flexProblemOf, planFlexF32 } from "../../lib/lower/plan_flex.ts";
import { tuneEvents } from "../../lib/runtime/autotune.ts";
import { createGpuExecutor } from "../../lib/runtime/gpu_executor.ts";
import { tuneCacheDir } from "../../lib/runtime/tune_store.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { InvalidArgument } from "../../lib/errors.ts";
import type { MaskMod } from "../../lib/mods/trace.ts";
import type { FlexForwardConfig } from "../../kernels/flex_forward.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const dir = g.Deno ? g.Deno.makeTempDirSync({ prefix: "flex-tune-" }) : (await import("node:fs")).mkdtempSync("/tmp/flex-tune-");
if (g.Deno) g.Deno.env.set("FLEX_TUNE_CACHE", dir); else g.process.env.FLEX_TUNE_CACHE = dir;

const causal: MaskMod = (_b, _h, q, kv) => q.ge(kv);

describe("autotune", () => {
  const run = it.skipIf(skipReason);

  it("kernelOptions.autotune is validated on every executor", () => {
    expect(() => makeCall({ Sq: 64, D: 32, options: { kernelOptions: { autotune: "fast" as "max" } } })).toThrow(InvalidArgument);
    expect(() => makeCall({ Sq: 64, D: 32, options: { kernelOptions: { blockM: 3 } } })).toThrow(InvalidArgument);
    expect(() => makeCall({ Sq: 64, D: 32, options: { kernelOptions: { splitKv: 0 } } })).toThrow(InvalidArgument);
    expect(() => makeCall({ Sq: 64, D: 32, options: { kernelOptions: { tile: 4 } as never } })).toThrow(/not an option/);
    expect(tuneCacheDir()).toBe(dir);
  });

  run("times the candidates once, uses the winner, persists it; a second executor reads it and times nothing", async () => {
    setPoison(true);
    const opts = { blockMask: blockMaskOf(causal, 1, 1, 192, 192, 64), kernelOptions: { autotune: "max" as const } };
    const before = tuneEvents.length;
    const r = await runAgainstOracle(makeCall({ Sq: 192, D: 32, options: opts }));
    expect(r.errOut).toBeLessThanOrEqual(1e-4);
    expect(tuneEvents.length).toBe(before + 1);
    const ev = tuneEvents[tuneEvents.length - 1];
    expect(ev.timings.length).toBeGreaterThanOrEqual(2);
    expect(ev.timings.every((t) => t.ms > 0)).toBe(true);
    const best = Math.min(...ev.timings.map((t) => t.ms));
    expect(ev.timings.find((t) => t.candidate === ev.winner)!.ms).toBe(best);
    // a new call with the same key (new length too): no timing
    await runAgainstOracle(makeCall({ Sq: 256, D: 32, options: { ...opts, blockMask: blockMaskOf(causal, 1, 1, 256, 256, 64) } }));
    expect(tuneEvents.length).toBe(before + 1);
    // the file holds the key under this device's section
    const file = JSON.parse(g.Deno ? g.Deno.readTextFileSync(`${dir}/flex-tune-v1.json`) : (await import("node:fs")).readFileSync(`${dir}/flex-tune-v1.json`, "utf8"));
    expect(Object.values(file).some((sec) => Object.keys(sec as object).includes(ev.key))).toBe(true);
    // a fresh executor on the same device (what a second process sees): reads the cache, times nothing
    const second = createGpuExecutor(gpu.device, gpu.caps, gpu.info);
    const call = makeCall({ Sq: 192, D: 32, options: opts });
    const { out } = flexNodes(call);
    const [o] = await Effect.runPromise(second.realize([out]));
    expect(tuneEvents.length).toBe(before + 1);
    expect(o.length).toBe(out.size);
    second.dispose();
  });

  run("every candidate the tuner may pick agrees with the oracle", async () => {
    setPoison(true);
    const call = makeCall({ Sq: 150, Skv: 130, D: 64, options: { blockMask: blockMaskOf(causal, 1, 1, 150, 130, 64) } });
    const cands = flexTuneCandidates(flexProblemOf(call), gpu.caps);
    expect(cands.length).toBeGreaterThanOrEqual(2);
    for (const c of cands) {
      const plan = planFlexF32(call, gpu.caps, c as FlexForwardConfig);
      expect(plan.launches[0].label).toContain(`BM${c.BM} BN${c.BN}`);
      // the planner pinned to exactly this candidate (a fresh call: plans are cached per node)
      flexConfigOverride.pick = () => c;
      try {
        const r = await runAgainstOracle({ ...call });
        expect({ c: plan.launches[0].label, out: r.errOut <= 1e-4, lse: r.errLse <= 1e-4 }).toEqual({ c: plan.launches[0].label, out: true, lse: true });
      } finally {
        flexConfigOverride.pick = undefined;
      }
    }
  });
});

releaseGpuAfterAll();
