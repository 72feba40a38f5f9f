/**
 * Where the f16 backward's time goes, per launch: the exact graph bench/table.ts times (vjp of flexAttention on f16
 * q, k, v from the same seeds, its dOut), on the default plan.
 *   1. the table's number: bwd = warmBest(forward + backward in one realize) − warmBest(forward)
 *   2. one more profile of the backward realize with lib/runtime/debug.ts setLaunchTrace on: every launch in a pass of
 *      its own between two timestamps, the last iterations of the submit stamped; per launch its label, grid, median
 *      and min GPU ms, and the sum against the profile's total
 *   3. the phases of the traced profile's realize, if it realizes (setRealizeTrace; the executor realizes only a
 *      profile's first call of its roots now: the realize's readbacks idled the GPU and its clocks dropped)
 * Env: FLEX_BD_CASES (bench/cases.ts names, default noop,causal,sliding_window,document,softcap), FLEX_BD_SIZE
 * (B,H,S,D, default 4,16,4096,64), FLEX_BD_ITERS (iterations of the traced profile, default 12),
 * FLEX_BD_OVERRIDES (JSON {name: bwdTensorOverride}: variants traced beside the default), FLEX_BENCH_WARM_MS (200),
 * FLEX_BD_FAMILY (kernelOptions.family of the calls; default none, as the table), FLEX_PROFILE_WARM_MS (default 100 here).
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/tensor_bwd_breakdown.ts
 * Session 9's own-rows dK/dV variants (untimed: no device time was left), e.g. FLEX_BD_OVERRIDES='{"ownfs":{"ownerDirect":false,
 * "streamDirect":false,"ownRows":true,"oneFs":true}}'; knobs ownRows, oneFs, ownerSmem and a pinned "shape" (bwdTensorOverride);
 * check them first with bench/tensor_bwd_probe.ts (FLEX_PROBE_OVERRIDES / FLEX_PROBE_VARIANTS, the same JSON).
 */
import { Effect } from "effect";
import { createBlockMask, flexAttention, type Tensor, tensor, vjp } from "../mod.ts";
import { deviceInfo, getExecutor } from "../lib/runtime/mod.ts";
import { randn } from "../lib/tensor/tensor.ts";
import { type LaunchTrace, type RealizeTrace, setLaunchTrace, setRealizeTrace } from "../lib/runtime/debug.ts";
import { setBwdTensorOverride } from "../lib/lower/flex_bwd_tensor_config.ts";
import { buildCase, type CaseName } from "./cases.ts";
import { warmBest, warmProfilesByDefault } from "./warm_best.ts";

const env = (k: string) => Deno.env.get(k);
// the executor's warm-up inside each timed submit (lib/runtime/gpu_executor.ts): 100 ms unless set
warmProfilesByDefault();
const t0 = performance.now();
const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
const info = await deviceInfo();
const ex = await getExecutor();
console.log(`device: ${info.provider} ${info.adapter}; timestamps ${ex.caps.features.has("timestamp-query")}; matrices ${ex.caps.subgroupMatrixConfigs.length > 0}`);

const [B, H, S, D] = (env("FLEX_BD_SIZE") ?? "4,16,4096,64").split(",").map(Number);
const ITERS = Number(env("FLEX_BD_ITERS") ?? 12);
const WARM_MS = Number(env("FLEX_BENCH_WARM_MS") ?? 200);
type Override = Parameters<typeof setBwdTensorOverride>[0];
// FLEX_BD_DEFAULT=0: only the FLEX_BD_OVERRIDES variants
const variants: [string, Override][] = [...(env("FLEX_BD_DEFAULT") === "0" ? [] : [["default", null] as [string, Override]]), ...Object.entries(JSON.parse(env("FLEX_BD_OVERRIDES") ?? "{}") as Record<string, Override>)];
const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
const best = (roots: Tensor[]) => warmBest(profile, roots, { warmMs: WARM_MS, maxWarm: 1000, maxN: 20, targetMs: 100, reps: 3 });
const torch = Deno.readTextFileSync(new URL("./torch_h200.jsonl", import.meta.url)).split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l) as { case: string; dtype: string; shape: string; bwd_ms?: number });

