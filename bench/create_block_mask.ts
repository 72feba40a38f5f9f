/**
 * `deno run -A bench/create_block_mask.ts [S ...]` (default 4096 32768 131072): createBlockMask for causal,
 * sliding window (1024) and document masks (B = H = 1, block 128) on the runtime's provider. Per row: the
 * wall time of `await createBlockMask(...)` (median of several calls after a warm-up: states kernel + tables
 * kernel + one readback + wrapping), the GPU time of the two kernels alone (timestamp queries, `profile`),
 * the sparsity, and whether the tables equal the CPU executor's (checked at S ≤ 32768). Target (issue #8):
 * causal S = 32768 ≤ 2 ms; PyTorch on the H200: 2.37 ms compiled, 8.1 ms eager.
 * FLEX_CBM_CASES=causal,sliding,document picks cases. FLEX_CBM_ROWS=1,4,8 then times the states kernel with each unroll (rows of its column per step,
 * lib/lower/plan_mask_blocks.ts maskBlocksTuning) at the same sizes (≤ 32768), its states checked against the default's;
 * FLEX_CBM_GROUPS=1,8,32 the same for the kv blocks one workgroup walks (blocksPerGroup).
 * FLEX_CBM_PHASES=1 then splits the wall of each row's calls by the executor's trace (lib/runtime/debug.ts setRealizeTrace):
 * host work before the submit, the submit, the one wait (error scopes + readbacks, GPU work included), the GPU time
 * of the realize's own pass (timestamps), the finish, and createBlockMask's work outside the realize (medians of 20 calls);
 * causal rows again with a fresh readback buffer per call (gpuExecutorTuning.poolReadbacks = false).
 */
import { Effect } from "effect";
import { andMasks, type BlockMask, causalMask, createBlockMask, documentMask, type MaskMod, slidingWindow } from "../mod.ts";
import { getExecutor } from "../effect.ts";
import { maskBlocksNode } from "../lib/blockmask/mask_blocks.ts";
import { blockTablesNode, PARTS } from "../lib/blockmask/block_tables.ts";
import { traceMaskMod } from "../lib/mods/trace.ts";
import { createCpuExecutor } from "../lib/runtime/cpu/executor.ts";
import { setRealizer, getRealizer } from "../lib/tensor/realize.ts";
import { runPromise } from "../lib/runtime/run.ts";
import { maskBlocksTuning } from "../lib/lower/plan_mask_blocks.ts";
import { type RealizeTrace, setRealizeTrace } from "../lib/runtime/debug.ts";
import { gpuExecutorTuning } from "../lib/runtime/gpu_executor.ts";

const sizes = Deno.args.length ? Deno.args.map(Number) : [4096, 32768, 131072];
const ex = await getExecutor();
console.log(`provider: ${ex.info.provider} | ${ex.info.adapter}`);

/** Documents of pseudo-random lengths (64…4096 tokens) covering S. */
function docIds(S: number): Int32Array {
  const ids = new Int32Array(S);
  let seed = 7, doc = 0, left = 0;
  for (let i = 0; i < S; i++) {
    if (left === 0) { seed = (seed * 1103515245 + 12345) % 2 ** 31; left = 64 + (seed % 4033); doc++; }
    ids[i] = doc;
    left--;
  }
  return ids;
}

const allCases: [string, (S: number) => MaskMod][] = [
  ["causal", () => causalMask],
  ["sliding 1024", () => andMasks(causalMask, slidingWindow(1024))],
  ["document", (S) => andMasks(causalMask, documentMask(docIds(S)))],
];
// FLEX_CBM_CASES=causal,document: a subset (by the first word of the name)
const only = (Deno.env.get("FLEX_CBM_CASES") ?? "").split(",").filter(Boolean);
const cases = only.length ? allCases.filter(([n]) => only.includes(n.split(" ")[0])) : allCases;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const tablesOf = (m: BlockMask) =>
  [m.kvNumBlocks, m.kvIndices, m.fullKvNumBlocks, m.fullKvIndices, m.qNumBlocks, m.qIndices, m.fullQNumBlocks, m.fullQIndices];

/** createBlockMask on the CPU executor (the reference tables). */
async function onCpu(mod: MaskMod, S: number): Promise<BlockMask> {
  const cpu = createCpuExecutor(), prev = getRealizer()!;
  setRealizer(async (t) => (await runPromise(cpu.realize([t])))[0]);
  try { return await createBlockMask(mod, null, null, S, S); } finally { setRealizer(prev); }
}

/**
 * FLEX_CBM_PHASES=1: where the wall of a call goes, from the executor's own trace (setRealizeTrace): medians over
 * 20 traced calls right after the untraced ones (the same GPU state); the trace adds two timestamps and a 16-byte map.
 */
const tracePhases = !!Deno.env.get("FLEX_CBM_PHASES");
const phases: string[][] = [];
async function tracedPhases(mod: MaskMod, S: number): Promise<string[]> {
  const traces: RealizeTrace[] = [], walls: number[] = [];
  setRealizeTrace((t) => traces.push(t));
  try {
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await createBlockMask(mod, null, null, S, S);
      walls.push(performance.now() - t0);
    }
  } finally { setRealizeTrace(undefined); }
  const med = (f: (t: RealizeTrace) => number | undefined) => {
    const xs = traces.map(f).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs).toFixed(3) : "-";
  };
  const outside = median(walls.map((w, i) => w - (traces[i]?.wallMs ?? 0)));
  return [median(walls).toFixed(3), med((t) => t.wallMs), med((t) => t.hostMs), med((t) => t.submitMs), med((t) => t.waitMs), med((t) => t.readMs),
    med((t) => t.gpuMs), med((t) => t.finishMs), outside.toFixed(3)];
}

