/**
 * Tiered compilation, the executor's side (issue #12: a new mod's kernel ready ≤ 250 ms). A plan with a `quick`
 * alternative (NodePlan.quick: the tensor family's forward, chosen automatically; lib/lower/tiers.ts) whose
 * pipelines are not all compiled yet is scheduled as its quick plan (the portable f16 path, ~0.16 s to compile on
 * the H200) while its own pipelines compile in the background through createComputePipelineAsync (off the JS
 * thread under Dawn: bench/async_compile_probe.ts). Once they are ready, later realizes schedule the plan itself.
 *
 * - The background compiles start when the realize that answered from the quick plan has read its results back
 *   (startQueued): on lavapipe a dispatch submitted while Dawn compiled a pipeline asynchronously waited for that
 *   compile (bench/async_compile_probe.ts), which would have made the first result wait for the slow kernel after all.
 * - Background compiles run one at a time, in the order the plans asked for them (the first walk's kernel before the
 *   second walk's), so they do not crowd the driver while the next new mod's quick plan compiles.
 * - A background compile that fails is not lost: its KernelCompileError is kept and the next realize of a plan
 *   that needs the pipeline fails with it; from then on that pipeline compiles synchronously (no tiering).
 * - A background compile that has not settled after GIVE_UP_MS (Dawn was once seen never to settle one on a loaded
 *   lavapipe) is abandoned: the plan compiles synchronously at its next realize.
 * - On by default under Dawn (its async compile runs on a worker thread); FLEX_TIERED=0 turns it off, FLEX_TIERED=1
 *   on for every provider. A pinned `kernelOptions.family` carries no quick plan, so it is never tiered.
 */
import type { KernelLaunch, NodePlan } from "../lower/plan.ts";
import type { ProviderName } from "./executor.ts";
import { readEnv } from "./env.ts";

/** How long a background compile may take before the executor compiles synchronously instead. */
export const GIVE_UP_MS = 20_000;

/** Whether an executor on `provider` tiers by default (FLEX_TIERED overrides: "0" off, "1" on). */
export function tieringEnabled(provider: ProviderName): boolean {
  const env = readEnv("FLEX_TIERED");
  if (env === "0") return false;
  if (env === "1") return true;
  return provider === "dawn";
}

/** What the tiers need of the executor's pipeline cache. */
export interface PipelineCache {
  /** The cache key of a launch's pipeline. */
  keyOf(launch: KernelLaunch): string;
  /** Whether the key's pipeline has compiled (settled, without error). */
  isReady(key: string): boolean;
  /** Whether a compile of the key is in flight or done (either tier). */
  has(key: string): boolean;
  /** Starts the launch's background compile (cached under its key; the promise settles when it is ready or failed). */
  compileInBackground(launch: KernelLaunch, key: string): Promise<unknown>;
  /** Replaces an unsettled background compile of the key by a synchronous one. */
  compileNow(launch: KernelLaunch, key: string): void;
}

/** Counts of the tiered plans' realizes: answered by the quick plan, or by the plan itself. */
export interface TierStats { quick: number; fast: number; pending: number }

export interface Tiers {
  /** The plan to schedule for `plan`: itself, or its quick plan while its pipelines compile in the background. */
  choose(plan: NodePlan): NodePlan;
  /** Starts the background compiles that choose() queued (the executor calls it after each realize). */
  startQueued(): void;
  /** A key whose background compile failed: it compiles synchronously from now on. */
  failed(key: string): void;
  /** Resolves when every background compile started so far has settled (tests and benches await it). */
  settled(): Promise<void>;
  stats(): TierStats;
  /** Before the device goes: compiles not started yet never start, and the ones in flight are awaited (a bounded
   * time each) — Dawn aborted the process (exit 134) when the device was destroyed under an async compile. */
  drain(): Promise<void>;
  /** Forgets the quick plans and in-flight records (the executor's dispose). */
  reset(): void;
}

const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** Settles with `done`, or after GIVE_UP_MS: a compile that never settles holds the queue's next one back no longer. */
function settledOrLate(done: Promise<unknown>): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, GIVE_UP_MS); });
  return Promise.race([done, late]).finally(() => clearTimeout(timer));
}

