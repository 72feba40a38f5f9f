/**
 * lib/runtime/tiered_compile.ts's queue, on a stand-in pipeline cache (no GPU): background compiles start one at a
 * time in the order the plans asked for them, the next only once the one before has settled (also when it failed);
 * a plan whose launches are not all compiled answers from its quick plan, then from itself.
 */
import { describe, expect, it } from "../harness.ts";
import { createTiers, type PipelineCache } from "../../lib/runtime/tiered_compile.ts";
import type { KernelLaunch, NodePlan } from "../../lib/lower/plan.ts";

const launch = (label: string) => ({ label, code: label, entryPoint: "main", bindings: [], workgroups: [1, 1, 1] }) as unknown as KernelLaunch;
const plan = (labels: string[]): NodePlan => {
  const quick: NodePlan = { launches: [launch("quick")], defines: [], checks: [] };
  return { launches: labels.map(launch), defines: [], checks: [], quick: () => quick };
};

function fakeCache() {
  const ready = new Set<string>(), started: string[] = [];
  const finish = new Map<string, (ok: boolean) => void>();
  const cache: PipelineCache = {
    keyOf: (l) => l.label,
    isReady: (k) => ready.has(k),
    has: (k) => ready.has(k) || finish.has(k),
    compileInBackground: (_l, k) => {
      started.push(k);
      return new Promise<void>((resolve, reject) => finish.set(k, (ok) => { if (ok) { ready.add(k); resolve(); } else reject(new Error(k)); }));
    },
    compileNow: (_l, k) => void ready.add(k),
  };
  return { cache, started, finish: (k: string, ok = true) => finish.get(k)!(ok) };
}
// a few macrotasks: each start waits one (the realize that queued it resumes its caller first)
const tick = async () => { for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0)); };

describe("tiered compile queue", () => {
  it("starts background compiles one after another, in the order asked, past a failed one", async () => {
    const f = fakeCache();
    const tiers = createTiers(true, f.cache);
    const a = plan(["a1", "a2"]), b = plan(["b1"]);
    expect(tiers.choose(a).launches[0].label).toBe("quick");
    expect(tiers.choose(b).launches[0].label).toBe("quick");
    await tick();
    expect(f.started).toEqual([]); // nothing before the realize that answered has read back
    tiers.startQueued();
    await tick();
    expect(f.started).toEqual(["a1"]);
    f.finish("a1");
    await tick(); await tick();
    expect(f.started).toEqual(["a1", "a2"]);
    expect(tiers.choose(a).launches[0].label).toBe("quick"); // a2 still compiling
    f.finish("a2", false);
    await tick(); await tick();
    expect(f.started).toEqual(["a1", "a2", "b1"]);
    f.finish("b1");
    await tiers.settled();
    expect(tiers.choose(b).launches[0].label).toBe("b1");
    expect(tiers.stats().pending).toBe(0);
  });
});
