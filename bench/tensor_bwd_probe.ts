/**
 * Device probe of the tensor-family backward (kernels/flex_backward_tensor.ts, kernels/flex_backward_tensor_pipe.ts)
 * through the library (FLEX_WEBGPU=dawn):
 *   1. correctness of the intrinsics vs the float64 oracle on gallery cases (f16 inputs), for each template variant
 *      (FLEX_PROBE_VARIANTS: "pipe" = the pipelined default, "direct" = the older direct-load template)
 *   2. timings at B4 H16 S4096 D64 (bench/cases.ts cases, f16), GPU timestamps after ≥ FLEX_PROBE_WARM_MS (200) of
 *      back-to-back launches in one submit (the H200 idles at 345 MHz within a second of a compile):
 *      bwd = profile(forward + backward) − profile(forward); per mode, the other mode's launch left out
 *      (bwdTensorOverride.skip): dq = full − (full without dq), dkdv = full − (full without dkdv).
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/tensor_bwd_probe.ts
 * Env: FLEX_PROBE_SKIP_CHECK=1, FLEX_PROBE_SKIP_TIME=1, FLEX_PROBE_CASES (how many check cases), FLEX_PROBE_ONLY (their indices), FLEX_PROBE_SIZE
 * (B,H,S,D of the timings, default 4,16,4096,64), FLEX_PROBE_SHAPES (JSON array of {BA, subgroups, BB, pipeline} to
 * time beside the two defaults; FLEX_PROBE_OVERRIDES (JSON {name: override}: more variants / rows; row `name-`: not split by mode); default: the pipelined alternatives), FLEX_PROBE_TIME_CASES (bench/cases.ts names, default noop,causal). * The stored-dS' dQ path natively: overrides {"ownerDirect":true,"streamDirect":true,"dqFromDs":true} (+ "dsLayout",
 * "dqDs", "dsDiag": "emulateGemm" | "emulateDkdv" — one of its kernels emulated, to tell which native one is wrong).
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, type FlexOptions, flexAttention, type MaskMod, realizeAll, type ScoreMod, setPoison, type Tensor, vjp } from "../mod.ts";
import { deviceInfo, getExecutor } from "../lib/runtime/mod.ts";
import { randn, tensor } from "../lib/tensor/tensor.ts";
import type { FlexCall } from "../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../lib/runtime/cpu/flex_reference_bwd.ts";
import { explain } from "../lib/lower/explain.ts";
import { setBwdTensorOverride } from "../lib/lower/flex_bwd_tensor_config.ts";
import { buildCase, type CaseName } from "./cases.ts";
import { warmBest } from "./warm_best.ts";

const env = (k: string) => Deno.env.get(k);
const t0 = performance.now();
const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
const info = await deviceInfo();
const ex = await getExecutor();
console.log(`device: ${info.provider} ${info.adapter}; workgroup storage ${ex.caps.limits.maxComputeWorkgroupStorageSize} B; ` +
  `matrix configs ${JSON.stringify(ex.caps.subgroupMatrixConfigs)}`);

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) { const e = Number(a[i]) - b[i]; n += e * e; d += b[i] * b[i]; }
  return Math.sqrt(n / Math.max(d, 1e-30));
};
const f16 = { dtype: "f16" as const };
const softcap: ScoreMod = (s) => s.div(20).tanh().mul(20);
const sliding: MaskMod = (_b, _h, q, kv) => q.ge(kv).and(q.sub(kv).le(128));

interface Case { name: string; Hq?: number; Hkv?: number; Sq: number; Skv?: number; D: number; mask?: MaskMod; score?: ScoreMod }
const CASES: Case[] = [
  { name: "noop S256 D64", Sq: 256, D: 64 },
  { name: "causal S512 D64", Sq: 512, D: 64, mask: causalMask },
  { name: "softcap + causal S256 D64", Sq: 256, D: 64, mask: causalMask, score: softcap },
  { name: "sliding window 128 S512 D64", Sq: 512, D: 64, mask: sliding },
  { name: "GQA 8:2 causal S256 D64", Hq: 8, Hkv: 2, Sq: 256, D: 64, mask: causalMask },
  { name: "causal S256 D128", Sq: 256, D: 128, mask: causalMask },
  { name: "noop S256 D32", Sq: 256, D: 32 },
  { name: "causal S256 D80", Sq: 256, D: 80, mask: causalMask },
  { name: "noop cross 256×384 D64", Sq: 256, Skv: 384, D: 64 },
  { name: "causal ragged 200 D64", Sq: 200, D: 64, mask: causalMask },
  { name: "noop cross ragged 130×333 D64, GQA 4:1", Hq: 4, Hkv: 1, Sq: 130, Skv: 333, D: 64 },
];
type Override = Parameters<typeof setBwdTensorOverride>[0];
const ALL_VARIANTS: Record<string, { name: string; src: Override }> = {
  pipe: { name: "pipelined, scalar pass", src: { ownerDirect: false, streamDirect: false, pipeline: true, quadPass: false } },
  direct: { name: "direct-load template", src: { ownerDirect: true, streamDirect: true, pipeline: false } },
  quad: { name: "pipelined, quad scalar pass", src: { ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true } },
  mstage: { name: "pipelined, matrix staging", src: { ownerDirect: false, streamDirect: false, pipeline: true, quadPass: false, matrixStage: true } },
  both: { name: "pipelined, quad pass + matrix staging", src: { ownerDirect: false, streamDirect: false, pipeline: true, quadPass: true, matrixStage: true } },
};
// FLEX_PROBE_OVERRIDES: more named overrides (JSON {name: override}), for FLEX_PROBE_VARIANTS and FLEX_PROBE_ROWS
const EXTRA = JSON.parse(env("FLEX_PROBE_OVERRIDES") ?? "{}") as Record<string, NonNullable<Override>>;
for (const [k, o] of Object.entries(EXTRA)) ALL_VARIANTS[k] = { name: k, src: o };
const VARIANTS = (env("FLEX_PROBE_VARIANTS") ?? "pipe").split(",").map((k) => ALL_VARIANTS[k]);

async function check(c: Case) {
  const Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.Sq;
  const q = randn([1, Hq, c.Sq, c.D], f16), k = randn([1, Hkv, Skv, c.D], f16), v = randn([1, Hkv, Skv, c.D], f16);
  const dOut = randn([1, Hq, c.Sq, c.D], f16);
  const blockMask = c.mask ? await createBlockMask(c.mask, 1, 1, c.Sq, Skv) : undefined;
  const opts: FlexOptions = { blockMask, scoreMod: c.score, enableGqa: Hq !== Hkv, kernelOptions: { family: "tensor" } };
  const [y, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
  const call = (y as Tensor).arg as FlexCall;
  const ref = flexReferenceBwd(call, {
    q: q.data!, k: k.data!, v: v.data!, scoreCaptures: [], maskCaptures: call.blockMask.tracedMask.captures.map((t) => (t as Tensor).data!),
    dOut: dOut.data!, dLse: null,
  });
  for (const variant of VARIANTS) {
    setBwdTensorOverride(variant.src);
    try {
      const [, back2] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
      const grads = back2(dOut);
      const kernels = explain(grads, ex.caps).kernels.filter((l) => l.includes("flex_bwd_d"));
      setPoison(true);
      const got = await realizeAll(grads);
      const e = [relL2(got[0], ref.dq), relL2(got[1], ref.dk), relL2(got[2], ref.dv)];
      const ok = e.every((x) => x <= 6e-4);
      console.log(`  ${ok ? "PASS" : "FAIL"} ${c.name} | ${variant.name} | dq ${e[0].toExponential(2)} dk ${e[1].toExponential(2)} dv ${e[2].toExponential(2)} | ${kernels.join("; ")}`);
    } catch (err) {
      console.log(`  ERROR ${c.name} | ${variant.name}: ${err instanceof Error ? err.message : err}`);
    } finally {
      setBwdTensorOverride(null);
    }
  }
  void back;
}

if (!env("FLEX_PROBE_SKIP_CHECK")) {
  console.log(`== correctness vs float64 (rel. L2, tolerance 6e-4) [${at()}]`);
  const only = env("FLEX_PROBE_ONLY")?.split(",").map(Number);
  for (const [i, c] of CASES.slice(0, Number(env("FLEX_PROBE_CASES") ?? CASES.length)).entries()) if (!only || only.includes(i)) await check(c);
}

// ---- FLEX_PROBE_MAP (e.g. "256x64,256x128"): the native dQ-from-dS' GEMM's element mapping. Its dS' is the shift
// permutation (dqDs.probe "shiftDs"), so dq[q][d] = scale·K[(q + 1) mod S][d]; K holds its row index (then its column
// index), so each dq element names the K element it came from: exact count and the commonest (Δkv, Δd) offsets.
if (env("FLEX_PROBE_MAP")) {
  console.log(`== dQ GEMM element mapping (shift-permutation dS', noop) [${at()}]`);
  for (const [S, D] of env("FLEX_PROBE_MAP")!.split(",").map((x) => x.split("x").map(Number))) {
    const scale = 1 / Math.sqrt(D);
    const q = randn([1, 1, S, D], f16), v = randn([1, 1, S, D], f16), dOut = randn([1, 1, S, D], f16);
    const kOf = (f: (kv: number, d: number) => number) =>
      tensor(Float32Array.from({ length: S * D }, (_, i) => f(Math.floor(i / D), i % D)), [1, 1, S, D], f16);
    for (const variant of VARIANTS) {
      const dqDs = { ...(variant.src?.dqDs ?? { BA: 128, subgroups: 4, BB: 32 }), probe: "shiftDs" as const };
      setBwdTensorOverride({ ...variant.src!, dqFromDs: true, dqDs });
      try {
        const idx: number[][] = [];
        let label = "";
        for (const k of [kOf((kv) => kv), kOf((_kv, d) => d)]) {
          const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { kernelOptions: { family: "tensor" } }), q, k, v);
          const grads = back(dOut);
          label = explain(grads, ex.caps).kernels.filter((l) => l.includes("flex_bwd_dq")).join("; ");
          setPoison(true);
          const dq = (await realizeAll(grads))[0];
          idx.push(Array.from(dq, (x) => Math.round(Number(x) / scale)));
        }
        const counts = new Map<string, number>();
        let exact = 0;
        for (let r = 0; r < S; r++) {
          for (let d = 0; d < D; d++) {
            const i = r * D + d, dk = idx[0][i] - (r + 1) % S, dd = idx[1][i] - d;
            if (dk === 0 && dd === 0) exact++;
            counts.set(`${dk},${dd}`, (counts.get(`${dk},${dd}`) ?? 0) + 1);
          }
        }
        const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => `(${k}) ×${n}`).join(" ");
        const rows = [0, 1, 15, 16].map((r) => `q${r}: ${Array.from({ length: 4 }, (_, d) => `${idx[0][r * D + d]}/${idx[1][r * D + d]}`).join(" ")}`).join(" | ");
        console.log(`  S${S} D${D} | ${variant.name} | exact ${exact}/${S * D} | (Δkv,Δd) ${top} | kv/d of dq[q][0..3]: ${rows} | ${label}`);
      } catch (err) {
        console.log(`  ERROR S${S} D${D} | ${variant.name}: ${err instanceof Error ? err.message : err}`);
      } finally {
        setBwdTensorOverride(null);
      }
    }
  }
}

// ---- timings
const torch = Deno.readTextFileSync(new URL("./torch_h200.jsonl", import.meta.url)).split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l) as { case: string; dtype: string; shape: string; fwd_ms?: number; bwd_ms?: number });
const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
const WARM_MS = Number(env("FLEX_PROBE_WARM_MS") ?? 200);
/** ≥ WARM_MS of back-to-back launches in one submit (clocks up after the compiles), then the best of 3 profiles. */
const best = (roots: Tensor[]) => warmBest(profile, roots, { warmMs: WARM_MS, maxWarm: 500, maxN: 20, targetMs: 100, reps: 3 });

