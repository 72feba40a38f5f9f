/**
 * Device probe: what a subgroup-matrix load costs by layout and source, in isolation from attention.
 *   G. direct GEMM (C = A·B, 4096³, every operand matrix loaded straight from storage), each combination of
 *      A row_major / col_major (Aᵀ stored) and B row_major / col_major (Bᵀ stored), 2×2 and 4×4 result
 *      matrices per subgroup; each layout checked against the CPU at 256³ first.
 *   W. workgroup-resident: a 64×64 A and B tile staged once, then a loop of loads from workgroup memory +
 *      16 products per iteration (no global traffic): the cost of matrix loads from workgroup memory by layout.
 * The flex forward loads Kᵀ as a col_major right matrix from row-major K, V as a row_major right matrix, Q and
 * P as row_major left matrices: this says which of those is the expensive one.
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/tensor_layout_probe.ts   (DAWN_EXTRA toggles;
 * FLEX_LAYOUT_PARTS: "G", "W" or "GW", the default; FLEX_LAYOUT_STRIDES: part W row strides, default "72")
 * Times are GPU times (timestamp queries) after a 200 ms warm-up. Its first run (2026-12-01, session 5 call 1)
 * timed by wall clock after one launch and measured the GPU's clock ramp (8–37 TF/s, no pattern): not a result.
 */
import { openProbeDevice } from "./tensor_probe.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (k: string): string | undefined => g.Deno ? g.Deno.env.get(k) : g.process?.env?.[k];
const log = (s: string) => console.log(s);

type Layout = "row_major" | "col_major";
interface GemmVariant { TM: number; TN: number; SG: number; a: Layout; b: Layout }

const HEAD = `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
alias LM = subgroup_matrix_left<f16, 16, 16>; alias RM = subgroup_matrix_right<f16, 16, 16>; alias CM = subgroup_matrix_result<f32, 16, 16>;`;
const R = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A [M][K] (row_major) or Aᵀ [K][M] (col_major); B [K][N] (row_major) or Bᵀ [N][K] (col_major); square S. */
function gemmWgsl(v: GemmVariant, S: number): string {
  const { TM, TN, SG } = v;
  const BM = 16 * TM, BN = 16 * TN * SG;
  const aOff = (i: number) => v.a === "row_major" ? `(row0 + ${16 * i}u) * ${S}u + k` : `k * ${S}u + row0 + ${16 * i}u`;
  const bOff = (j: number) => v.b === "row_major" ? `k * ${S}u + col0 + ${16 * j}u` : `(col0 + ${16 * j}u) * ${S}u + k`;
  const acc = R(TM).flatMap((i) => R(TN).map((j) => `var c${i}_${j} = CM();`)).join(" ");
  const la = R(TM).map((i) => `let a${i} = subgroupMatrixLoad<LM, ${v.a}>(&A, ${aOff(i)}, ${S}u);`).join(" ");
  const lb = R(TN).map((j) => `let b${j} = subgroupMatrixLoad<RM, ${v.b}>(&Bm, ${bOff(j)}, ${S}u);`).join(" ");
  const mm = R(TM).flatMap((i) => R(TN).map((j) => `c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`)).join(" ");
  const st = R(TM).flatMap((i) => R(TN).map((j) => `subgroupMatrixStore<row_major>(&C, (row0 + ${16 * i}u) * ${S}u + col0 + ${16 * j}u, c${i}_${j}, ${S}u);`)).join(" ");
  return `${HEAD}
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> Bm: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(${32 * SG}) fn main(@builtin(workgroup_id) wg: vec3u, @builtin(subgroup_id) sid: u32) {
  let row0 = wg.y * ${BM}u; let col0 = wg.x * ${BN}u + sid * ${16 * TN}u;
  ${acc}
  for (var k = 0u; k < ${S}u; k += 16u) { ${la} ${lb} ${mm} }
  ${st}
}`;
}

/** Workgroup-resident: A [64][ST] (row) or Aᵀ, B likewise, staged once; `iters` × (4 LM + 4 RM loads, 16 products).
 * ST (row stride in f16) 64 / 72 / 80: whether the matrix loads hit bank conflicts without padding. */
