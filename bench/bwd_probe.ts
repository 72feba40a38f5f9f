/**
 * Device probe of the portable f32 backward (kernels/flex_backward.ts) at B4 H16 S4096 D64 (FLEX_WEBGPU=dawn):
 *   1. forward and backward ms of noop, causal and alibi + causal (16 captured slopes: their gradient is summed),
 *      bwd = profile(forward + backward) − profile(forward), and the ratios the issue (#8) targets
 *   1b. "ds": the dS' path (setFlexBwdProbe({ dqFromDs: true }), lib/lower/plan_flex_grad_ds.ts) beside the fused
 *      one: full backward each way, and the launches' shares: dK/dV storing dS', dQ from dS', and in the same run the
 *      plain dK/dV and the fused dQ (noop, causal; alibi's captured slopes keep the fused dQ kernel), plus a rel. L2
 *      and a bit-identity count of its dq/dk/dv against the fused path's on the same inputs
 *   1c. "dssweep": the dQ-from-dS' tilings (setFlexBwdProbe dqDs) timed alone, then the full dS' backward with the
 *      best pinned; "final": the defaults' shares, bit identity and session 6's default beside them; "layout": the compact dS' scratch against the dense one; "order": the dS' path's grids heads fastest (default) against tiles fastest; "kvsweep": its dK/dV
 *      kernel's tilings alone, then the best pinned; "dschunk": the full dS' backward with larger scratches (BWD_PROBE_CHUNK_MIB, a list: fewer
 *      launches); "dsvec": the dS' path with scalar dS' stores (setFlexBwdProbe dsScalarStore) against the vec4 ones;
 *      "cap": alibi's learnable slopes on the dS' path against the fused one (shares, bit identity); "onetile": dK/dV
 *      variants with one tile array (FlexBwdConfig.oneTile) and the memory it frees, pinned against the default
 *   2. "shares": each fused launch's share: the same profile with only some launches dispatched (setFlexBwdProbe
 *      `only`; the others become zero-workgroup launches), differences of consecutive sets
 *   3. "sweep": fused dq and dk/dv candidates timed one kernel at a time (noop and causal), then the full backward
 *      with the best pair pinned
 * BWD_PROBE_PARTS (default "ds,dsvec,dssweep,dschunk,shares,sweep") picks the parts after 1, which always runs;
 * BWD_PROBE_CASES (default noop,causal,alibi) the cases. First ≥ 1.5 s of back-to-back forwards (a GPU out of a
 * long idle ramps its clocks slower: the first row of the session-6 call 2 ran 1.46× slow after a 200 ms warm-up).
 * Each time: a profile of one iteration (it compiles, and the GPU's clock drops while it idles: the H200 goes
 * 1980 → 345 MHz within a second), ≥ WARM_MS of back-to-back launches in one submit (clocks up), then the best of
 * REPS profiles of ~100 ms of work. Prints one line per measurement and a JSON line per row (prefix "json ").
 *   bash .gpu/on-device.sh deno run -A bench/bwd_probe.ts      (BWD_PROBE_S=4096 BWD_PROBE_REPS=3 BWD_PROBE_SWEEP=6
 *   BWD_PROBE_SPREAD=1 BWD_PROBE_WARM_MS=200 BWD_PROBE_CHUNK_MIB=1024,2048)
 */