if (!env("FLEX_PROBE_SKIP_TIME")) {
  const [B, H, S, D] = (env("FLEX_PROBE_SIZE") ?? "4,16,4096,64").split(",").map(Number);
  console.log(`== timings B${B} H${H} S${S} D${D} f16 [${at()}]`);
  const [q, k, v, dOut] = [1, 2, 3, 4].map((seed) => randn([B, H, S, D], { seed, dtype: "f16" }));
  const none = { ownerDirect: false, streamDirect: false };
  const shapes = JSON.parse(env("FLEX_PROBE_SHAPES") ??
    '[{"BA":128,"subgroups":8,"BB":16,"pipeline":true,"quadPass":true},{"BA":32,"subgroups":2,"BB":32,"pipeline":true,"quadPass":true},{"BA":64,"subgroups":2,"BB":32,"pipeline":true,"quadPass":true},{"BA":64,"subgroups":4,"BB":16,"pipeline":true,"quadPass":true}]') as
    { BA: number; subgroups: number; BB: number; pipeline?: boolean; quadPass?: boolean; matrixStage?: boolean }[];
  // kernelOptions.family "tensor": native where the adapter has subgroup matrices, emulated elsewhere (a local smoke run)
  const kernelOptions = { family: "tensor" as const };
  for (const name of (env("FLEX_PROBE_TIME_CASES") ?? "noop,causal").split(",")) {
    const bc = buildCase(name as CaseName, S, H);
    const blockMask = bc.mask ? await createBlockMask(bc.mask, null, null, S, S) : undefined;
    const scoreMod = bc.scoreMod;
    const density = blockMask ? 1 - blockMask.sparsity() / 100 : 1;
    const flops = 10 * B * H * S * S * D * density;
    const t = torch.find((r) => r.case === name && r.dtype === "f16" && r.shape === `${B}x${H}x${S}x${D}`);
    const fwd = await best([flexAttention(q, k, v, { blockMask, scoreMod, kernelOptions })]);
    console.log(`  ${name} fwd ${fwd.toFixed(3)} ms`);
    // FLEX_PROBE_ROWS: which rows (keys below) per case, e.g. "noop:direct,pipe,diag;causal:direct,pipe"; default all
    const rows = env("FLEX_PROBE_ROWS")?.split(";").find((x) => x.startsWith(`${name}:`))?.slice(name.length + 1).split(",");
    const all: { key: string; label: string; o: Override; split?: boolean }[] = [
      { key: "direct", label: "direct-load template (before)", o: { ownerDirect: true, streamDirect: true, pipeline: false }, split: true },
      { key: "pipe", label: "pipelined, scalar pass", o: { ...none, pipeline: true, quadPass: false } },
      { key: "quad", label: "pipelined, quad scalar pass", o: { ...none, pipeline: true, quadPass: true }, split: true },
      { key: "mstage", label: "pipelined, matrix staging", o: { ...none, pipeline: true, quadPass: false, matrixStage: true } },
      { key: "both", label: "pipelined, quad pass + matrix staging", o: { ...none, pipeline: true, quadPass: true, matrixStage: true }, split: true },
      { key: "diag", label: "pipelined, DIAGNOSTIC no scalar pass", o: { ...none, pipeline: true, probe: "noScalar" } },
      { key: "diag", label: "pipelined quad, DIAGNOSTIC no streamed loads", o: { ...none, pipeline: true, quadPass: true, probe: "noStage" } },
      ...Object.entries(EXTRA).map(([k, o]) => ({ key: k, label: k, o, split: true })),
      ...Object.entries(EXTRA).map(([k, o]) => ({ key: `${k}-`, label: k, o })),
      ...shapes.map((s) => ({ key: "shapes", label: `BA${s.BA} SG${s.subgroups} BB${s.BB}${s.pipeline ? " pipelined" : ""}${s.quadPass ? " quad" : ""}${s.matrixStage ? " matrix-staged" : ""}`, o: { ...none, ...(s.pipeline ? {} : { ownerDirect: true, streamDirect: true }), pipeline: !!s.pipeline, shape: s } })),
    ];
    const runs = rows ? rows.flatMap((k) => all.filter((r) => r.key === k)) : all;
    for (const r of runs) {
      const timeWith = async (o: Override) => {
        setBwdTensorOverride(o);
        try {
          const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask, scoreMod, kernelOptions }), q, k, v);
          const grads = back(dOut);
          const labels = explain(grads, ex.caps).kernels.filter((l) => l.includes("flex_bwd_d")).join("; ");
          // on a device with the intrinsics an emulated kernel is a config that did not fit: not worth its time
          if (ex.caps.subgroupMatrixConfigs.length > 0 && labels.includes("emulated")) throw new Error(`emulated kernel planned (${labels})`);
          return { ms: await best(grads) - fwd, labels };
        } finally {
          setBwdTensorOverride(null);
        }
      };
      try {
        const full = await timeWith(r.o);
        let modes = "";
        if (r.split) {
          const base = r.o ?? none;
          const noDq = await timeWith({ ...base, skip: "dq" }), noDkdv = await timeWith({ ...base, skip: "dkdv" });
          modes = ` | dq ${(full.ms - noDq.ms).toFixed(3)} ms, dkdv ${(full.ms - noDkdv.ms).toFixed(3)} ms (without dq ${noDq.ms.toFixed(3)}, without dkdv ${noDkdv.ms.toFixed(3)})`;
        }
        console.log(`  ${name} ${r.label}: bwd ${full.ms.toFixed(3)} ms = ${(flops / full.ms / 1e9).toFixed(1)} TF/s` +
          (t?.bwd_ms ? ` | PyTorch f16 bwd ${t.bwd_ms.toFixed(3)} ms (ours ${(100 * t.bwd_ms / full.ms).toFixed(1)} % of its speed)` : "") +
          `${modes} | ${full.labels} [${at()}]`);
      } catch (err) {
        console.log(`  ${name} ${r.label}: ERROR ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}
console.log(`done [${at()}]`);
Deno.exit(0);
