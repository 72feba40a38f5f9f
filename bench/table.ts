/**
 * `deno task bench`: the seed-style table. For each provider (Dawn and Deno's built-in WebGPU by default, in the
 * same run) it measures the provider's peaks (scalar f32 FMA through the library's probe node; f16→f32
 * subgroup-matrix MMA in raw WebGPU, bench/peaks.ts, n/a without the feature), then times flexAttention forward and
 * backward on the cases of bench/cases.ts for f16 and f32 inputs, and prints ms, TF/s and % of both peaks.
 * FLOPs: fwd 4·B·H·Sq·Skv·D·density, bwd 10·B·H·Sq·Skv·D·density, density = 1 − sparsity/100 of the BlockMask.
 * The backward (dq, dk, dv through `vjp`) is (forward + backward in one realize) − forward.
 * When PyTorch is importable, PyTorch's compiled flex_attention runs the same cases first in a child process
 * (bench/torch_flex.py) and each row shows PyTorch's ms and the time ratio PyTorch_ms / ours_ms (> 1: we are faster).
 *
 *   FLEX_BENCH_PROVIDERS=dawn,native  providers to run (default both; those without an adapter are reported)
 *   FLEX_BENCH_SHAPES=4x16x4096x64,16x16x8192x64   B×H×S×D shapes
 *   FLEX_BENCH_NATIVE_SHAPES=1        how many leading shapes the (slow) native provider runs ("all": every one)
 *   FLEX_BENCH_CASES=noop,causal,...  cases (default all: noop causal sliding_window prefix_lm document natten alibi softcap)
 *   FLEX_BENCH_DTYPES=f16,f32         (+ f32ieee: f32 with kernelOptions.f32Precision "ieee", the portable family's
 *                                     scalar FMAs, beside f32's default — the tensor family's f16x3 where it runs natively)
 *   FLEX_BENCH_BWD=0                  skip the backward
 *   FLEX_BENCH_ITERS=10 FLEX_BENCH_REPS=5   launches per profile, profiles per row (best reported, after a warm-up)
 *   FLEX_BENCH_ROW_MS=1000 FLEX_BENCH_TARGET_MS=100   time caps: a profile stops adding launches once it holds
 *                                     TARGET_MS of work, a row stops adding profiles past ROW_MS (at least 1)
 *   FLEX_BENCH_WARM_MS=200            back-to-back GPU work before each row's timings (clocks up after a compile)
 *   FLEX_PROFILE_WARM_MS=100          GPU time of the same launches opening every timed submit (default 100 here)
 *   FLEX_BENCH_DECODE=1x16x1x32768x64,8x16x4x8192x64  B×H×Sq×Skv×D decoding shapes (f32, split-KV off vs auto); empty: none
 *   FLEX_BENCH_TORCH=auto             auto: run bench/torch_flex.py when `python3 -c "import torch"` works; 0: never;
 *                                     a path: read its JSON lines from that file instead (a saved run)
 *   FLEX_BENCH_TORCH_SAVE=path        also write PyTorch's JSON lines there
 *   FLEX_BENCH_TORCH_BUDGET_S=240     PyTorch starts no new row after this many seconds (killed at +90 s)
 * FLEX_BENCH_PROVIDERS= (empty) runs PyTorch alone: with FLEX_BENCH_TORCH_SAVE, one call can collect PyTorch's rows
 * and a second (FLEX_BENCH_TORCH=that file) time ours against them.
 */