import { Effect } from "effect";
import { alibi, alibiSlopes, createBlockMask, explain, flexAttention, randn, type Tensor, vjp } from "../mod.ts";
import { deviceInfo, getExecutor } from "../lib/runtime/mod.ts";
import type { FlexCall } from "../lib/attention/flex_attention.ts";
import { type FlexBwdProbe, flexBackwardSource, setFlexBwdProbe } from "../lib/lower/plan_flex_grad.ts";
import { flexBwdCandidates, flexBwdScore } from "../lib/lower/flex_bwd_config.ts";
import { dqFromDsCandidates, dqFromDsConfig, dqFromDsScore, dsChunks } from "../lib/lower/plan_flex_grad_ds.ts";
import { type DqFromDsConfig, dqFromDsKey, dqFromDsThreads } from "../kernels/flex_bwd_dq_from_ds.ts";
import { type FlexBwdConfig, type FlexBwdMode, flexBwdSmemBytes, flexBwdThreads } from "../kernels/flex_backward.ts";
import { buildCase, type CaseName } from "./cases.ts";
import { warmBest } from "./warm_best.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const S = Number(env("BWD_PROBE_S", "4096"));
const REPS = Number(env("BWD_PROBE_REPS", "3"));
const SWEEP = Number(env("BWD_PROBE_SWEEP", "6"));
const SPREAD = env("BWD_PROBE_SPREAD", "1") !== "0"; // 0: the heuristic's first SWEEP / 2 only (a quick local run)
const WARM_MS = Number(env("BWD_PROBE_WARM_MS", "200"));
const CHUNK_MIB = env("BWD_PROBE_CHUNK_MIB", "1024,2048").split(",").map(Number);
const PARTS = new Set(env("BWD_PROBE_PARTS", "ds,dsvec,dssweep,dschunk,shares,sweep").split(","));
const CASES = env("BWD_PROBE_CASES", "noop,causal,alibi").split(",") as CaseName[];
const [B, H, D] = [4, 16, 64];
const t0 = performance.now();
const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

const info = await deviceInfo();
const ex = await getExecutor();
const lim = ex.caps.limits;
console.log(`device: ${info.provider} ${info.adapter}; workgroup storage ${lim.maxComputeWorkgroupStorageSize} B, ` +
  `storage binding ${lim.maxStorageBufferBindingSize} B, buffer ${lim.maxBufferSize} B, ${lim.maxComputeInvocationsPerWorkgroup} invocations`);
const json = (o: Record<string, unknown>) => console.log(`json ${JSON.stringify(o)}`);

const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
/** GPU ms of one run of `roots`: compile, warm the clocks in one submit, then the best of REPS ~100 ms profiles. */
const best = (roots: Tensor[]) => warmBest(profile, roots, { warmMs: WARM_MS, maxWarm: 1000, maxN: 10, targetMs: 100, reps: REPS });

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
  // alibi: its slopes a primal too (their gradient is the fourth; it is summed whether asked or not)
  const slopes = name === "alibi" ? alibiSlopes(H) : null;
  const grads = () =>
    slopes
      ? vjp((q, k, v, sl) => flexAttention(q, k, v, { blockMask, scoreMod: alibi(sl) }), q, k, v, slopes)[1](dOut)
      : vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v)[1](dOut);
  const [y] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
  return { name, out, grads, call: y.arg as FlexCall };
}
const key = (c: FlexBwdConfig) => `BA${c.BA} TA${c.TA} G${c.G} BB${c.BB} DK${c.DK} NV${c.NV}${c.shareStage ? " shared" : ""}${c.oneTile ? " onetile" : ""}`;
/** best() of fresh gradient nodes planned under `p`. */
async function timed(s: Setup, p: FlexBwdProbe): Promise<number> {
  setFlexBwdProbe(p);
  try {
    return await best(s.grads());
  } finally {
    setFlexBwdProbe({});
  }
}

const cases = await Promise.all(CASES.map(setup));
const dsCases = cases.filter((s) => s.name !== "alibi"); // parts without a capture (alibi: part "cap")
{
  const one = await profile([cases[0].out], 1);
  const n = Math.min(2000, Math.ceil(1500 / Math.max(one, 1e-3)));
  console.log(`[${at()}] warm-up: ${n} forwards of ${cases[0].name} in one submit, ${(await profile([cases[0].out], n)).toFixed(3)} ms each`);
}
const fwd = new Map<string, number>();
const bwd = new Map<string, number>();

// ---- 1. default configs
for (const s of cases) {
  const f = await best([s.out]);
  const b = (await timed(s, {})) - f;
  fwd.set(s.name, f);
  bwd.set(s.name, b);
  const cfg = (m: FlexBwdMode) => key(flexBackwardSource(s.call, m, ex.caps).config);
  console.log(`[${at()}] ${s.name}: fwd ${f.toFixed(3)} ms, bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / f).toFixed(2)}  (dq ${cfg("dq")}, dkdv ${cfg("dkdv")})`);
  json({ part: "default", case: s.name, fwd_ms: f, bwd_ms: b, dq: cfg("dq"), dkdv: cfg("dkdv") });
}
if (bwd.has("alibi") && bwd.has("causal")) console.log(`alibi bwd / causal bwd = ${(bwd.get("alibi")! / bwd.get("causal")!).toFixed(2)} (target ≤ 1.3)`);

