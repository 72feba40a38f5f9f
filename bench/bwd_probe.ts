/**
 * Device probe of the portable f32 backward (kernels/flex_backward.ts) at B4 H16 S4096 D64 (FLEX_WEBGPU=dawn):
 *   1. forward and backward ms of noop, causal and alibi + causal (16 captured slopes: their gradient is summed),
 *      bwd = profile(forward + backward) − profile(forward), and the ratios the issue (#8) targets
 *   2. each backward launch's share: the same profile with only some launches dispatched (setFlexBwdProbe `only`;
 *      the others become zero-workgroup launches), differences of consecutive sets
 *   1b. the dS' path (setFlexBwdProbe({ dqFromDs: true }), lib/lower/plan_flex_grad_ds.ts) beside the default:
 *      full backward, and its dK/dV-storing and dQ-from-dS' launches' shares (noop, causal; alibi's learnable slopes
 *      keep the fused dQ kernel), plus a rel. L2 of its dq/dk/dv against the default path's on the same inputs
 *   3. config sweep: dq and dk/dv candidates timed one kernel at a time (noop and causal), then the full backward
 *      with the best pair pinned
 * BWD_PROBE_PARTS (default "default,ds,shares,sweep") picks the parts after 1, which always runs (1b needs its times).
 * Each time: a warm-up profile of one iteration (it compiles), then the best of REPS profiles of ~100 ms of work.
 * Prints one line per measurement and a JSON line per row (prefix "json ").
 *   bash .gpu/on-device.sh deno run -A bench/bwd_probe.ts      (BWD_PROBE_S=4096 BWD_PROBE_REPS=3 BWD_PROBE_SWEEP=6 BWD_PROBE_SPREAD=1)
 */
import { Effect } from "effect";
import { createBlockMask, flexAttention, randn, type Tensor, vjp } from "../mod.ts";
import { deviceInfo, getExecutor } from "../lib/runtime/mod.ts";
import type { FlexCall } from "../lib/attention/flex_attention.ts";
import { flexBackwardSource, setFlexBwdProbe } from "../lib/lower/plan_flex_grad.ts";
import { flexBwdCandidates, flexBwdScore } from "../lib/lower/flex_bwd_config.ts";
import type { FlexBwdConfig, FlexBwdMode } from "../kernels/flex_backward.ts";
import { buildCase, type CaseName } from "./cases.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const S = Number(env("BWD_PROBE_S", "4096"));
const REPS = Number(env("BWD_PROBE_REPS", "3"));
const SWEEP = Number(env("BWD_PROBE_SWEEP", "6"));
const SPREAD = env("BWD_PROBE_SPREAD", "1") !== "0"; // 0: the heuristic's first SWEEP / 2 only (a quick local run)
const PARTS = new Set(env("BWD_PROBE_PARTS", "default,ds,shares,sweep").split(","));
const [B, H, D] = [4, 16, 64];
const t0 = performance.now();
const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

const info = await deviceInfo();
const ex = await getExecutor();
console.log(`device: ${info.provider} ${info.adapter}; workgroup storage ${ex.caps.limits.maxComputeWorkgroupStorageSize} B`);
const json = (o: Record<string, unknown>) => console.log(`json ${JSON.stringify(o)}`);

const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
async function best(roots: Tensor[]): Promise<number> {
  const one = await profile(roots, 1);
  const n = Math.max(1, Math.min(10, Math.ceil(100 / one)));
  let min = Infinity;
  for (let i = 0; i < REPS; i++) min = Math.min(min, await profile(roots, n));
  return min;
}

/**
 * `grads()` builds fresh gradient nodes: the executor caches a node's plan (WeakMap per Tensor), so a probe
 * setting (setFlexBwdProbe) takes effect only on nodes planned after it; reusing one set of nodes across
 * settings timed the first plan every time (the 2026-12-01 device call's shares and sweep, void).
 */