import { progress } from "../lib/runtime/progress.ts";
import { Effect } from "effect";
import { type BlockMask, causalMask, createBlockMask, createMask, deviceInfo, flexAttention, randn, resetRuntime, type Tensor, tensor, vjp } from "../mod.ts";
import { getExecutor } from "../effect.ts";
import { denseAttention } from "../lib/attention/baselines.ts";
import { fmaProbe, fmaProbeFlops } from "../lib/lower/probes.ts";
import { type BenchCase, buildCase, parseCases } from "./cases.ts";
import { MMA_FEATURE } from "./peaks.ts";
import { warmBest, warmProfilesByDefault } from "./warm_best.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const list = (k: string, d: string) => env(k, d).split(",").map((s) => s.trim()).filter(Boolean);
warmProfilesByDefault();
const providers = list("FLEX_BENCH_PROVIDERS", "dawn,native");
const shapeSpecs = list("FLEX_BENCH_SHAPES", "4x16x4096x64,16x16x8192x64");
const nativeShapes = env("FLEX_BENCH_NATIVE_SHAPES", "1") === "all" ? Infinity : Number(env("FLEX_BENCH_NATIVE_SHAPES", "1"));
const caseNames = parseCases(env("FLEX_BENCH_CASES", "all"));
type Dt = "f16" | "f32" | "f32ieee";
const dtypes = list("FLEX_BENCH_DTYPES", "f16,f32") as Dt[];
/** The storage dtype of a row's inputs (f32ieee: f32, another kernel option). */
const storage = (d: Dt): "f16" | "f32" => d === "f16" ? "f16" : "f32";
const skipBwd = env("FLEX_BENCH_BWD", "1") === "0";
const iters = Number(env("FLEX_BENCH_ITERS", "10"));
const reps = Number(env("FLEX_BENCH_REPS", "5"));
const rowMs = Number(env("FLEX_BENCH_ROW_MS", "1000"));
const targetMs = Number(env("FLEX_BENCH_TARGET_MS", "100"));
const decodeShapes = list("FLEX_BENCH_DECODE", "1x16x1x32768x64,8x16x4x8192x64").map((s) => s.split("x").map(Number));

const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
const fmt = (x: number | undefined, d = 2) => x !== undefined && Number.isFinite(x) ? x.toFixed(d) : "—";
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 100);

// ---- PyTorch (child process) ----------------------------------------------------------------------------------

interface TorchRow { case: string; dtype: string; shape: string; fwd_ms?: number; bwd_ms?: number; density?: number; error?: string }
const torchKey = (c: string, dt: string, shape: string) => `${c}|${dt}|${shape}`;

async function torchRows(): Promise<Map<string, TorchRow>> {
  const rows = new Map<string, TorchRow>();
  const spec = env("FLEX_BENCH_TORCH", "auto");
  const save = Deno.env.get("FLEX_BENCH_TORCH_SAVE");
  const saved: string[] = [];
  const take = (line: string) => {
    if (!line.startsWith("{")) return;
    let r: TorchRow & { meta?: Record<string, unknown> };
    try { r = JSON.parse(line); } catch { return; }
    saved.push(line);
    if (r.meta) { console.log(`PyTorch: ${Object.entries(r.meta).map(([k, v]) => `${k} ${v}`).join(", ")}`); return; }
    rows.set(torchKey(r.case, r.dtype, r.shape), r);
    console.log(`  [torch ${elapsed()}] ${r.shape} ${r.case} ${r.dtype}: ` +
      (r.error ? `error: ${r.error.slice(0, 120)}` : `fwd ${fmt(r.fwd_ms, 3)} ms, bwd ${fmt(r.bwd_ms ?? undefined, 3)} ms, density ${fmt(r.density, 3)}`));
  };
  if (spec === "0" || spec === "off") return rows;
  if (spec !== "auto" && spec !== "1") {
    console.log(`PyTorch: results from ${spec}`);
    for (const line of (await Deno.readTextFile(spec)).split("\n")) take(line.trim());
    return rows;
  }
  const probe = await new Deno.Command("python3", { args: ["-c", "import torch"], stdout: "null", stderr: "null" }).output()
    .catch(() => undefined);
  if (!probe?.success) {
    console.log("PyTorch: not available (python3 -c 'import torch' failed): no PyTorch columns");
    return rows;
  }
  const budget = Number(env("FLEX_BENCH_TORCH_BUDGET_S", "240"));
  const args = ["bench/torch_flex.py", "--json", "--shapes", shapeSpecs.join(","), "--cases", caseNames.join(","),
    "--dtypes", [...new Set(dtypes.map(storage))].join(","), "--iters", String(iters), "--reps", String(reps), "--row-ms", String(rowMs),
    "--target-ms", String(targetMs), "--budget-s", String(budget), "--quiet", ...(skipBwd ? ["--no-bwd"] : [])];
  console.log(`PyTorch: python3 ${args.join(" ")}`);
  const child = new Deno.Command("python3", { args, stdout: "piped", stderr: "inherit" }).spawn();
  const kill = setTimeout(() => {
    console.log(`PyTorch: still running after ${budget + 90} s; stopping it`);
    try { child.kill("SIGKILL"); } catch { /* already gone */ }
  }, (budget + 90) * 1000);
  let buf = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const line of lines) take(line.trim());
  }
  take(buf.trim());
  const status = await child.status;
  clearTimeout(kill);
  if (!status.success) console.log(`PyTorch: the child exited with ${status.code}${status.signal ? ` (${status.signal})` : ""}`);
  if (save) await Deno.writeTextFile(save, saved.join("\n") + "\n");
  return rows;
}