// ---- 1b. the dS' path beside the fused one (same inputs; fresh nodes per setting)
const relL2 = (a: Float32Array, b: Float32Array) => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
};
const bitsDiffer = (a: Float32Array, b: Float32Array) => {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
};
async function gradsUnder(s: Setup, p: FlexBwdProbe): Promise<Float32Array[]> {
  setFlexBwdProbe(p);
  try {
    return await Promise.all(s.grads().map((g) => g.toArray())) as Float32Array[];
  } finally {
    setFlexBwdProbe({});
  }
}
const PRE = "flex_bwd_preprocess";
const dsDefault = new Map<string, DqFromDsConfig>();
const dsBwd = new Map<string, number>();
for (const s of PARTS.has("ds") ? dsCases : []) {
  const dqc = dqFromDsConfig(s.call, ex.caps)!;
  dsDefault.set(s.name, dqc);
  const chunks = dsChunks(s.call, ex.caps);
  const b = (await timed(s, { dqFromDs: true })) - fwd.get(s.name)!;
  dsBwd.set(s.name, b);
  const def = (await timed(s, { dqFromDs: false })) - fwd.get(s.name)!;
  const tp = await timed(s, { only: [PRE] });
  const tk = (await timed(s, { dqFromDs: true, only: [PRE, "flex_bwd_dkdv_ds"] })) - tp;
  const tq = (await timed(s, { dqFromDs: true, only: [PRE, "flex_bwd_dq_ds"] })) - tp;
  const tkPlain = (await timed(s, { dqFromDs: false, only: [PRE, "flex_bwd_dkdv "] })) - tp;
  const tqFused = (await timed(s, { dqFromDs: false, only: [PRE, "flex_bwd_dq "] })) - tp;
  // agreement with the fused path (both f32; the oracle checks are the tests')
  const a = await gradsUnder(s, { dqFromDs: true });
  const d = await gradsUnder(s, { dqFromDs: false });
  const err = a.map((x, i) => relL2(x, d[i]));
  const differ = a.map((x, i) => bitsDiffer(x, d[i]));
  const f = fwd.get(s.name)!;
  console.log(`[${at()}] ${s.name} dS' path (${chunks?.chunks} chunks of ${chunks?.kvHeads} kv heads, dq ${dqFromDsKey(dqc)}): bwd ${b.toFixed(3)} ms ` +
    `(fused ${def.toFixed(3)}), bwd/fwd ${(b / f).toFixed(2)} (fused ${(def / f).toFixed(2)}); shares: dkdv+ds ${tk.toFixed(3)} ` +
    `(plain dkdv ${tkPlain.toFixed(3)}), dq from ds ${tq.toFixed(3)} (fused dq ${tqFused.toFixed(3)}), preprocess+fwd+copies ${tp.toFixed(3)}; ` +
    `vs fused: rel. L2 dq ${err[0].toExponential(1)} dk ${err[1].toExponential(1)} dv ${err[2].toExponential(1)}, elements differing ${differ.join("/")}`);
  json({
    part: "ds", case: s.name, bwd_ms: b, fused_bwd_ms: def, fwd_ms: f, dkdv_ds_ms: tk, dq_ds_ms: tq, dkdv_plain_ms: tkPlain,
    dq_fused_ms: tqFused, base_ms: tp, rel_l2: err, differ, dq_ds: dqFromDsKey(dqc), chunks: chunks?.chunks,
  });
}

// ---- 1b'. scalar dS' stores against the vec4 ones (the dK/dV kernel's share and the full backward)
for (const s of PARTS.has("dsvec") ? dsCases : []) {
  const b = (await timed(s, { dqFromDs: true, dsScalarStore: true })) - fwd.get(s.name)!;
  const tp = await timed(s, { only: [PRE] });
  const tk = (await timed(s, { dqFromDs: true, dsScalarStore: true, only: [PRE, "flex_bwd_dkdv_ds"] })) - tp;
  console.log(`[${at()}] ${s.name} dS' path, scalar dS' stores: bwd ${b.toFixed(3)} ms (vec4 ${dsBwd.get(s.name)?.toFixed(3)}), dkdv+ds ${tk.toFixed(3)}`);
  json({ part: "dsvec", case: s.name, scalar_bwd_ms: b, vec4_bwd_ms: dsBwd.get(s.name), scalar_dkdv_ds_ms: tk });
}