const rows: string[][] = [];
for (const S of sizes) {
  for (const [name, make] of cases) {
    const mod = make(S);
    const first = performance.now();
    const m = await createBlockMask(mod, null, null, S, S);
    const firstMs = performance.now() - first;
    const walls: number[] = [];
    const reps = S <= 32768 ? 20 : 5;
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await createBlockMask(mod, null, null, S, S);
      walls.push(performance.now() - t0);
    }
    if (tracePhases) {
      phases.push([name, String(S), "pooled", ...await tracedPhases(mod, S)]);
      if (name === "causal") { // the same calls with a fresh readback buffer each
        gpuExecutorTuning.poolReadbacks = false;
        try { phases.push([name, String(S), "fresh", ...await tracedPhases(mod, S)]); } finally { gpuExecutorTuning.poolReadbacks = true; }
      }
    }
    // the two kernels alone (same nodes createBlockMask builds)
    const traced = traceMaskMod(mod);
    const states = maskBlocksNode({ mask: traced, B: 1, H: 1, qLen: S, kvLen: S, blockSize: [128, 128] });
    const tables = blockTablesNode({ B: 1, H: 1, qLen: S, kvLen: S, blockSize: [128, 128], source: "states", separateFull: true, parts: PARTS }, states);
    const gpuMs: number = await Effect.runPromise(ex.profile([tables], 10));
    const statesMs: number = await Effect.runPromise(ex.profile([states], 10));
    let same = "-";
    if (S <= 32768 && ex.info.provider !== "cpu") {
      const ref = await onCpu(mod, S);
      same = String(tablesOf(m).every((t, i) => {
        const r = tablesOf(ref)[i];
        return t === null ? r === null : r !== null && t.data!.length === r.data!.length && t.data!.every((v, j) => v === r.data![j]);
      }));
    }
    rows.push([name, String(S), median(walls).toFixed(2), Math.min(...walls).toFixed(2), gpuMs.toFixed(3), statesMs.toFixed(3), firstMs.toFixed(0), m.sparsity().toFixed(2), same]);
    console.log(rows[rows.length - 1].join("  "));
  }
}

const head = ["mask", "S", "wall ms (median)", "wall ms (min)", "GPU ms (states+tables)", "GPU ms (states)", "first call ms", "sparsity %", "tables == CPU"];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => "| " + r.map((c, i) => c.padEnd(w[i])).join(" | ") + " |";
console.log(["", line(head), "|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|", ...rows.map(line)].join("\n"));
console.log("PyTorch createBlockMask causal S=32768 on the H200 (issue #8): 2.37 ms compiled, 8.1 ms eager");

/** Times the states kernel at each value of a maskBlocksTuning knob (states checked against the default's). */
async function sweepKnob(knob: "rowsPerStep" | "blocksPerGroup", values: number[], label: string) {
  console.log(`\n| mask | S | ${values.map((r) => `states ms, ${r} ${label}`).join(" | ")} | same states |`);
  console.log(`|${"---|".repeat(values.length + 3)}`);
  const statesOf = (mod: MaskMod, S: number) => maskBlocksNode({ mask: traceMaskMod(mod), B: 1, H: 1, qLen: S, kvLen: S, blockSize: [128, 128] });
  const saved = maskBlocksTuning[knob];
  for (const S of sizes.filter((x) => x <= 32768)) {
    for (const [name, make] of cases) {
      const mod = make(S);
      const want = (await Effect.runPromise(ex.realize([statesOf(mod, S)])))[0];
      const cells: string[] = [];
      let same = true;
      for (const r of values) {
        maskBlocksTuning[knob] = r;
        const node = statesOf(mod, S);
        const got = (await Effect.runPromise(ex.realize([node])))[0];
        same &&= got.length === want.length && got.every((v, i) => v === want[i]);
        cells.push((await Effect.runPromise(ex.profile([node], 10)) as number).toFixed(3));
      }
      maskBlocksTuning[knob] = saved;
      console.log(`| ${name} | ${S} | ${cells.join(" | ")} | ${same} |`);
    }
  }
}
const knobValues = (v: string) => (Deno.env.get(v) ?? "").split(",").filter(Boolean).map(Number);
if (knobValues("FLEX_CBM_ROWS").length) await sweepKnob("rowsPerStep", knobValues("FLEX_CBM_ROWS"), "rows/step");
if (knobValues("FLEX_CBM_GROUPS").length) await sweepKnob("blocksPerGroup", knobValues("FLEX_CBM_GROUPS"), "kv blocks/workgroup");

if (phases.length) {
  console.log("\n| mask | S | readback | wall ms | realize wall | host before submit | submit | wait (scopes + maps) | of it: copying out | GPU (timestamps) | finish | outside the realize |\n|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of phases) console.log(`| ${r.join(" | ")} |`);
}