// the table's inputs: f32 randn of seeds 1–4, stored as f16
const [q, k, v, dOut] = [1, 2, 3, 4].map((seed) => randn([B, H, S, D], { seed })).map((t) => tensor(t.data!, t.shape, { dtype: "f16" }));
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f3 = (x: number) => x.toFixed(3);

for (const name of (env("FLEX_BD_CASES") ?? "noop,causal,sliding_window,document,softcap").split(",")) {
  const c = buildCase(name as CaseName, S, H);
  const blockMask = c.mask ? await createBlockMask(c.mask, null, null, S, S) : undefined;
  // FLEX_BD_FAMILY=tensor: kernelOptions.family "tensor" (a local smoke run of the emulated family on lavapipe)
  const family = env("FLEX_BD_FAMILY") as "tensor" | "portable" | undefined;
  const opts = { blockMask, scoreMod: c.scoreMod, ...(family ? { kernelOptions: { family } } : {}) };
  const pt = torch.find((r) => r.case === name && r.dtype === "f16" && r.shape === `${B}x${H}x${S}x${D}`)?.bwd_ms;
  const fwdRoots = [flexAttention(q, k, v, opts)];
  const fwd = await best(fwdRoots);
  {
    let lt: LaunchTrace | undefined;
    setLaunchTrace((t) => { lt = t; });
    try { await profile(fwdRoots, ITERS); } finally { setLaunchTrace(undefined); }
    if (lt) console.log(`-- ${name} forward alone: ${lt.launches.map((l) => `${f3(median(l.ms))} ms ${l.label}`).join("; ")} (total ${f3(lt.totalMs)} ms/iter)`);
  }
  for (const [vname, o] of variants) {
    setBwdTensorOverride(o);
    try {
      const [, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
      const grads = back(dOut);
      const full = await best(grads);
      console.log(`== ${name} [${vname}] fwd ${f3(fwd)} ms, fwd + bwd ${f3(full)} ms → bwd ${f3(full - fwd)} ms` +
        (pt ? ` (PyTorch f16 bwd ${f3(pt)} ms: ${(100 * pt / (full - fwd)).toFixed(1)} %)` : "") + ` [${at()}]`);
      let lt: LaunchTrace | undefined, rt: RealizeTrace | undefined;
      setLaunchTrace((t) => { lt = t; });
      setRealizeTrace((t) => { rt = t; });
      try { await profile(grads, ITERS); } finally { setLaunchTrace(undefined); setRealizeTrace(undefined); }
      if (rt) {
        console.log(`   the profile's realize: host ${f3(rt.hostMs)} ms, wait ${f3(rt.waitMs)} (readback copy ${f3(rt.readMs)}), finish ${f3(rt.finishMs)}, ` +
          `wall ${f3(rt.wallMs)} ms, GPU ${rt.gpuMs === undefined ? "n/a" : f3(rt.gpuMs)} ms`);
      }
      if (!lt) { console.log("   no per-launch trace (no timestamp-query?)"); continue; }
      let sum = 0;
      for (const l of lt.launches) {
        const m = median(l.ms);
        sum += m;
        console.log(`   ${f3(m).padStart(8)} ms (min ${f3(Math.min(...l.ms))}, first ${f3(l.ms[0])})  [${l.workgroups.join("×")}]  ${l.label}`);
      }
      const perIter = Array.from({ length: lt.stamped }, (_, s) => lt!.launches.reduce((a, l) => a + l.ms[s], 0));
      console.log(`   Σ medians ${f3(sum)} ms; profile total ${f3(lt.totalMs)} ms/iter over ${lt.iters} iters; stamped iters Σ: ${perIter.map(f3).join(" ")}`);
    } catch (err) {
      console.log(`== ${name} [${vname}] ERROR ${err instanceof Error ? err.message : err}`);
    } finally {
      setBwdTensorOverride(null);
    }
  }
}
console.log(`done [${at()}]`);
Deno.exit(0);