// ---- 1c. the dQ-from-dS' tilings alone, then the best pinned; a larger scratch
if (PARTS.has("dssweep")) {
  const QB = cases[0].call.blockMask.blockSize[0];
  const all = dqFromDsCandidates(D, ex.caps).sort((a, b) => dqFromDsScore(b, QB) - dqFromDsScore(a, QB));
  const picked: DqFromDsConfig[] = [];
  const take = (c: DqFromDsConfig | undefined) => { if (c && !picked.some((x) => dqFromDsKey(x) === dqFromDsKey(c))) picked.push(c); };
  all.slice(0, SWEEP).forEach(take);
  for (const [BA, TA, TD, BB] of [[128, 8, 8, 16], [64, 8, 8, 64], [128, 4, 8, 32], [128, 8, 4, 32], [64, 4, 8, 32], [64, 4, 4, 32], [128, 4, 4, 32]]) {
    if (SPREAD) take(all.find((c) => c.BA === BA && c.TA === TA && c.TD === TD && c.BB === BB));
  }
  const bases = [];
  for (const s of dsCases) bases.push(await timed(s, { only: [PRE] }));
  let bestSum = Infinity, winner: DqFromDsConfig | undefined;
  for (const c of picked) {
    const times: number[] = [];
    for (const [i, s] of dsCases.entries()) times.push((await timed(s, { dqFromDs: true, dqDs: c, only: [PRE, "flex_bwd_dq_ds"] })) - bases[i]);
    const tf = 2 * B * H * S * S * D * 1e-12;
    console.log(`[${at()}] dq_ds ${dqFromDsKey(c)} threads ${dqFromDsThreads(c)}: ` +
      dsCases.map((s, i) => `${s.name} ${times[i].toFixed(3)} ms${s.name === "noop" ? ` (${(tf / (times[i] * 1e-3)).toFixed(1)} TF/s)` : ""}`).join(", ") +
      ` (score ${dqFromDsScore(c, QB).toFixed(3)})`);
    json({ part: "dssweep", config: dqFromDsKey(c), ...Object.fromEntries(dsCases.map((s, i) => [`${s.name}_ms`, times[i]])) });
    const sum = times.reduce((x, y) => x + y, 0);
    if (sum < bestSum) { bestSum = sum; winner = c; }
  }
  if (winner) {
    console.log(`best dq_ds: ${dqFromDsKey(winner)}`);
    for (const s of dsCases) {
      const b = (await timed(s, { dqFromDs: true, dqDs: winner })) - fwd.get(s.name)!;
      console.log(`[${at()}] ${s.name} dS' path, dq ${dqFromDsKey(winner)} pinned: bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / fwd.get(s.name)!).toFixed(2)}`);
      json({ part: "dspinned", case: s.name, bwd_ms: b, dq_ds: dqFromDsKey(winner) });
    }
  }
}
/** The dS' path's launch shares (ms): the preprocess alone (with the forward and the copies), then over it the dK/dV
 * kernel storing dS' and the dQ-from-dS' kernel. */
async function dsShares(s: Setup): Promise<{ tp: number; tk: number; tq: number }> {
  const tp = await timed(s, { only: [PRE] });
  const tk = (await timed(s, { only: [PRE, "flex_bwd_dkdv_ds"] })) - tp;
  const tq = (await timed(s, { only: [PRE, "flex_bwd_dq_ds"] })) - tp;
  return { tp, tk, tq };
}

/** The default path's gradients, and the elements differing between two realizes of it and against the fused path's. */
async function dsIdentity(s: Setup) {
  const a = await gradsUnder(s, {});
  const a2 = await gradsUnder(s, {});
  const fused = await gradsUnder(s, { dqFromDs: false });
  return { a, fused, again: a.map((x, i) => bitsDiffer(x, a2[i])), vsFused: a.map((x, i) => bitsDiffer(x, fused[i])) };
}