function smemWgsl(a: Layout, b: Layout, iters: number, ST = 72): string {
  const aOff = (i: number) => a === "row_major" ? `${16 * i * ST}u + kk` : `kk * ${ST}u + ${16 * i}u`;
  const bOff = (j: number) => b === "row_major" ? `kk * ${ST}u + ${16 * j}u` : `${16 * j * ST}u + kk`;
  return `${HEAD}
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> Bm: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<f16, ${64 * ST}>;
var<workgroup> Bs: array<f16, ${64 * ST}>;
@compute @workgroup_size(128) fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32, @builtin(subgroup_id) sid: u32) {
  for (var i = tid; i < ${64 * 64}u; i += 128u) { let r = i / 64u; let c = i % 64u; As[r * ${ST}u + c] = A[i]; Bs[r * ${ST}u + c] = Bm[i]; }
  workgroupBarrier();
  ${R(4).flatMap((i) => R(4).map((j) => `var c${i}_${j} = CM();`)).join(" ")}
  for (var it = 0u; it < ${iters}u; it++) {
    let kk = 16u * ((it + sid) % 4u);
    ${R(4).map((i) => `let a${i} = subgroupMatrixLoad<LM, ${a}>(&As, ${aOff(i)}, ${ST}u);`).join(" ")}
    ${R(4).map((j) => `let b${j} = subgroupMatrixLoad<RM, ${b}>(&Bs, ${bOff(j)}, ${ST}u);`).join(" ")}
    ${R(4).flatMap((i) => R(4).map((j) => `c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}_${j});`)).join(" ")}
  }
  let base = (wg.x * 4u + sid) * 4096u;
  ${R(4).flatMap((i) => R(4).map((j) => `subgroupMatrixStore<row_major>(&C, base + ${16 * i * 64 + 16 * j}u, c${i}_${j}, 64u);`)).join(" ")}
}`;
}

