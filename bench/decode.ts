/**
 * Decoding bandwidth: the decode tile (kernels/flex_decode.ts) against a plain copy kernel measured in the same run,
 * the query-tile forward with its split-KV (the path before the decode tile), and PyTorch's flex decoding
 * (bench/torch_decode.py's JSON lines, FLEX_DECODE_TORCH=path) on the same shapes. Dawn, timestamp queries.
 *
 *   deno run -A bench/decode.ts
 *   FLEX_DECODE_SHAPES=1x32x8x1x32768x128,1x16x16x1x32768x64,8x16x16x4x8192x64   B×Hq×Hkv×Sq×Skv×D (no mask)
 *   FLEX_DECODE_DTYPES=f16,f32
 *   FLEX_DECODE_SWEEP=1x32x8x1x32768x128          shapes that also sweep split counts and tile variants (shape:f16 = one dtype)
 *   FLEX_DECODE_SPLITS=8,16,32,64                 the sweep's split counts
 *   FLEX_DECODE_VARIANTS='[{"KPS":4},{"L":8,"KPS":8,"splitKv":2}]'   the sweep's tile variants (config fields replaced;
 *                                                 splitKv pins the split count), JSON
 *   FLEX_DECODE_TORCH=path                        PyTorch rows (else no PyTorch column)
 *   FLEX_DECODE_COPY_MB=256,1024                  copy sizes (the best is the reference)
 *
 * GB/s = bytes of K + V + q + out / time (each read or written once); copy GB/s = (read + write bytes) / time.
 * Each figure is the best of FLEX_DECODE_REPS (5) profiles of FLEX_DECODE_ITERS (20) launches in one submit.
 * The decode rows are checked against the query-tile forward's result on the same inputs (rel. L2).
 */
import { Effect } from "effect";
import { flexAttention, randn, type Tensor, tensor } from "../mod.ts";
import { dawnSource, requestAdapter } from "../lib/runtime/providers.ts";
import { capabilitiesOf, createDevice, deviceInfoOf } from "../lib/runtime/device.ts";
import { createGpuExecutor } from "../lib/runtime/gpu_executor.ts";
import { decodeFill, flexDecodeSwitch } from "../lib/lower/flex_decode_config.ts";
import { planFlex } from "../lib/lower/plan_flex.ts";
import type { FlexCall } from "../lib/attention/flex_attention.ts";
import { warmProfilesByDefault } from "./warm_best.ts";

const env = (k: string, d: string) => Deno.env.get(k) ?? d;
const list = (k: string, d: string) => env(k, d).split(",").map((s) => s.trim()).filter(Boolean);
warmProfilesByDefault();
const shapes = list("FLEX_DECODE_SHAPES", "1x32x8x1x32768x128,1x16x16x1x32768x64,8x16x16x4x8192x64");
const dtypes = list("FLEX_DECODE_DTYPES", "f16,f32") as ("f16" | "f32")[];
const sweep = new Set(list("FLEX_DECODE_SWEEP", "1x32x8x1x32768x128"));
const iters = Number(env("FLEX_DECODE_ITERS", "20"));
const splitList = list("FLEX_DECODE_SPLITS", "8,16,32,64").map(Number);
/** Tile variants of the sweep (fields of the chosen config replaced), JSON. */
const variants = JSON.parse(env("FLEX_DECODE_VARIANTS", '[{"KPS":4},{"KPS":8},{"L":8,"KPS":8},{"L":32,"KPS":8},{"KPS":2}]')) as
  (Partial<{ RT: number; L: number; KPS: number; NT: number; prefetch: boolean }> & { splitKv?: number })[];
const reps = Number(env("FLEX_DECODE_REPS", "5"));

const source = dawnSource();
const adapter = await Effect.runPromise(requestAdapter(source));
const device = await Effect.runPromise(createDevice(adapter, source.name));
const caps = capabilitiesOf(adapter, device);
const info = deviceInfoOf(source.name, adapter, device);
const ex = createGpuExecutor(device, caps, info);
console.log(`device: ${info.adapter} (${info.provider}), subgroups ${caps.subgroupMinSize}–${caps.subgroupMaxSize}`);

// ---- the copy kernel: one vec4 per invocation, read once and written once ---------------------------------------
async function copyGbs(bytes: number): Promise<number> {
  const n4 = bytes / 16;
  const code = `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = g.x + g.y * n.x * 256u;
  if (i < ${n4}u) { dst[i] = src[i]; }
}`;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const src = device.createBuffer({ size: bytes, usage }), dst = device.createBuffer({ size: bytes, usage });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
  const groups = n4 / 256, gx = Math.min(groups, 32768), gy = Math.ceil(groups / gx);
  let best = Infinity;
  for (let r = 0; r < reps + 1; r++) {
    const stamps = device.createQuerySet({ type: "timestamp", count: 2 });
    const resolved = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    for (let i = 0; i < iters; i++) pass.dispatchWorkgroups(gx, gy);
    pass.end();
    enc.resolveQuerySet(stamps, 0, 2, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigInt64Array(read.getMappedRange());
    if (r > 0) best = Math.min(best, Number(t1 - t0) / 1e6 / iters); // r = 0 warms the clocks
    read.unmap();
    [read, resolved].forEach((b) => b.destroy());
    stamps.destroy();
  }
  src.destroy();
  dst.destroy();
  return 2 * bytes / (best * 1e-3) / 1e9;
}

const profile = async (roots: Tensor[]) => {
  await Effect.runPromise(ex.profile(roots, 1));
  let best = Infinity;
  for (let r = 0; r < reps; r++) best = Math.min(best, await Effect.runPromise(ex.profile(roots, iters)));
  return best;
};
const realize = (t: Tensor) => Effect.runPromise(ex.realize([t])).then(([x]) => x as Float32Array);
const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
};