// ---- 1g. "cap": alibi's learnable slopes on the dS' path (the dK/dV kernel sums their gradient; default) against the
// fused path (its dQ kernel sums them): full backward each way, the dS' path's shares, bit identity (two realizes; dq/dk/dv
// against the fused path) and the slopes' gradient against the fused path's
for (const s of PARTS.has("cap") ? cases.filter((x) => x.name === "alibi") : []) {
  const f = fwd.get(s.name)!, b = bwd.get(s.name)!;
  const fusedB = (await timed(s, { dqFromDs: false })) - f;
  const { tp, tk, tq } = await dsShares(s);
  const tr = (await timed(s, { only: [PRE, "flex_bwd_reduce"] })) - tp;
  const { a, fused, again, vsFused } = await dsIdentity(s);
  const capErr = relL2(a[3], fused[3]);
  const cfg = key(flexBackwardSource(s.call, "dkdv", ex.caps, { writeDs: true, dsHeadsFastest: true }).config);
  const planned = dsPlanned(s, {});
  const causal = bwd.get("causal");
  console.log(`[${at()}] ${s.name} cap: bwd ${b.toFixed(3)} ms (dS' path, ${planned}, dkdv ${cfg}), fused path ${fusedB.toFixed(3)}; ` +
    `alibi / causal bwd ${causal ? (b / causal).toFixed(3) : "-"} (fused ${causal ? (fusedB / causal).toFixed(3) : "-"}); shares: dkdv+ds+slopes ${tk.toFixed(3)}, ` +
    `dq from ds ${tq.toFixed(3)}, reduce ${tr.toFixed(3)}, preprocess+fwd+copies ${tp.toFixed(3)}; elements differing: two realizes ${again.join("/")}, ` +
    `vs the fused path ${vsFused.join("/")} (slopes' gradient rel. L2 to the fused path's ${capErr.toExponential(2)})`);
  json({ part: "cap", case: s.name, fwd_ms: f, bwd_ms: b, fused_bwd_ms: fusedB, dkdv: cfg, layout: planned, dkdv_ds_ms: tk, dq_ds_ms: tq, reduce_ms: tr, base_ms: tp, differ_again: again, differ_fused: vsFused, cap_rel_l2: capErr });
}

// ---- 1f. "final": the defaults as they stand, per dS' case: the launches' shares, the other scratch layout, session 6's
// default in the same run (tiles-fastest grids, dense scratch, dK/dV BA64 TA4 G16 BB64 DK16 NV16), and bit identity
// (two realizes of the default; the fused path's dq/dk/dv). FINAL_LITE cases: the bwd of the other layout only.
const SESSION6_DKDV: FlexBwdConfig = { family: "portable", D, Dv: D, BA: 64, TA: 4, G: 16, BB: 64, DK: 16, NV: 16 };
const LITE = new Set(env("BWD_PROBE_FINAL_LITE", "sliding_window").split(","));
for (const s of PARTS.has("final") ? dsCases : []) {
  const f = fwd.get(s.name)!, b = bwd.get(s.name)!;
  const planned = dsPlanned(s, {});
  const other: FlexBwdProbe = planned.endsWith("compact") ? { dsDense: true } : { dsCompact: true };
  const alt = (await timed(s, { dqFromDs: true, ...other })) - f;
  if (LITE.has(s.name)) {
    console.log(`[${at()}] ${s.name} final: bwd ${b.toFixed(3)} ms (${planned}), bwd/fwd ${(b / f).toFixed(2)}; the other layout (${dsPlanned(s, other)}) ${alt.toFixed(3)}`);
    json({ part: "final", case: s.name, fwd_ms: f, bwd_ms: b, layout: planned, other_layout_bwd_ms: alt });
    continue;
  }
  const old = flexBwdSmemBytes(SESSION6_DKDV, "dkdv") <= lim.maxComputeWorkgroupStorageSize
    ? (await timed(s, { dqFromDs: true, dsBlocksFastest: true, dsDense: true, dkdv: SESSION6_DKDV })) - f
    : NaN;
  const { tp, tk, tq } = await dsShares(s);
  const { again, vsFused } = await dsIdentity(s);
  const cfg = key(flexBackwardSource(s.call, "dkdv", ex.caps).config);
  console.log(`[${at()}] ${s.name} final: bwd ${b.toFixed(3)} ms (${planned}, dkdv ${cfg}), bwd/fwd ${(b / f).toFixed(2)}; shares: dkdv+ds ${tk.toFixed(3)}, ` +
    `dq from ds ${tq.toFixed(3)}, preprocess+copies ${(tp - f).toFixed(3)}; the other layout ${alt.toFixed(3)}; session 6's default ${old.toFixed(3)} ` +
    `(${(old / f).toFixed(2)}); elements differing: two realizes ${again.join("/")}, vs the fused path ${vsFused.join("/")}`);
  json({ part: "final", case: s.name, fwd_ms: f, bwd_ms: b, layout: planned, dkdv: cfg, dkdv_ds_ms: tk, dq_ds_ms: tq, base_ms: tp, other_layout_bwd_ms: alt, session6_bwd_ms: old, differ_again: again, differ_fused: vsFused });
}