interface Setup { name: CaseName; out: Tensor; grads: () => Tensor[]; call: FlexCall }
// one set of inputs for every case (fresh random values; the timings do not depend on them)
const [q, k, v, dOut] = [0, 1, 2, 3].map(() => randn([B, H, S, D]));
async function setup(name: CaseName): Promise<Setup> {
  const c = buildCase(name, S, H);
  const blockMask = c.mask ? await createBlockMask(c.mask, null, null, S, S) : undefined;
  const opts = { blockMask, scoreMod: c.scoreMod };
  const out = flexAttention(q, k, v, opts);
  const grads = () => vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v)[1](dOut);
  const [y] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
  return { name, out, grads, call: y.arg as FlexCall };
}
const key = (c: FlexBwdConfig) => `BA${c.BA} TA${c.TA} G${c.G} BB${c.BB} DK${c.DK} NV${c.NV}`;

const cases = await Promise.all((["noop", "causal", "alibi"] as const).map(setup));
const fwd = new Map<string, number>();
const bwd = new Map<string, number>();

// ---- 1. default configs
for (const s of cases) {
  setFlexBwdProbe({});
  const f = await best([s.out]);
  const b = (await best(s.grads())) - f;
  fwd.set(s.name, f);
  bwd.set(s.name, b);
  const cfg = (m: FlexBwdMode) => key(flexBackwardSource(s.call, m, ex.caps).config);
  console.log(`[${at()}] ${s.name}: fwd ${f.toFixed(3)} ms, bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / f).toFixed(2)}  (dq ${cfg("dq")}, dkdv ${cfg("dkdv")})`);
  json({ part: "default", case: s.name, fwd_ms: f, bwd_ms: b, dq: cfg("dq"), dkdv: cfg("dkdv") });
}
console.log(`alibi bwd / causal bwd = ${(bwd.get("alibi")! / bwd.get("causal")!).toFixed(2)} (target ≤ 1.3)`);

// ---- 1b. the dS' path beside the default (same inputs; fresh nodes per setting)
const relL2 = (a: Float32Array, b: Float32Array) => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
};
if (PARTS.has("ds")) {
  for (const s of cases.slice(0, 2)) {
    setFlexBwdProbe({ dqFromDs: true });
    const b = (await best(s.grads())) - fwd.get(s.name)!;
    setFlexBwdProbe({ dqFromDs: true, only: ["flex_bwd_preprocess", "flex_bwd_dkdv_ds"] });
    const tk = await best(s.grads());
    setFlexBwdProbe({ dqFromDs: true, only: ["flex_bwd_preprocess", "flex_bwd_dq_ds"] });
    const tq = await best(s.grads());
    setFlexBwdProbe({ only: ["flex_bwd_preprocess"] });
    const tp = await best(s.grads());
    // agreement with the default path (both f32; the oracle checks are the tests')
    setFlexBwdProbe({ dqFromDs: true });
    const a = await Promise.all(s.grads().map((g) => g.toArray())) as Float32Array[];
    setFlexBwdProbe({});
    const d = await Promise.all(s.grads().map((g) => g.toArray())) as Float32Array[];
    const err = a.map((x, i) => relL2(x, d[i]));
    const def = bwd.get(s.name)!, f = fwd.get(s.name)!;
    console.log(`[${at()}] ${s.name} dS' path: bwd ${b.toFixed(3)} ms (default ${def.toFixed(3)}), bwd/fwd ${(b / f).toFixed(2)} (default ` +
      `${(def / f).toFixed(2)}); shares: dkdv+ds ${(tk - tp).toFixed(3)}, dq from ds ${(tq - tp).toFixed(3)}; ` +
      `rel. L2 vs default dq ${err[0].toExponential(1)} dk ${err[1].toExponential(1)} dv ${err[2].toExponential(1)}`);
    json({ part: "ds", case: s.name, bwd_ms: b, default_bwd_ms: def, fwd_ms: f, dkdv_ds_ms: tk - tp, dq_ds_ms: tq - tp, rel_l2: err });
  }
  setFlexBwdProbe({});
}