// ---- ours ---------------------------------------------------------------------------------------------------------

interface Row {
  provider: string; shape: string; key: string; case: string; dtype: Dt; density: number;
  fwd?: number; bwd?: number; flops: number; note: string;
}
interface Other { provider: string; case: string; shape: string; ms?: number; tflops?: number; pct?: number; note: string }
interface Peaks { fma: number; mma: number | string }
const rows: Row[] = [];
const others: Other[] = [];
const peaks = new Map<string, Peaks>();

// q, k, v, dOut per shape: randn (f32), and the same values rounded to f16 for the f16 rows (tensor(…, { dtype })).
const inputs = new Map<string, Tensor[]>();
function inputsFor(B: number, H: number, S: number, D: number, dtype: "f16" | "f32"): Tensor[] {
  const key = `${B}x${H}x${S}x${D}|${dtype}`;
  let ts = inputs.get(key);
  if (!ts) {
    ts = dtype === "f32"
      ? [1, 2, 3, 4].map((seed) => randn([B, H, S, D], { seed }))
      : inputsFor(B, H, S, D, "f32").map((t) => tensor(t.data!, t.shape, { dtype } as Parameters<typeof tensor>[2]));
    if ((ts[0].dtype as string) !== dtype) throw new Error(`asked for ${dtype} inputs, got ${ts[0].dtype}`);
    inputs.set(key, ts);
  }
  return ts;
}

const torch = await torchRows();
/** GPU ms of back-to-back launches before each row's timings (FLEX_BENCH_WARM_MS). */
const WARM_MS = Number(Deno.env.get("FLEX_BENCH_WARM_MS") ?? 200);