// ---- 1d. "order": the dS' path's grids tiles fastest (the older order), with the compact and the dense scratch
// (tiles fastest + dense = session 6's default); "layout" below times the heads-fastest default both ways
for (const s of PARTS.has("order") ? dsCases : []) {
  const f = fwd.get(s.name)!;
  const oc = (await timed(s, { dqFromDs: true, dsBlocksFastest: true })) - f;
  const od = (await timed(s, { dqFromDs: true, dsBlocksFastest: true, dsDense: true })) - f;
  console.log(`[${at()}] ${s.name} dS' grids tiles fastest: bwd ${oc.toFixed(3)} ms compact, ${od.toFixed(3)} ms dense (session 6's default; bwd/fwd ${(od / f).toFixed(2)})`);
  json({ part: "order", case: s.name, tiles_compact_bwd_ms: oc, tiles_dense_bwd_ms: od });
}

/** "N chunks, compact|dense": the dS' path's launches as planned under `p` (their labels, through explain). */
function dsPlanned(s: Setup, p: FlexBwdProbe): string {
  setFlexBwdProbe({ ...p, dqFromDs: true });
  try {
    const l = explain(s.grads(), ex.caps).kernels.filter((x) => x.startsWith("flex_bwd_dq_ds"));
    return `${l.length} chunks, ${l[0]?.match(/ (compact|dense) /)?.[1]}`;
  } finally {
    setFlexBwdProbe({});
  }
}

// ---- 1d'. "layout": the compact dS' scratch (visited blocks only; default where it is no larger) against the dense one
for (const s of PARTS.has("layout") ? dsCases : []) {
  const f = fwd.get(s.name)!;
  const tp = await timed(s, { only: [PRE] });
  const row = async (p: FlexBwdProbe) => [
    (await timed(s, { ...p, dqFromDs: true })) - f,
    (await timed(s, { ...p, dqFromDs: true, only: [PRE, "flex_bwd_dkdv_ds"] })) - tp,
    (await timed(s, { ...p, dqFromDs: true, only: [PRE, "flex_bwd_dq_ds"] })) - tp,
  ];
  const [bc, kc, qc] = await row({});
  const bd = (await timed(s, { dqFromDs: true, dsDense: true })) - f;
  const lc = dsPlanned(s, {}), ld = dsPlanned(s, { dsDense: true });
  console.log(`[${at()}] ${s.name} dS' scratch ${lc}: bwd ${bc.toFixed(3)} ms, bwd/fwd ${(bc / f).toFixed(2)}, dkdv+ds ${kc.toFixed(3)}, dq from ds ${qc.toFixed(3)}; ` +
    `${ld}: bwd ${bd.toFixed(3)}`);
  json({ part: "layout", case: s.name, bwd_ms: bc, dkdv_ds_ms: kc, dq_ds_ms: qc, layout: lc, dense_bwd_ms: bd, dense_layout: ld, base_ms: tp });
}

