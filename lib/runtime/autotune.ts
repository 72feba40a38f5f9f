/**
 * The autotuner's loop (`kernelOptions.autotune: "max"`): before a realize is planned, every flex node that
 * asks for it and whose key has no winner yet (in this executor's table or the persisted cache) has its
 * candidate configs timed on the device (GPU timestamps where available) with the call's own inputs — all compiled
 * first, then timed back to back after a warm-up, so a GPU's idle clocks do not favour the fast compilers; the
 * fastest is recorded in `caps.tuned` (which planning reads) and persisted. A candidate that fails to
 * compile or run is skipped. On a terminal, a progress bar on stderr shows the timing.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "../lower/capabilities.ts";
import type { NodePlan } from "../lower/plan.ts";
import { tuneJobOf } from "../lower/flex_tune.ts";
import { openTuneStore, type TuneStore } from "./tune_store.ts";
import { progress } from "./progress.ts";
import { logDebug, logInfo, ms } from "./log.ts";

export interface TuneHooks {
  /** Plans of the inputs of a plan (what must run before it), in order. */
  readonly scheduleInputs: (plan: NodePlan) => NodePlan[];
  /** GPU ms per run of `order` (compiles on first use). */
  readonly time: (order: readonly NodePlan[], iters: number) => Promise<number>;
  /** adapter + provider: the section of the persisted cache. */
  readonly device: string;
}

/** GPU ms of back-to-back launches before the first timing (clocks up), the target ms of one timing, launches per
 * timing at most, and interleaved rounds (each candidate's best counts). */
const WARM_MS = 200, TIMING_MS = 20, MAX_LAUNCHES = 50, TIMING_ROUNDS = 2;

export interface TuneEvent { readonly key: string; readonly timings: readonly { candidate: unknown; ms: number }[]; readonly winner: unknown }

/** Called with every finished search (tests and the bench read it). */
export const tuneEvents: TuneEvent[] = [];

export function createTuner(caps: Capabilities & { tuned: Map<string, unknown> }, hooks: TuneHooks) {
  let store: Promise<TuneStore> | undefined;
  const inFlight = new Map<string, Promise<void>>();

  const search = async (job: NonNullable<ReturnType<typeof tuneJobOf>>, s: TuneStore): Promise<void> => {
    const persisted = s.get(job.key);
    if (persisted !== undefined) {
      logDebug(() => `autotune: ${job.label}: persisted winner ${JSON.stringify(persisted)}`);
      caps.tuned.set(job.key, persisted);
      return;
    }
    const bar = progress("autotune", 2 * job.candidates.length);
    bar.update(0, job.label);
    // 1. compile and run every candidate once: the compiles (up to seconds each on some drivers) leave the GPU idle,
    //    and an idle GPU drops its clocks (the H200: 1980 → 345 MHz within a second), so no timing happens among them
    // ms: the one-launch estimate; best: the fastest timing of the rounds below
    const ready: { candidate: unknown; order: NodePlan[]; ms: number; best: number }[] = [];
    for (const [i, candidate] of job.candidates.entries()) {
      try {
        const plan = job.plan(candidate);
        const order = [...hooks.scheduleInputs(plan), plan];
        const ms = await hooks.time(order, 1);
        ready.push({ candidate, order, ms: Number.isFinite(ms) && ms > 0 ? ms : 1, best: Infinity });
      } catch (e) {
        // a candidate that does not compile or run on this device is not a candidate
        logDebug(() => `autotune: ${job.label}: ${JSON.stringify(candidate)} failed: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      }
      bar.update(i + 1);
    }
    // 2. warm the clocks with back-to-back work (≥ WARM_MS of GPU time), then 3. time the candidates back to back,
    //    in TIMING_ROUNDS interleaved rounds (drift hits every candidate alike), ≈ TIMING_MS of launches per timing
    const timings: { candidate: unknown; ms: number }[] = [];
    if (ready.length > 0) {
      const launches = (est: number, target: number) => Math.max(1, Math.min(MAX_LAUNCHES, Math.ceil(target / est)));
      let warm = 0;
      for (let n = 0; warm < WARM_MS && n < 64; n++) {
        const k = launches(ready[0].ms, WARM_MS / 4);
        const ms = await hooks.time(ready[0].order, k);
        warm += (Number.isFinite(ms) && ms > 0 ? ms : ready[0].ms) * k;
      }
      for (let round = 0; round < TIMING_ROUNDS; round++) {
        for (const r of ready) {
          try {
            const ms = await hooks.time(r.order, launches(r.ms, TIMING_MS));
            if (Number.isFinite(ms)) r.best = Math.min(r.best, ms);
          } catch (e) {
            logDebug(() => `autotune: ${job.label}: ${JSON.stringify(r.candidate)} failed while timed: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
          }
        }
      }
      for (const [i, r] of ready.entries()) {
        if (Number.isFinite(r.best)) timings.push({ candidate: r.candidate, ms: r.best });
        logDebug(() => `autotune: ${job.label}: ${JSON.stringify(r.candidate)} ${Number.isFinite(r.best) ? r.best.toFixed(3) + " ms" : "no time"}`);
        bar.update(job.candidates.length + i + 1);
      }
    }
    bar.done();
    if (timings.length === 0) { logInfo(`autotune: ${job.label}: no candidate ran; the heuristic config stays`); return; }
    const best = timings.reduce((a, b) => (b.ms < a.ms ? b : a));
    const winner = best.candidate;
    logInfo(() => `autotune: ${job.label}: winner ${JSON.stringify(winner)} (${ms(best.ms)} of ${timings.length} timed)`);
    caps.tuned.set(job.key, winner);
    tuneEvents.push({ key: job.key, timings, winner });
    await s.set(job.key, winner);
  };

  /** Tunes every node of the graph that asks for it (each key once, also across concurrent realizes). */
  return async (roots: readonly Tensor[]): Promise<void> => {
    const jobs = new Map<string, NonNullable<ReturnType<typeof tuneJobOf>>>();
    const seen = new Set<Tensor>();
    const stack = [...roots];
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      const job = tuneJobOf(t, caps);
      if (job && !caps.tuned.has(job.key)) jobs.set(job.key, job);
      stack.push(...t.inputs);
    }
    if (jobs.size === 0) return;
    store ??= openTuneStore(hooks.device);
    const s = await store;
    for (const [key, job] of jobs) {
      let p = inFlight.get(key);
      if (!p) {
        p = search(job, s).finally(() => inFlight.delete(key));
        inFlight.set(key, p);
      }
      await p;
    }
  };
}