// ---- 2. per-launch shares (default configs)
const SETS: [string, string[]][] = [
  ["none", []],
  ["preprocess", ["flex_bwd_preprocess"]],
  ["dkdv", ["flex_bwd_preprocess", "flex_bwd_dkdv"]],
  ["dq", ["flex_bwd_preprocess", "flex_bwd_dq"]],
  ["dq+reduce", ["flex_bwd_preprocess", "flex_bwd_dq", "flex_bwd_reduce", "flex_bwd_finalize"]],
];
for (const s of PARTS.has("shares") ? cases : []) {
  const t: Record<string, number> = {};
  for (const [name, only] of SETS) {
    if (name === "dq+reduce" && s.name !== "alibi") continue;
    setFlexBwdProbe({ only });
    t[name] = await best(s.grads());
  }
  setFlexBwdProbe({});
  const share = {
    preprocess: t.preprocess - t.none, dkdv: t.dkdv - t.preprocess, dq: t.dq - t.preprocess,
    ...(t["dq+reduce"] !== undefined ? { reduce: t["dq+reduce"] - t.dq } : {}),
  };
  console.log(`[${at()}] ${s.name} shares (ms): ${Object.entries(share).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}` +
    ` (forward + copies ${t.none.toFixed(3)})`);
  json({ part: "shares", case: s.name, ...share, base_ms: t.none });
}

// ---- 3. config sweep, one kernel at a time
const problem = { D, Dv: D, ownerBlock: 128, streamBlock: 128 }; // both modes: square 128 blocks
const winners: Partial<Record<FlexBwdMode, FlexBwdConfig>> = {};
for (const mode of PARTS.has("sweep") ? (["dq", "dkdv"] as const) : []) {
  const p = problem;
  const all = flexBwdCandidates(mode, p, ex.caps).sort((a, b) => flexBwdScore(b, p) - flexBwdScore(a, p));
  // the heuristic's first few, then a spread of register tiles (TA·BB/G) the score does not tell apart
  const picked: FlexBwdConfig[] = [];
  const seen = new Set<string>();
  const take = (c: FlexBwdConfig) => { const k = `${c.BA}/${c.TA}/${c.G}/${c.BB}`; if (!seen.has(k)) { seen.add(k); picked.push(c); } };
  all.slice(0, Math.ceil(SWEEP / 2)).forEach(take);
  for (const [BA, G, BB] of [[64, 8, 64], [64, 8, 32], [32, 8, 64], [128, 16, 64], [64, 4, 32], [128, 8, 64], [32, 4, 32]]) {
    const c = all.find((x) => x.BA === BA && x.TA === 4 && x.G === G && x.BB === BB);
    if (c && SPREAD && picked.length < SWEEP + 4) take(c);
  }
  let bestMs = Infinity;
  const bases: number[] = [];
  for (const s of cases.slice(0, 2)) {
    setFlexBwdProbe({ only: ["flex_bwd_preprocess"] });
    bases.push(await best(s.grads()));
  }
  for (const c of picked) {
    const times: number[] = [];
    for (const [i, s] of cases.slice(0, 2).entries()) {
      const base = bases[i];
      setFlexBwdProbe({ [mode]: c, only: ["flex_bwd_preprocess", `flex_bwd_${mode}`] });
      times.push((await best(s.grads())) - base);
    }
    const sum = times[0] + times[1];
    console.log(`[${at()}] ${mode} ${key(c)} threads ${(c.BA / c.TA) * c.G}: noop ${times[0].toFixed(3)} ms, causal ${times[1].toFixed(3)} ms` +
      ` (score ${flexBwdScore(c, p).toFixed(3)})`);
    json({ part: "sweep", mode, config: key(c), noop_ms: times[0], causal_ms: times[1] });
    if (sum < bestMs) { bestMs = sum; winners[mode] = c; }
  }
  console.log(`best ${mode}: ${key(winners[mode]!)}`);
}

// ---- full backward with the winners pinned (alibi keeps its dq default: the capture merge needs its own memory)
for (const s of winners.dq && winners.dkdv ? cases : []) {
  setFlexBwdProbe(s.name === "alibi" ? { dkdv: winners.dkdv } : { dq: winners.dq, dkdv: winners.dkdv });
  const b = (await best(s.grads())) - fwd.get(s.name)!;
  console.log(`[${at()}] ${s.name} pinned: bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / fwd.get(s.name)!).toFixed(2)}`);
  json({ part: "pinned", case: s.name, bwd_ms: b, dq: s.name === "alibi" ? "default" : key(winners.dq!), dkdv: key(winners.dkdv!) });
}
setFlexBwdProbe({});
console.log(`done [${at()}]`);