// ---- 1e. "kvsweep": the dK/dV kernel storing dS' under other tilings (pinned, timed alone), then the best pinned
if (PARTS.has("kvsweep")) {
  const p = { D, Dv: D, ownerBlock: 128, streamBlock: 128 };
  const all = flexBwdCandidates("dkdv", p, ex.caps).sort((a, b) => flexBwdScore(b, p) - flexBwdScore(a, p));
  const picked = all.filter((c) => c.TA === 4 && c.BB >= 32 && (c.BA === 64 || (c.BA === 32 && c.G === 16))).slice(0, SWEEP);
  // 128 kv rows a workgroup (outside the candidates, whose owner tiles stop at 64): each Q / dO tile staged once per block
  // and shareStage ones (the products' chunks and the accumulations' rows in one array: NV 32 in the same memory)
  for (const [BA, G, BB, NV, share] of [[128, 8, 32, 16, 0], [128, 4, 32, 16, 0], [64, 8, 64, 32, 1], [64, 16, 64, 32, 1], [128, 8, 32, 32, 1]]) {
    const c: FlexBwdConfig = { family: "portable", D, Dv: D, BA, TA: 4, G, BB, DK: 16, NV, ...(share ? { shareStage: true } : {}) };
    if (SPREAD && flexBwdSmemBytes(c, "dkdv") <= lim.maxComputeWorkgroupStorageSize && flexBwdThreads(c) <= lim.maxComputeInvocationsPerWorkgroup) picked.push(c);
  }
  const bases: number[] = [];
  for (const s of dsCases) bases.push(await timed(s, { only: [PRE] }));
  let bestSum = Infinity, winner: FlexBwdConfig | undefined;
  for (const c of picked) {
    const times: number[] = [];
    try {
      for (const [i, s] of dsCases.entries()) times.push((await timed(s, { dqFromDs: true, dkdv: c, only: [PRE, "flex_bwd_dkdv_ds"] })) - bases[i]);
    } catch (e) {
      console.log(`[${at()}] dkdv_ds ${key(c)} failed: ${String(e).slice(0, 300)}`);
      continue;
    }
    console.log(`[${at()}] dkdv_ds ${key(c)} threads ${(c.BA / c.TA) * c.G}: ` + dsCases.map((s, i) => `${s.name} ${times[i].toFixed(3)} ms`).join(", ") +
      ` (score ${flexBwdScore(c, p).toFixed(3)})`);
    json({ part: "kvsweep", config: key(c), ...Object.fromEntries(dsCases.map((s, i) => [`${s.name}_ms`, times[i]])) });
    const sum = times.reduce((x, y) => x + y, 0);
    if (sum < bestSum) { bestSum = sum; winner = c; }
  }
  if (winner) {
    console.log(`best dkdv_ds: ${key(winner)}`);
    for (const s of dsCases) {
      const b = (await timed(s, { dqFromDs: true, dkdv: winner })) - fwd.get(s.name)!;
      const b2 = (await timed(s, { dqFromDs: true, dkdv: winner, dsChunkBytes: 2048 * 2 ** 20 })) - fwd.get(s.name)!;
      console.log(`[${at()}] ${s.name} dS' path, dkdv ${key(winner)} pinned: bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / fwd.get(s.name)!).toFixed(2)}; ` +
        `with ≤ 2048 MiB scratch ${b2.toFixed(3)} (${(b2 / fwd.get(s.name)!).toFixed(2)})`);
      json({ part: "kvpinned", case: s.name, bwd_ms: b, bwd_2048_ms: b2, dkdv: key(winner) });
    }
  }
}

