/**
 * `deno task demo`: walks the gallery. For every mod: the BlockMask picture, its sparsity, the error of the
 * fused kernel against the float64 oracle, and a small seed-style table — flex vs the materialized-mask
 * baseline (ms) — at a size that fits the provider found. It starts by saying which provider the runtime
 * chose and why (FLEX_WEBGPU forces one; FLEX_LOG=info shows the kernel builds); on a terminal a progress bar
 * follows the sections.
 */
import { createBlockMask, createMask, flexAttention, GALLERY, providerReport, randn, type Tensor } from "../mod.ts";
import { progress } from "../lib/runtime/progress.ts";
import { getExecutor } from "../effect.ts";
import { denseAttention } from "../lib/attention/baselines.ts";
import { flexReference } from "../lib/runtime/cpu/flex_reference.ts";
import { makeFlexCall } from "../lib/attention/flex_attention.ts";
import { Effect } from "effect";
import { writeGalleryPictures } from "./pictures.ts";

const started = performance.now();
const info = await providerReport();
console.log(`provider: ${info.provider} — adapter: ${info.adapter}`);
console.log(`  why: ${info.reason}`);
for (const s of info.skipped) console.log(`  passed over: ${s}`);
const onCpu = info.provider === "cpu";
const software = /llvmpipe|lavapipe|swiftshader/i.test(info.adapter);
const S = onCpu ? 256 : software ? 256 : 1024;
const [B, H, D] = [1, 2, 64];
const blockSize = S >= 1024 ? 128 : 32;
console.log(`sizes: B=${B} H=${H} S=${S} D=${D}, BlockMask block ${blockSize}\n`);

const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
const executor = await getExecutor();
// GPU: device time of the kernels; CPU: wall time of a realize on the float64 executor
const time = async (t: Tensor) => {
  if (!onCpu) return await Effect.runPromise(executor.profile([t], 5));
  const t0 = performance.now();
  await t.toArray();
  return performance.now() - t0;
};

const rows: string[][] = [];
const fmt = (x: number, d = 3) => Number.isFinite(x) ? x.toFixed(d) : "—";

const entries = Object.entries(GALLERY);
const bar = progress("demo", entries.length);
for (const [name, entry] of entries) {
  bar.update(rows.length, name);
  const mod = entry.make(S, H);
  const blockMask = entry.kind === "mask"
    // deno-lint-ignore no-explicit-any
    ? await createBlockMask(mod as any, null, null, S, S, { blockSize })
    : undefined;
  // deno-lint-ignore no-explicit-any
  const options = entry.kind === "mask" ? { blockMask } : { scoreMod: mod as any };
  const out = flexAttention(q, k, v, options);
  const got = await out.toArray();
  const call = makeFlexCall(q, k, v, options);
  const capData = (cs: readonly unknown[]) => cs.map((c) => (c as Tensor).data!);
  const ref = flexReference(call, {
    q: q.data!, k: k.data!, v: v.data!,
    scoreCaptures: capData(call.scoreMod.captures), maskCaptures: capData(call.blockMask.tracedMask.captures),
  });
  let maxErr = 0;
  for (let i = 0; i < got.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - ref.out[i]));

  const params = "params" in entry && entry.params && entry.params !== "none" ? ` — ${entry.params}` : "";
  bar.clear();
  console.log(`── ${name} (${entry.kind} mod)${params}`);
  if (blockMask) {
    console.log(blockMask.toString());
    console.log(`sparsity ${blockMask.sparsity().toFixed(1)}%`);
  }
  console.log(`max |flex − float64 oracle| = ${maxErr.toExponential(2)}\n`);

  const flexMs = await time(out);
  let denseMs = NaN;
  // deno-lint-ignore no-explicit-any
  const dense = entry.kind === "mask" ? denseAttention(q, k, v, { mask: createMask(mod as any, 1, 1, S, S) }) : undefined;
  if (dense) denseMs = await time(dense);
  rows.push([name, blockMask ? blockMask.sparsity().toFixed(1) : "0.0", maxErr.toExponential(1), fmt(flexMs), fmt(denseMs)]);
}

bar.update(entries.length, "all sections");
const header = ["mod", "sparsity %", "max err", onCpu ? "flex ms (cpu)" : "flex ms", onCpu ? "materialized ms (cpu)" : "materialized ms"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ");
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows) console.log(line(r));
if (onCpu) console.log(`\n(ran on the float64 CPU executor: ${info.reason}; times are wall-clock realizes, not GPU kernels)`);
console.log("\n── paged KV cache: decoding over scattered pages (examples/paged_decode.ts)");
await import("./paged_decode.ts");
// the gallery's pictures (BlockMask and score PNG/SVG); `deno task demo --pictures=DIR` picks the folder
// deno-lint-ignore no-explicit-any
const cliArgs: string[] = (globalThis as any).Deno?.args ?? (globalThis as any).process.argv.slice(2);
const picturesDir = cliArgs.find((a) => a.startsWith("--pictures="))?.slice("--pictures=".length) || "./flex-pictures";
const pictures = await writeGalleryPictures(picturesDir);
console.log(`\n── pictures: ${pictures.length} files (BlockMask and score PNG + SVG) in ${picturesDir}/`);
console.log(`\ndemo finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