for (const provider of providers) {
  Deno.env.set("FLEX_WEBGPU", provider);
  await resetRuntime();
  let info;
  try {
    info = await deviceInfo();
  } catch (e) {
    console.log(`${provider}: unavailable — ${errText(e)}`);
    continue;
  }
  console.log(`\n== provider ${info.provider}: ${info.adapter} [${elapsed()}]`);
  const ex = await getExecutor();
  // Single profiles swing 2–10× on a GPU coming out of idle (clocks ramp, completion callbacks lag): a profile of
  // one launch (it also compiles), a warm-up by time, then the best of up to `reps` profiles of up to `iters` launches each,
  // fewer where a launch is long (FLEX_BENCH_TARGET_MS, FLEX_BENCH_ROW_MS) so the big shapes fit the time budget.
  const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
  const best = (roots: Tensor[], maxN = iters) =>
    // the compile just left the GPU idle (the H200 drops to 345 MHz within a second): bench/warm_best.ts warms the
    // clocks in ONE submit first — the first row of session 5's call-3 table still ran 1.6× slow after several small profiles
    warmBest(profile, roots, { warmMs: WARM_MS, maxWarm: 1000, maxN, targetMs, reps, rowMs });

  const probe = fmaProbe();
  const probeMs = await best([probe], 5);
  const fma = fmaProbeFlops(probe) / (probeMs * 1e-3) / 1e12;
  const mma = info.features.includes(MMA_FEATURE) ? await mmaPeakChild(provider) : `no ${MMA_FEATURE}`;
  peaks.set(provider, { fma, mma });
  console.log(`peaks: FMA f32 ${fmt(fma, 1)} TF/s, MMA f16→f32 ${typeof mma === "number" ? `${fmt(mma, 1)} TF/s` : `n/a (${mma})`}`);
  others.push({ provider, case: "fma-probe (f32)", shape: "-", ms: probeMs, tflops: fma, pct: 100, note: "" });
  others.push(typeof mma === "number"
    ? { provider, case: "mma-probe (f16→f32)", shape: "-", tflops: mma, pct: 100 * mma / fma, note: "% is of the FMA peak" }
    : { provider, case: "mma-probe (f16→f32)", shape: "-", note: `n/a: ${mma}` });
  await decodeRows(provider, fma, (t) => best([t]));

  const shapes = shapeSpecs.slice(0, provider === "native" ? nativeShapes : Infinity);
  if (shapes.length < shapeSpecs.length) console.log(`(native: only ${shapes.join(", ")}; FLEX_BENCH_NATIVE_SHAPES=all for every shape)`);
  // a bar on a terminal (silent when piped); cleared before each printed row, advanced after it
  const bar = progress(`bench ${provider}`, shapes.length * caseNames.length * dtypes.length);
  let doneRows = 0;
  for (const spec of shapes) {
    const [B, H, S, D] = spec.split("x").map(Number);
    const shape = `B${B} H${H} S${S} D${D}`;
    bar.clear();
    console.log(`  -- ${shape} [${elapsed()}]`);
    for (const name of caseNames) {
      let c: BenchCase, blockMask: BlockMask | undefined;
      try {
        c = buildCase(name, S, H);
        blockMask = c.mask ? await createBlockMask(c.mask, null, null, S, S) : undefined;
      } catch (e) {
        for (const dtype of dtypes) rows.push({ provider, shape, key: spec, case: name, dtype, density: NaN, flops: 0, note: `n/a: ${errText(e)}` });
        bar.clear();
        console.log(`  [${provider} ${elapsed()}] ${shape} ${name}: n/a: ${errText(e)}`);
        bar.update(doneRows += dtypes.length, `${shape} ${name}`);
        continue;
      }
      const density = blockMask ? 1 - blockMask.sparsity() / 100 : 1;
      const flops = B * H * S * S * D * density;
      for (const dtype of dtypes) {
        const row: Row = { provider, shape, key: spec, case: name, dtype, density, flops, note: "" };
        rows.push(row);
        const opts = { blockMask, scoreMod: c.scoreMod, ...(dtype === "f32ieee" ? { kernelOptions: { f32Precision: "ieee" as const } } : {}) };
        try {
          const [q, k, v, dOut] = inputsFor(B, H, S, D, storage(dtype));
          const out = flexAttention(q, k, v, opts);
          if ((out.dtype as string) !== storage(dtype)) row.note = `out is ${out.dtype}; `;
          row.fwd = await best([out]);
          if (!skipBwd) {
            try {
              const [, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
              row.bwd = await best(back(dOut)) - row.fwd;
            } catch (e) {
              row.note += `bwd n/a: ${errText(e)}`;
            }
          }
        } catch (e) {
          row.note = `n/a: ${errText(e)}`;
        }
        const t = torch.get(torchKey(name, storage(dtype), spec));
        bar.clear();
        console.log(`  [${provider} ${elapsed()}] ${shape} ${name} ${dtype}: fwd ${fmt(row.fwd, 3)} ms ${fmt(tf(4, row, row.fwd), 1)} TF/s` +
          (skipBwd ? "" : `, bwd ${fmt(row.bwd, 3)} ms ${fmt(tf(10, row, row.bwd), 1)} TF/s`) +
          (t && !t.error ? ` | PyTorch fwd ${fmt(t.fwd_ms, 3)} bwd ${fmt(t.bwd_ms, 3)}` : "") + (row.note ? ` (${row.note})` : ""));
        bar.update(++doneRows, `${shape} ${name} ${dtype}`);
      }
    }
    await materializedRow(provider, B, H, S, D, info.limits.maxStorageBufferBindingSize, fma, (t) => best([t], Math.max(1, iters >> 1)));
  }
}

// bench/peaks.ts in a child process (raw WebGPU on a device of its own; a Dawn crash there cannot end this run)
async function mmaPeakChild(provider: string): Promise<number | string> {
  const script = new URL("./peaks.ts", import.meta.url).pathname;
  try {
    const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, provider], stdout: "piped", stderr: "piped" }).output();
    const last = (b: Uint8Array) => new TextDecoder().decode(b).trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(last(out.stdout)).mma;
    } catch {
      return `MMA probe exited with ${out.code}: ${last(out.stderr).slice(0, 100)}`;
    }
  } catch (e) {
    return `MMA probe did not start: ${errText(e)}`;
  }
}

