/**
 * The browser page's script (bundled into dist/main.js by `deno task browser`): runs the flex forward of
 * example.ts on whatever the library finds (navigator.gpu, else the CPU executor), draws the BlockMask, checks
 * the output against the float64 CPU executor in the page, and shows what ran. With `?report=1` it also
 * POSTs the result to /result (the CI test's server). `?provider=native` forces the browser's WebGPU (auto mode
 * passes over software adapters such as SwiftShader, where the CPU executor is usually faster).
 */
/// <reference lib="dom" />
import { Effect } from "effect";
import { blockMaskSvg, providerReport, setPoison, type Tensor, type TypedData } from "../../mod.ts";
import { createCpuExecutor, Gpu, layer, runPromise } from "../../effect.ts";
import { buildExample, maxAbsError, SIZES, TOLERANCE } from "./example.ts";

const params = new URLSearchParams(location.search);
const seed = Number(params.get("seed") ?? Math.floor(Math.random() * 2 ** 31));
const forced = params.get("provider"); // null: auto (tensor.toArray())
const show = (id: string, text: string) => { document.getElementById(id)!.textContent = text; };

async function run(): Promise<Record<string, unknown>> {
  setPoison(true); // unwritten outputs read back as NaN
  show("status", `running (seed ${seed}) …`);
  const t0 = performance.now();
  const { mask, out } = await buildExample(seed);
  document.getElementById("mask")!.innerHTML = blockMaskSvg(mask, { title: "causal ∧ sliding window 64" });
  const { values, provider, adapter, why } = forced ? await realizeOn(forced, out) : await realizeAuto(out);
  const ms = performance.now() - t0;
  const [want] = await runPromise(createCpuExecutor().realize([out]));
  const err = maxAbsError(values, want);
  const gpu = (navigator as { gpu?: unknown }).gpu !== undefined;
  return {
    ok: err <= TOLERANCE && values.length === SIZES.B * SIZES.H * SIZES.S * SIZES.D,
    seed, provider, adapter, why, navigatorGpu: gpu, maxErr: err, ms: Math.round(ms),
    userAgent: navigator.userAgent, sparsity: mask.sparsity(), out: Array.from(values),
  };
}

type Realized = { values: TypedData; provider: string; adapter: string; why: string };

/** The default runtime's choice (what `tensor.toArray()` uses), with its reasons. */
async function realizeAuto(out: Tensor): Promise<Realized> {
  const values = await out.toArray();
  const r = await providerReport();
  return { values, provider: r.provider, adapter: r.adapter, why: [r.reason, ...r.skipped].join("; ") };
}

/** One provider, forced through the Gpu layer (scoped: its device is destroyed afterwards). */
function realizeOn(provider: string, out: Tensor): Promise<Realized> {
  return runPromise(Effect.scoped(Effect.gen(function* () {
    const { executor } = yield* Gpu;
    const [values] = yield* executor.realize([out]);
    return { values, provider: executor.info.provider, adapter: executor.info.adapter, why: `forced: provider=${provider}` };
  }).pipe(Effect.provide(layer({ provider })))));
}

run().catch((e) => ({ ok: false, seed, error: `${e?.name ?? "Error"}: ${e?.message ?? e}` })).then(async (r) => {
  const { out: _out, ...summary } = r as Record<string, unknown>;
  show("status", r.ok ? "done" : "FAILED");
  show("result", JSON.stringify(summary, null, 2));
  console.log("FLEX_RESULT " + JSON.stringify(summary));
  if (params.get("report") === "1") await fetch("/result", { method: "POST", body: JSON.stringify(r) });
});