interface TorchRow { shape?: string; dtype?: string; ms?: number; error?: string; copy_gbs?: number }
const torch = new Map<string, TorchRow>();
let torchCopy: number | undefined;
const torchFile = Deno.env.get("FLEX_DECODE_TORCH");
if (torchFile) {
  try {
    for (const line of (await Deno.readTextFile(torchFile)).split("\n")) {
      if (!line.startsWith("{")) continue;
      const r = JSON.parse(line) as TorchRow & { meta?: unknown };
      if (r.meta) console.log(`PyTorch: ${JSON.stringify(r.meta)}`);
      if (r.copy_gbs) torchCopy = r.copy_gbs;
      if (r.shape) torch.set(`${r.shape}|${r.dtype}`, r);
    }
  } catch (e) {
    console.log(`PyTorch rows unreadable: ${e}`);
  }
}

let copy = 0;
for (const mb of list("FLEX_DECODE_COPY_MB", "256,1024")) copy = Math.max(copy, await copyGbs(Number(mb) * 2 ** 20));
console.log(`copy kernel: ${copy.toFixed(0)} GB/s (read + write)${torchCopy ? `; PyTorch's copy_: ${torchCopy.toFixed(0)} GB/s` : ""}`);
console.log(`\n| shape B×Hq×Hkv×Sq×Skv×D | dtype | kernel | ms | GB/s | % of copy | PyTorch ms (GB/s) | note |`);
console.log(`|---|---|---|---|---|---|---|---|`);

for (const spec of shapes) {
  const [B, Hq, Hkv, Sq, Skv, D] = spec.split("x").map(Number);
  const base = [randn([B, Hq, Sq, D], { seed: 11 }), randn([B, Hkv, Skv, D], { seed: 12 }), randn([B, Hkv, Skv, D], { seed: 13 })];
  for (const dtype of dtypes) {
    const [q, k, v] = dtype === "f32" ? base : base.map((t) => tensor(t.data!, t.shape, { dtype: "f16" }));
    const el = dtype === "f16" ? 2 : 4;
    const bytes = (2 * B * Hkv * Skv * D + 2 * B * Hq * Sq * D) * el;
    const th = torch.get(`${spec}|${dtype}`);
    const torchCol = th?.ms ? `${th.ms.toFixed(3)} (${(bytes / (th.ms * 1e-3) / 1e9).toFixed(0)})` : th?.error ? `n/a: ${th.error.slice(0, 40)}` : "—";
    const row = (kernel: string, ms: number, note = "") => {
      const gbs = bytes / (ms * 1e-3) / 1e9;
      console.log(`| ${spec} | ${dtype} | ${kernel} | ${ms.toFixed(4)} | ${gbs.toFixed(0)} | ${(100 * gbs / copy).toFixed(1)} | ${torchCol} | ${note} |`);
    };
    const call = (opts = {}) => flexAttention(q, k, v, { enableGqa: Hq !== Hkv, kernelOptions: opts });
    const label = (t: Tensor) => planFlex(t.arg as FlexCall, caps).launches.map((l) => l.label).join(" + ");
    const splitsOf = (t: Tensor) => planFlex(t.arg as FlexCall, caps).launches[0].workgroups[2] / B;
    try {
      flexDecodeSwitch.enabled = false;
      const old = call();
      const oldLabel = label(old);
      const oldMs = await profile([old]);
      const ref = await realize(old);
      row("query-tile forward, split-KV auto", oldMs, oldLabel.slice(0, 60));
      flexDecodeSwitch.enabled = true;
      const dec = call();
      const ms = await profile([dec]);
      const err = relL2(await realize(dec), ref);
      row("decode tile, auto", ms, `${label(dec).split(" + ")[0]} (${splitsOf(dec)} splits); fill ${decodeFill.workgroups}; rel. L2 vs query-tile ${err.toExponential(1)}; ${(oldMs / ms).toFixed(2)}× faster`);
      if (sweep.has(spec) || sweep.has(`${spec}:${dtype}`)) {
        for (const splitKv of splitList) row(`decode tile, splitKv ${splitKv}`, await profile([call({ splitKv })]));
        // lanes of a key reduce by subgroup shuffles: a variant with more lanes than the subgroup is not a valid config
        for (const variant of variants.filter((o) => !caps.features.has("subgroups") || (o.L ?? 0) <= (caps.subgroupMinSize ?? 0))) {
          const { splitKv, ...override } = variant;
          flexDecodeSwitch.override = override;
          const t = call(splitKv === undefined ? {} : { splitKv });
          const o = await realize(t);
          row(`decode tile, ${JSON.stringify(variant)}`, await profile([t]), `${label(t).split(" + ")[0]} (${splitsOf(t)} splits); rel. L2 ${relL2(o, ref).toExponential(1)}`);
          flexDecodeSwitch.override = undefined;
        }
      }
    } catch (e) {
      console.log(`| ${spec} | ${dtype} | error | — | — | — | ${torchCol} | ${(e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 160)} |`);
    } finally {
      flexDecodeSwitch.enabled = true;
      flexDecodeSwitch.override = undefined;
    }
  }
}
ex.dispose();
Deno.exit(0);