function tf(mult: number, row: Row, ms: number | undefined) {
  return ms === undefined ? NaN : mult * row.flops / (ms * 1e-3) / 1e12;
}

// The materialized-mask baseline (f32 causal): B·H·S² f32 scores; only where they fit one binding.
async function materializedRow(provider: string, B: number, H: number, S: number, D: number, limit: number, fma: number,
  run: (t: Tensor) => Promise<number>) {
  const shape = `B${B} H${H} S${S} D${D}`;
  const bytes = B * H * S * S * 4;
  if (bytes > limit) {
    others.push({ provider, case: "materialized causal f32", shape, note: `n/a: ${(bytes / 2 ** 30).toFixed(1)} GiB of scores > ${(limit / 2 ** 30).toFixed(1)} GiB binding limit` });
    return;
  }
  try {
    const [q, k, v] = inputsFor(B, H, S, D, "f32");
    const ms = await run(denseAttention(q, k, v, { mask: createMask(causalMask, 1, 1, S, S) }));
    const t = 4 * B * H * S * S * D * 0.5 / (ms * 1e-3) / 1e12;
    others.push({ provider, case: "materialized causal f32", shape, ms, tflops: t, pct: 100 * t / fma, note: "useful FLOPs (½)" });
  } catch (e) {
    others.push({ provider, case: "materialized causal f32", shape, note: `n/a: ${errText(e)}` });
  }
}

// Decoding (few query rows over a long cache, f32): the grid alone cannot fill the GPU; split-KV off vs auto.
async function decodeRows(provider: string, peak: number, run: (t: Tensor) => Promise<number>) {
  for (const [B, H, Sq, Skv, D] of decodeShapes) {
    const shape = `B${B} H${H} Sq${Sq} Skv${Skv} D${D}`;
    const q = randn([B, H, Sq, D], { seed: 5 }), k = randn([B, H, Skv, D], { seed: 6 }), v = randn([B, H, Skv, D], { seed: 7 });
    const times: number[] = [];
    for (const [label, splitKv] of [["split-KV off", 1], ["split-KV auto", undefined]] as const) {
      const ms = await run(flexAttention(q, k, v, { kernelOptions: { splitKv } }));
      times.push(ms);
      const t = 4 * B * H * Sq * Skv * D / (ms * 1e-3) / 1e12;
      const gbs = 2 * B * H * Skv * D * 4 / (ms * 1e-3) / 1e9;
      others.push({ provider, case: `flex decode ${label}`, shape, ms, tflops: t, pct: 100 * t / peak, note: `K+V read ${gbs.toFixed(0)} GB/s` });
    }
    others.push({ provider, case: "decode speed-up", shape, note: `${(times[0] / times[1]).toFixed(2)}× (off / auto)` });
  }
}