async function main() {
  // the adapter's workgroup-storage limit: part W stages 18 KiB per workgroup (the default is 16 KiB: its first
  // device run failed on it)
  const { gpu, adapter, device, feats, extra } = await openProbeDevice();
  g.__layoutGpu = gpu;
  if (!feats.includes("chromium-experimental-subgroup-matrix" as GPUFeatureName)) { log("no subgroup matrices here"); return; }
  if (!feats.includes("timestamp-query" as GPUFeatureName)) throw new Error("the layout probe times with timestamp queries; this adapter has none");
  log(`layout probe on ${adapter.info.description} toggles ${extra || "(none)"}`);
  const U = GPUBufferUsage;
  const pipe = async (code: string) => {
    device.pushErrorScope("validation");
    const p = await device.createComputePipelineAsync({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } }).catch((e) => e as Error);
    const err = await device.popErrorScope();
    if (err || p instanceof Error) throw new Error((err?.message ?? (p as Error).message).slice(0, 800));
    return p as GPUComputePipeline;
  };
  const buf = (data: Float16Array | number, usage = U.STORAGE) => {
    const size = typeof data === "number" ? data : data.byteLength;
    const b = device.createBuffer({ size, usage: usage | U.COPY_DST | U.COPY_SRC });
    if (typeof data !== "number") device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer);
    return b;
  };
  const flag = device.createBuffer({ size: 4, usage: U.MAP_READ | U.COPY_DST });
  const sync = async () => { const e = device.createCommandEncoder(); e.clearBuffer(flag); device.queue.submit([e.finish()]); await flag.mapAsync(GPUMapMode.READ); flag.unmap(); };
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const qb = device.createBuffer({ size: 16, usage: U.QUERY_RESOLVE | U.COPY_SRC }), qr = device.createBuffer({ size: 16, usage: U.MAP_READ | U.COPY_DST });
  /** `n` dispatches in one pass; with `stamp`, the pass's GPU time is resolved into qr. */
  const dispatch = (p: GPUComputePipeline, bufs: GPUBuffer[], x: number, y: number, n: number, stamp = false) => {
    const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const e = device.createCommandEncoder();
    const ps = e.beginComputePass(stamp ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
    ps.setPipeline(p); ps.setBindGroup(0, bg);
    for (let i = 0; i < n; i++) ps.dispatchWorkgroups(x, y);
    ps.end();
    if (stamp) { e.resolveQuerySet(qs, 0, 2, qb, 0); e.copyBufferToBuffer(qb, 0, qr, 0, 16); }
    device.queue.submit([e.finish()]);
  };
  // GPU time after ≥ 200 ms of back-to-back work: the H200 idles at 345 MHz within a second (compiles) and
  // wall-clock timing after a short warm-up measured the clock ramp (session 5, call 1)
  const time = async (f: (n: number, stamp?: boolean) => void, reps: number) => {
    const w0 = performance.now();
    while (performance.now() - w0 < 200) { f(reps); await sync(); }
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      f(reps, true);
      await qr.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(qr.getMappedRange().slice(0));
      qr.unmap();
      best = Math.min(best, Number(t[1] - t[0]) / 1e6 / reps);
    }
    return best;
  };
  const readF32 = async (b: GPUBuffer, n: number) => {
    const rb = device.createBuffer({ size: n * 4, usage: U.MAP_READ | U.COPY_DST });
    const e = device.createCommandEncoder(); e.copyBufferToBuffer(b, 0, rb, 0, n * 4); device.queue.submit([e.finish()]);
    await rb.mapAsync(GPUMapMode.READ); const o = new Float32Array(rb.getMappedRange().slice(0)); rb.unmap(); rb.destroy(); return o;
  };
  const rnd = (n: number) => Float16Array.from({ length: n }, () => Math.random() * 2 - 1);
  const transpose = (x: Float16Array, n: number) => { const t = new Float16Array(n * n); for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = x[i * n + j]; return t; };

  const parts = env("FLEX_LAYOUT_PARTS") ?? "GW";
  const S = 4096;
  const bigA = buf(rnd(S * S)), bigB = buf(rnd(S * S));
  const layouts: [Layout, Layout][] = [["row_major", "row_major"], ["row_major", "col_major"], ["col_major", "row_major"], ["col_major", "col_major"]];
  // ---- G: direct GEMM
  if (parts.includes("G")) {
    const s = 256, A0 = rnd(s * s), B0 = rnd(s * s);
    const ref = new Float64Array(s * s);
    for (let i = 0; i < s; i++) for (let k = 0; k < s; k++) { const a = A0[i * s + k]; for (let j = 0; j < s; j++) ref[i * s + j] += a * B0[k * s + j]; }
    const bigC = buf(S * S * 4);
    for (const [TM, TN, SG] of [[2, 2, 4], [4, 4, 1], [2, 4, 2]]) for (const [a, b] of layouts) {
      const v: GemmVariant = { TM, TN, SG, a, b };
      const tag = `G direct ${TM}x${TN} per subgroup, ${SG} subgroups, A ${a}, B ${b}`;
      try {
        const ps = await pipe(gemmWgsl(v, s));
        const bA = buf(a === "row_major" ? A0 : transpose(A0, s)), bB = buf(b === "row_major" ? B0 : transpose(B0, s)), bC = buf(s * s * 4);
        dispatch(ps, [bA, bB, bC], s / (16 * TN * SG), s / (16 * TM), 1);
        const got = await readF32(bC, s * s);
        let num = 0, den = 0;
        for (let i = 0; i < s * s; i++) { num += (got[i] - ref[i]) ** 2; den += ref[i] ** 2; }
        const p = await pipe(gemmWgsl(v, S));
        const ms = await time((n, st) => dispatch(p, [bigA, bigB, bigC], S / (16 * TN * SG), S / (16 * TM), n, st), 3);
        log(`${tag}: ${ms.toFixed(3)} ms ${(2 * S ** 3 / ms / 1e9).toFixed(1)} TF/s (rel.L2 at 256: ${Math.sqrt(num / den).toExponential(1)})`);
      } catch (e) { log(`${tag}: FAILED ${(e as Error).message}`); }
    }
    bigC.destroy();
  }
  // ---- W: workgroup-resident loads
  if (!parts.includes("W")) return;
  const iters = 4096, wgs = 132 * 16;
  const outW = buf(wgs * 4 * 4096 * 4);
  const strides = (env("FLEX_LAYOUT_STRIDES") ?? "72").split(",").map(Number);
  for (const ST of strides) for (const [a, b] of layouts) {
    const tag = `W workgroup-resident 4x4 per subgroup, 4 subgroups, stride ${ST}, A ${a}, B ${b}`;
    try {
      const p = await pipe(smemWgsl(a, b, iters, ST));
      const ms = await time((n, st) => dispatch(p, [bigA, bigB, outW], wgs, 1, n, st), 3);
      const flops = wgs * 4 * iters * 16 * 2 * 4096;
      log(`${tag}: ${ms.toFixed(3)} ms ${(flops / ms / 1e9).toFixed(1)} TF/s`);
    } catch (e) { log(`${tag}: FAILED ${(e as Error).message}`); }
  }
}

if (import.meta.main) {
  await main();
  if (g.Deno) g.Deno.exit(0); else g.process.exit(0);
}