export function createTiers(enabled: boolean, cache: PipelineCache): Tiers {
  let quickPlans = new WeakMap<NodePlan, NodePlan>();
  let keys = new WeakMap<NodePlan, { launch: KernelLaunch; key: string }[]>();
  const pending = new Map<string, { since: number; done: Promise<unknown> }>();
  /** Compiles choose() asked for, started by startQueued (the promise resolves when the compile has settled). */
  const queued = new Map<string, { launch: KernelLaunch; start: (go: boolean) => void; done: Promise<unknown> }>();
  const noTier = new Set<string>();
  const stats: TierStats = { quick: 0, fast: 0, pending: 0 };
  // background compiles run one after another (each starts when the one before has settled): the second walk's
  // kernel of an optimisticMax forward compiled beside its first walk's, and both beside the next mod's quick plan,
  // took the first result of that next mod from ~160 to ~220 ms on the H200 (session 10's kernel_ready runs)
  let chain: Promise<unknown> = Promise.resolve();
  let draining = false;
  const startQueued = () => {
    // each start a macrotask later: creating the module and the async pipeline runs WGSL parsing on this thread, and
    // the realize that queued it resolves its caller first (microtasks would run the start before the caller resumes)
    for (const q of queued.values()) {
      chain = chain.then(nextTask).then(() => { q.start(!draining); return draining ? undefined : settledOrLate(q.done); });
    }
    queued.clear();
  };

  const launchKeys = (plan: NodePlan) => {
    let k = keys.get(plan);
    if (!k) {
      // a launch over nothing is never compiled (the executor skips it)
      k = plan.launches.filter((l) => l.workgroups.every((n) => n > 0)).map((launch) => ({ launch, key: cache.keyOf(launch) }));
      keys.set(plan, k);
    }
    return k;
  };

  return {
    choose(plan) {
      if (!enabled || !plan.quick) return plan;
      const needed = launchKeys(plan);
      if (needed.every(({ key }) => cache.isReady(key))) { stats.fast++; return plan; }
      let waitSync = false;
      for (const { launch, key } of needed) {
        if (cache.isReady(key)) continue;
        if (noTier.has(key)) { waitSync = true; continue; }
        const p = pending.get(key);
        if (p && performance.now() - p.since > GIVE_UP_MS) {
          noTier.add(key);
          pending.delete(key);
          cache.compileNow(launch, key);
          waitSync = true;
          continue;
        }
        if (!p && cache.has(key)) { waitSync = true; continue; } // a synchronous compile of it is in flight already
        if (!p) {
          let start = (_go: boolean) => {};
          // go = false (the executor is draining): settles without compiling
          const done = new Promise<boolean>((resolve) => { start = resolve; })
            .then((go) => go ? cache.compileInBackground(launch, key) : undefined).then(() => {}, () => {});
          const entry = { since: Infinity, done };
          pending.set(key, entry);
          queued.set(key, { launch, start: (go: boolean) => { entry.since = performance.now(); start(go); }, done });
          void done.then(() => { if (pending.get(key) === entry) pending.delete(key); });
        }
      }
      // a failed or abandoned background compile: the plan itself (its error surfaces, or it compiles now)
      if (waitSync) { stats.fast++; return plan; }
      let quick = quickPlans.get(plan);
      if (!quick) { quick = plan.quick(); quickPlans.set(plan, quick); }
      stats.quick++;
      return quick;
    },
    startQueued,
    failed(key) { noTier.add(key); },
    async settled() {
      startQueued();
      while (pending.size > 0) await Promise.all([...pending.values()].map((p) => p.done));
    },
    stats: () => ({ ...stats, pending: pending.size }),
    async drain() {
      draining = true;
      for (const q of queued.values()) q.start(false);
      queued.clear();
      await Promise.all([...pending.values()].map((p) => settledOrLate(p.done)));
    },
    reset() {
      quickPlans = new WeakMap();
      keys = new WeakMap();
      pending.clear();
      queued.clear();
      noTier.clear();
    },
  };
}