// ---- printing -----------------------------------------------------------------------------------------------------

function printTable(header: string[], table: string[][]) {
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
  const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
  console.log(line(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of table) console.log(line(r));
}

const pct = (x: number, peak: number | string | undefined) =>
  !Number.isFinite(x) ? "—" : typeof peak === "number" ? (100 * x / peak).toFixed(1) : "n/a";
const pcts = (x: number, p: Peaks | undefined) => Number.isFinite(x) ? `${pct(x, p?.fma)}/${pct(x, p?.mma)}` : "—";
const ratio = (theirs: number | undefined, ours: number | undefined) =>
  theirs !== undefined && ours !== undefined && theirs > 0 && ours > 0 ? `${(theirs / ours).toFixed(2)}×` : "—";

const HEADER = ["provider", "shape", "case", "dtype", "density", "fwd ms", "fwd TF/s", "fwd %FMA/%MMA", "bwd ms", "bwd TF/s",
  "bwd %FMA/%MMA", "PyTorch fwd ms", "PyTorch bwd ms", "vs PyTorch fwd", "vs PyTorch bwd", "note"];
function rowCells(r: Row): string[] {
  const p = peaks.get(r.provider);
  const t = torch.get(torchKey(r.case, storage(r.dtype), r.key));
  const tfF = tf(4, r, r.fwd), tfB = tf(10, r, r.bwd);
  return [r.provider, r.shape, r.case, r.dtype, fmt(r.density, 3), fmt(r.fwd, 3), fmt(tfF), pcts(tfF, p),
    fmt(r.bwd, 3), fmt(tfB), pcts(tfB, p),
    t?.error ? "error" : fmt(t?.fwd_ms, 3), t?.error ? "error" : fmt(t?.bwd_ms ?? undefined, 3),
    ratio(t?.fwd_ms, r.fwd), ratio(t?.bwd_ms ?? undefined, r.bwd),
    [r.note, t?.error ? `PyTorch: ${t.error.slice(0, 80)}` : ""].filter(Boolean).join("; ")];
}
// PyTorch's rows alone (a run with no provider, e.g. FLEX_BENCH_PROVIDERS= to collect them)
function torchCells(t: TorchRow): string[] {
  const [B, H, S, D] = t.shape.split("x").map(Number);
  const flops = B * H * S * S * D * (t.density ?? NaN);
  const tps = (m: number, ms: number | undefined | null) => ms == null ? NaN : m * flops / (ms * 1e-3) / 1e12;
  return ["flex_attention", t.shape, t.case, t.dtype, fmt(t.density, 3), fmt(t.fwd_ms, 3), fmt(tps(4, t.fwd_ms)),
    fmt(t.bwd_ms ?? undefined, 3), fmt(tps(10, t.bwd_ms)), t.error ?? ""];
}

console.log(`\nFLOPs: fwd 4·B·H·S²·D·density, bwd 10·…; % peak = fwd or bwd TF/s over the FMA f32 / MMA f16→f32 peak measured` +
  ` above; vs PyTorch = PyTorch ms / our ms (> 1: we are faster). [${elapsed()}]`);
if (rows.length) printTable(HEADER, rows.map(rowCells));
else if (torch.size) printTable(["PyTorch", "shape", "case", "dtype", "density", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s", "note"], [...torch.values()].map(torchCells));
if (others.length) {
  console.log("");
  printTable(["provider", "case", "shape", "ms", "TF/s", "% FMA peak", "note"],
    others.map((r) => [r.provider, r.case, r.shape, fmt(r.ms, 3), fmt(r.tflops), fmt(r.pct, 1), r.note]));
}