// ---- 1h. "onetile": the dS' path's dK/dV kernel with one tile array (FlexBwdConfig.oneTile: P then dS' in ds_s) and the
// memory it frees spent on DK 32 / NV = BB (fewer barriers a tile), pinned, timed alone against the default; the best full
for (const s of PARTS.has("onetile") ? dsCases.filter((x) => x.name === "noop" || x.name === "causal") : []) {
  const f = fwd.get(s.name)!;
  const def = flexBackwardSource(s.call, "dkdv", ex.caps, { writeDs: true, dsHeadsFastest: true }).config;
  const fits = (c: FlexBwdConfig) =>
    flexBwdSmemBytes(c, "dkdv") <= lim.maxComputeWorkgroupStorageSize && s.call.blockMask.blockSize[0] % c.BB === 0 && 2 * c.TA * (c.BB / c.G) <= 64;
  const variants = [
    { ...def, oneTile: true },
    { ...def, oneTile: true, DK: 32 },
    { ...def, oneTile: true, DK: 32, NV: def.BB, shareStage: true },
    // twice the streamed columns a tile (a 4 × 2·BB/G register tile: half the tiles, the barriers a tile the same)
    { ...def, oneTile: true, BB: 2 * def.BB, shareStage: true },
  ].filter((c, i, all) => fits(c) && all.findIndex((x) => key(x) === key(c)) === i);
  const tp = await timed(s, { only: [PRE] });
  const t0k = (await timed(s, { only: [PRE, "flex_bwd_dkdv_ds"] })) - tp;
  let bestK = t0k, bestC: FlexBwdConfig | undefined;
  const rows: string[] = [];
  for (const c of variants) {
    const t = (await timed(s, { dkdv: c, only: [PRE, "flex_bwd_dkdv_ds"] })) - tp;
    rows.push(`${key(c)} ${t.toFixed(3)}`);
    json({ part: "onetile", case: s.name, config: key(c), one_tile: !!c.oneTile, dkdv_ds_ms: t, default_dkdv_ds_ms: t0k });
    if (t < bestK) { bestK = t; bestC = c; }
  }
  const full = bestC ? (await timed(s, { dkdv: bestC })) - f : NaN;
  // bit identity with the default dK/dV (the same sums in the same order)
  const base = bestC ? await gradsUnder(s, {}) : [];
  const differ = bestC ? (await gradsUnder(s, { dkdv: bestC })).map((x, i) => bitsDiffer(x, base[i])) : [];
  console.log(`[${at()}] ${s.name} onetile: dkdv+ds default (${key(def)}) ${t0k.toFixed(3)} ms; ${rows.join("; ")}; best full bwd ${full.toFixed(3)} ` +
    `(${(full / f).toFixed(3)}×; default ${bwd.get(s.name)!.toFixed(3)}); elements differing from the default ${differ.join("/")}`);
  json({ part: "onetile_best", case: s.name, config: bestC ? key(bestC) : "default", bwd_ms: full, default_bwd_ms: bwd.get(s.name), differ });
}

for (const s of PARTS.has("dschunk") ? dsCases : []) {
  for (const mib of CHUNK_MIB) {
    const bytes = mib * 2 ** 20;
    const chunks = dsChunks(s.call, ex.caps, bytes);
    const b = (await timed(s, { dqFromDs: true, dsChunkBytes: bytes })) - fwd.get(s.name)!;
    const planned = dsPlanned(s, { dsChunkBytes: bytes });
    const tk = PARTS.has("ds") ? (await timed(s, { dqFromDs: true, dsChunkBytes: bytes, only: [PRE, "flex_bwd_dkdv_ds"] })) - fwd.get(s.name)! : NaN;
    console.log(`[${at()}] ${s.name} dS' path, scratch ≤ ${mib} MiB (${planned}; dense: ${chunks?.chunks} chunks, ${((chunks?.bytes ?? 0) / 2 ** 20).toFixed(0)} MiB): ` +
      `bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / fwd.get(s.name)!).toFixed(2)}; dkdv+ds (+ preprocess, copies) ${tk.toFixed(3)}`);
    json({ part: "dschunk", case: s.name, bwd_ms: b, planned, chunks: chunks?.chunks, scratch_bytes: chunks?.bytes, dkdv_ds_pre_ms: tk });
  }
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
    t[name] = await timed(s, { dqFromDs: false, only });
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
    bases.push(await timed(s, { only: ["flex_bwd_preprocess"] }));
  }
  for (const c of picked) {
    const times: number[] = [];
    for (const [i, s] of cases.slice(0, 2).entries()) {
      const base = bases[i];
      times.push((await timed(s, { dqFromDs: false, [mode]: c, only: ["flex_bwd_preprocess", `flex_bwd_${mode} `] })) - base);
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
  const b = (await timed(s, s.name === "alibi" ? { dkdv: winners.dkdv } : { dqFromDs: false, dq: winners.dq, dkdv: winners.dkdv })) - fwd.get(s.name)!;
  console.log(`[${at()}] ${s.name} pinned: bwd ${b.toFixed(3)} ms, bwd/fwd ${(b / fwd.get(s.name)!).toFixed(2)}`);
  json({ part: "pinned", case: s.name, bwd_ms: b, dq: s.name === "alibi" ? "default" : key(winners.dq!), dkdv: key(winners.dkdv!) });
}
setFlexBwdProbe({});
console.log(`done [${at()}]`);
