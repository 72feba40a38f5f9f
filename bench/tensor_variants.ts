/**
 * Device probe for the tensor-family forward (kernels/flex_forward_tensor.ts), raw WebGPU, one process:
 *   A. micro: a loop that stages K (or V) tiles into workgroup memory and multiplies them as right matrices,
 *      in the layouts and offset forms the kernel uses, against the CPU — isolates the staged-K/V defect;
 *   B. the kernel's staged path with each diagnostic knob (TensorProbeKnobs) against the float64 reference;
 *   C. speed variants (B4 H16 S4096 D64, noop and causal 128-blocks), each checked first at a small size;
 *      the staged configs run with the first knob set that part B found exact (if any).
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/tensor_variants.ts
 * Env: DAWN_EXTRA (extra Dawn toggles, e.g. disable_robustness), FLEX_VARIANTS_PARTS (default "ABC"),
 * FLEX_VARIANTS_SHAPES (JSON list of partial configs for part C, timed on FLEX_VARIANTS_CASES: default "noop,causal";
 * "soft" = softcap 20 + causal; diagnostic configs (probe.softmax) time their first case only), FLEX_VARIANTS_PRECOMPILE=1
 * (part C starts all compiles at once), FLEX_VARIANTS_D (part C's head dim, default 64), FLEX_VARIANTS_WARM_MS (warm-up). Part C times on the GPU (timestamp queries) after ≥ 200 ms of warm launches.
 * bench/tensor_h200_call.sh bundles the steps of one device call.
 * Lines print as results come (the Dawn addon has aborted between timed submits before).
 */
import { type FlexTensorConfig, flexForwardTensorWgsl, flexTensorSmemBytes } from "../kernels/flex_forward_tensor.ts";
import { TENSOR_SHAPES } from "../lib/lower/flex_tensor_config.ts";
import { buildTables, CAUSAL, checkOnce, compile, hooksOf, type Launch, type Mods, NOOP, openProbeDevice, prepare, type Problem, randomF16, secondWalkPipeline, SOFTCAP_CAUSAL } from "./tensor_probe.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (k: string): string | undefined => g.Deno ? g.Deno.env.get(k) : g.process?.env?.[k];
const log = (s: string) => console.log(s);

// ------------------------------------------------------------------------------------------------ A. micro
interface MicroVariant { kind: "k" | "v"; transposed: boolean; opaque: boolean; threads: number; guarded?: boolean }

/** C = Σ_t Q · K_tᵀ (kind k, K_t [32][64] staged) or Σ_t P_t · V_t (kind v, V_t [32][64] staged), T = 3 tiles. */
export function microWgsl(m: MicroVariant): string {
  const ST = m.transposed ? 40 : 72; // [64][32+8] transposed, else [32][64+8]
  const size = m.transposed ? 64 * 40 : 32 * 72;
  const z = m.opaque ? " + zoff" : "";
  const stage = `for (var idx = tid; idx < 512u; idx += ${m.threads}u) {
      let n = idx / 16u; let d4 = idx % 16u;
      let x = src[(t * 32u + n) * 16u + d4];
      ${m.transposed
    ? "let o = 4u * d4 * 40u + n; W[o] = x.x; W[o + 40u] = x.y; W[o + 80u] = x.z; W[o + 120u] = x.w;"
    : "let o = n * 72u + 4u * d4; W[o] = x.x; W[o + 1u] = x.y; W[o + 2u] = x.z; W[o + 3u] = x.w;"}
    }`;
  let body: string, outs: string, decls: string;
  if (m.kind === "k") {
    // left Q [16][64] from storage; right Kᵀ: (d, n) col-major from [n][d] or row-major from [d][n]
    decls = [0, 1, 2, 3].map((k) => `let q${k} = subgroupMatrixLoad<LM, row_major>(&other, ${16 * k}u, 64u);`).join("\n  ") + "\n  var s0 = CM(); var s1 = CM();";
    body = [0, 1].flatMap((j) => [0, 1, 2, 3].map((k) => {
      const off = m.transposed ? `${16 * k * 40 + 16 * j}u` : `${16 * j * 72 + 16 * k}u`;
      const ld = `subgroupMatrixLoad<RM, ${m.transposed ? "row_major" : "col_major"}>(&W, ${off}${z}, ${ST}u)`;
      return `{ ${m.guarded ? `var kr: RM; if (live) { kr = ${ld}; }` : `let kr = ${ld};`} s${j} = subgroupMatrixMultiplyAccumulate(q${k}, kr, s${j}); }`;
    })).join("\n      ");
    outs = "subgroupMatrixStore<row_major>(&C, 0u, s0, 32u); subgroupMatrixStore<row_major>(&C, 16u, s1, 32u);";
  } else {
    // left P_t [16][32] from storage (tile t at 512·t); right V: (n, dv) row-major from [n][dv] or col-major from [dv][n]
    decls = "var o0 = CM(); var o1 = CM(); var o2 = CM(); var o3 = CM();";
    body = [0, 1].map((k) => `{ let p = subgroupMatrixLoad<LM, row_major>(&other, t * 512u + ${16 * k}u, 32u);
${[0, 1, 2, 3].map((j) => {
      const off = m.transposed ? `${16 * j * 40 + 16 * k}u` : `${16 * k * 72 + 16 * j}u`;
      const ld = `subgroupMatrixLoad<RM, ${m.transposed ? "col_major" : "row_major"}>(&W, ${off}${z}, ${ST}u)`;
      return `        { ${m.guarded ? `var vr: RM; if (live) { vr = ${ld}; }` : `let vr = ${ld};`} o${j} = subgroupMatrixMultiplyAccumulate(p, vr, o${j}); }`;
    }).join("\n")}
      }`).join("\n      ");
    outs = [0, 1, 2, 3].map((j) => `subgroupMatrixStore<row_major>(&C, ${16 * j}u, o${j}, 64u);`).join(" ");
  }
  return `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
alias LM = subgroup_matrix_left<f16, 16, 16>; alias RM = subgroup_matrix_right<f16, 16, 16>; alias CM = subgroup_matrix_result<f32, 16, 16>;
@group(0) @binding(0) var<storage, read> src: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> other: array<f16>;
@group(0) @binding(2) var<storage, read> info: array<u32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
var<workgroup> W: array<f16, ${size}>;
@compute @workgroup_size(${m.threads}) fn main(@builtin(local_invocation_index) tid: u32, @builtin(subgroup_id) sg: u32) {
  let T = info[0];
  let zoff = info[1];
  let live = T != 0u;
  ${decls}
  for (var t = 0u; t < T; t++) {
    workgroupBarrier();
    ${stage}
    workgroupBarrier();
      ${body}
  }
  if (sg == 0u) { ${outs} }
}`;
}

async function micro(device: GPUDevice) {
  const U = GPUBufferUsage;
  const T = 3;
  const src = randomF16(T * 32 * 64), other = randomF16(T * 16 * 32 > 1024 ? T * 16 * 32 : 1024);
  const mk = (d: ArrayBufferView, usage: number) => {
    const b = device.createBuffer({ size: Math.ceil(d.byteLength / 16) * 16, usage: usage | U.COPY_DST });
    device.queue.writeBuffer(b, 0, d.buffer as ArrayBuffer, d.byteOffset, d.byteLength);
    return b;
  };
  const bs = mk(src, U.STORAGE), bo = mk(other, U.STORAGE), bi = mk(new Uint32Array([T, 0, 0, 0]), U.STORAGE);
  const bc = device.createBuffer({ size: 4096, usage: U.STORAGE | U.COPY_SRC | U.COPY_DST });
  const rb = device.createBuffer({ size: 4096, usage: U.MAP_READ | U.COPY_DST });
  // CPU: kind k → C[i][n] = Σ_t Σ_d Q[i][d] K_t[n][d]   (16 × 32); kind v → C[i][dv] = Σ_t Σ_n P_t[i][n] V_t[n][dv]   (16 × 64)
  const K = (t: number, n: number, d: number) => src[(t * 32 + n) * 64 + d];
  const refK = Array.from({ length: 16 * 32 }, (_, x) => {
    const i = Math.floor(x / 32), n = x % 32;
    let s = 0;
    for (let t = 0; t < T; t++) for (let d = 0; d < 64; d++) s += other[i * 64 + d] * K(t, n, d);
    return s;
  });
  const refV = Array.from({ length: 16 * 64 }, (_, x) => {
    const i = Math.floor(x / 64), dv = x % 64;
    let s = 0;
    for (let t = 0; t < T; t++) for (let n = 0; n < 32; n++) s += other[t * 512 + i * 32 + n] * K(t, n, dv);
    return s;
  });
  for (const kind of ["k", "v"] as const) for (const [transposed, opaque, guarded] of [[false, false, false], [false, true, false], [true, false, false], [false, false, true], [true, false, true]]) {
    const m: MicroVariant = { kind, transposed, opaque, threads: 32, guarded };
    const tag = `micro ${kind === "k" ? "Q·Kᵀ" : "P·V"} ${transposed ? "transposed" : "natural"} ${opaque ? "opaque" : "const"} offsets${guarded ? ", guarded" : ""}`;
    try {
      const pipe = await compile(device, microWgsl(m), true);
      const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [bs, bo, bi, bc].map((buffer, binding) => ({ binding, resource: { buffer } })) });
      const e = device.createCommandEncoder();
      e.clearBuffer(bc);
      const ps = e.beginComputePass(); ps.setPipeline(pipe); ps.setBindGroup(0, bg); ps.dispatchWorkgroups(1); ps.end();
      e.copyBufferToBuffer(bc, 0, rb, 0, 4096);
      device.queue.submit([e.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const got = new Float32Array(rb.getMappedRange().slice(0));
      rb.unmap();
      const ref = kind === "k" ? refK : refV;
      let err = 0, bad = 0;
      for (let i = 0; i < ref.length; i++) { const d = Math.abs(got[i] - ref[i]); err = Math.max(err, d); if (!(d < 1e-2)) bad++; }
      log(`  ${tag}: max err ${err.toExponential(2)}, ${bad}/${ref.length} wrong`);
    } catch (e) {
      log(`  ${tag}: FAILED ${(e as Error).message.slice(0, 600)}`);
    }
  }
}

// ------------------------------------------------------------------------------------------------ B, C. kernel
/** FLEX_VARIANTS_WARM_MS: back-to-back launches before each timing (default 200; session 6 call 1 saw the SM clock
 * climb 345 → 1050 → 1980 MHz over ~1.5 s after an idle stretch, so 200 ms left some rows clock-bound). */
const WARM_MS = Number(env("FLEX_VARIANTS_WARM_MS") ?? 200);
/** FLEX_VARIANTS_D: the head dim of part C's problems (default 64). */
const HD = Number(env("FLEX_VARIANTS_D") ?? 64);
/** FLEX_VARIANTS_EMULATE=1: plain-WGSL matrices (a dry run of part S on lavapipe, with FLEX_VARIANTS_BIG="B,H,S"). */
const EMULATE = env("FLEX_VARIANTS_EMULATE") === "1";
const BASE = { family: "tensor", D: HD, Dv: HD, emulate: EMULATE, identityScore: true, subgroupSize: 32, outF16: true } as const;
type Partial_ = Partial<FlexTensorConfig>;

async function checkConfig(device: GPUDevice, c: FlexTensorConfig, cases: [string, Mods, Problem][], pipes = new Map<Mods, Promise<GPUComputePipeline>>()): Promise<boolean> {
  let ok = true;
  for (const [name, mods, pr] of cases) {
    const cc = { ...c, D: pr.D, Dv: pr.Dv, identityScore: !mods.scoreWgsl };
    let pipe = pr.D === c.D ? pipes.get(mods) : undefined;
    const t0 = performance.now();
    if (!pipe) { pipe = compile(device, flexForwardTensorWgsl(cc, hooksOf(mods))); if (pr.D === c.D) pipes.set(mods, pipe); }
    const ready = await pipe;
    const compileMs = performance.now() - t0; // the wait: with FLEX_VARIANTS_PRECOMPILE=1 the compile started earlier
    const r = await checkOnce(device, ready, cc, pr, mods);
    const pass = r.errOut <= 5e-4 && r.errLse <= 1e-4;
    ok &&= pass;
    log(`    ${pass ? "ok  " : "BAD "} ${name}: out rel.L2 ${r.errOut.toExponential(2)}, lse max abs ${r.errLse.toExponential(2)} (compile ${compileMs.toFixed(0)} ms)`);
  }
  return ok;
}

const small: Problem = { B: 1, Hq: 2, Hkv: 2, Sq: 256, Skv: 256, D: HD, Dv: HD, QB: 128, KB: 128 };
const SMALL_CASES: [string, Mods, Problem][] = [
  ["noop S256 (whole tiles)", NOOP, small],
  ["causal ragged 300×237", CAUSAL, { ...small, Sq: 300, Skv: 237 }],
];

async function partB(device: GPUDevice) {
  const s1 = { BM: 32, BN: 32, subgroups: 1, kvDirect: false }, s2 = { BM: 64, BN: 32, subgroups: 2, kvDirect: false };
  const d2 = { BM: 64, BN: 32, subgroups: 2, kvDirect: true };
  const variants: [string, Partial_, [string, Mods, Problem][]][] = [
    ["staged 32/32/1, default (uniform walk)", s1, SMALL_CASES],
    ["staged 64/32/2, default", s2, SMALL_CASES],
    ["staged 32/32/1, guard only", { ...s1, probe: { plainWalk: true, guarded: true } }, SMALL_CASES],
    ["staged 32/32/1, uniform walk + guard", { ...s1, probe: { guarded: true } }, SMALL_CASES],
    ["staged 32/32/1, neither (the defect)", { ...s1, probe: { plainWalk: true } }, SMALL_CASES],
    ["direct 64/32/2, default (edge tiles staged)", d2, SMALL_CASES],
    ["direct 64/32/2, neither (the old kernel)", { ...d2, probe: { plainWalk: true } }, SMALL_CASES],
    ["staged 64/32/2 D40 (padded 48), GQA 4:2, ragged 96×150", s2, [["noop", NOOP, { ...small, Hq: 4, Hkv: 2, Sq: 96, Skv: 150, D: 40, Dv: 40 }]]],
    ["staged 64/32/2 D80 causal ragged 173", s2, [["causal", CAUSAL, { ...small, Sq: 173, Skv: 173, D: 80, Dv: 80 }]]],
    ["staged 64/32/2 D128 causal 256", s2, [["causal", CAUSAL, { ...small, D: 128, Dv: 128 }]]],
  ];
  for (const [name, v, cases] of variants) {
    log(`B ${name} ${JSON.stringify(v)}`);
    try { await checkConfig(device, { ...BASE, ...v } as FlexTensorConfig, cases); } catch (e) { log(`    FAILED ${(e as Error).message.slice(0, 1500)}`); }
  }
}

/** Part C's default list: [config, timed cases]. "soft" = softcap 20 + causal (the gallery's slowest in PyTorch). */
type CaseName = "noop" | "causal" | "soft";
const D1 = { BM: 32, BN: 32, subgroups: 1, kvDirect: true, prefetchV: true };
const PART_C: [Partial_, CaseName[]][] = [
  [D1, ["noop", "causal", "soft"]],
  [{ ...D1, probe: { salt: 1 } }, ["noop", "causal"]], // the same code, another hash: does a recompile change the speed?
  [{ ...D1, probe: { softmax: "none" } }, ["noop"]], // no scalar pass: the GEMM chain's bound
  [{ ...D1, probe: { softmax: "copy" } }, ["noop"]], // P = scaled S: the scalar softmax's own cost
  [{ ...D1, kAhead: true }, ["noop", "causal", "soft"]],
  // the other candidate shapes, the kAhead ones first (they are new)
  ...[...TENSOR_SHAPES.filter((v) => v.kAhead && v.BM !== 32), ...TENSOR_SHAPES.filter((v) => !v.kAhead && JSON.stringify(v) !== JSON.stringify(D1))]
    .map((v) => [{ ...v }, ["noop", "causal"]] as [Partial_, CaseName[]]),
  [{ ...D1, probe: { vTransposed: true } }, ["noop", "causal"]],
  [{ ...D1, kAhead: true, probe: { vTransposed: true } }, ["noop", "causal"]],
  [{ BM: 64, BN: 32, subgroups: 2, kvDirect: false, stageVT: true }, ["noop", "causal"]],
  [{ BM: 16, BN: 32, subgroups: 1, kvDirect: true, prefetchV: true, shuffleReduce: true }, ["noop", "causal"]],
  [{ BM: 32, BN: 64, subgroups: 1, kvDirect: true, prefetchV: true }, ["noop", "causal"]],
  [{ ...D1, pTransposed: true }, ["noop", "causal", "soft"]],
  [{ ...D1, kTransposed: true }, ["noop", "causal", "soft"]],
];

async function partC(device: GPUDevice) {
  const U = GPUBufferUsage;
  const flag = device.createBuffer({ size: 4, usage: U.MAP_READ | U.COPY_DST });
  const sync = async () => {
    const e = device.createCommandEncoder(); e.clearBuffer(flag); device.queue.submit([e.finish()]);
    await flag.mapAsync(GPUMapMode.READ); flag.unmap();
  };
  const big: Problem = { B: 4, Hq: 16, Hkv: 16, Sq: 4096, Skv: 4096, D: HD, Dv: HD, QB: 128, KB: 128 };
  const n = big.B * big.Hq * big.Sq * big.D;
  const bigQ = randomF16(n), bigK = randomF16(n), bigV = randomF16(n);
  const tNoop = buildTables(NOOP.maskJs, big.Sq, big.Skv, 128, 128), tCausal = buildTables(CAUSAL.maskJs, big.Sq, big.Skv, 128, 128);
  const mods: Record<CaseName, [Mods, ReturnType<typeof buildTables>]> = { noop: [NOOP, tNoop], causal: [CAUSAL, tCausal], soft: [SOFTCAP_CAUSAL, tCausal] };
  const only = env("FLEX_VARIANTS_SHAPES");
  const cases = (env("FLEX_VARIANTS_CASES") ?? "noop,causal").split(",") as CaseName[];
  const list: [Partial_, CaseName[]][] = only ? (JSON.parse(only) as Partial_[]).map((v) => [v, v.probe?.softmax ? cases.slice(0, 1) : cases]) : PART_C;
  const times: { v: Partial_; ms: number }[] = [];
  const again: [string, Launch][] = [];
  // GPU time (timestamp queries) after ≥ 200 ms of back-to-back launches of this kernel, best of 3 × 5 launches;
  // the wall-clock best of the same (launch + wait) beside it. Call 1 (2026-12-01 14:38) timed by wall clock
  // after 3 warm-up launches: identical kernels came out 3.0 and 15.1 ms, and removing the softmax made the
  // kernel 2.3× "slower" — the GPU's clocks, or the host's wait, not the kernel.
  const stamps = device.features.has("timestamp-query");
  const timeLaunch = async (launch: Launch) => {
    const w0 = performance.now();
    let warm = 0;
    while (performance.now() - w0 < WARM_MS || warm < 5) { launch.run(5); await sync(); warm += 5; }
    let best = Infinity, wall = Infinity;
    for (let r = 0; r < 3; r++) {
      const t1 = performance.now(); launch.run(5); await sync(); wall = Math.min(wall, (performance.now() - t1) / 5);
      if (stamps) best = Math.min(best, await launch.gpuMs(5));
    }
    return { ms: stamps ? best : wall, wall, warm };
  };
  // FLEX_VARIANTS_PRECOMPILE=1: start every variant's compiles at once (the H200 sat at idle clocks for ~70 % of
  // session 5's part C while the driver compiled one kernel after another, 0.4–18 s each); untried on the device
  const checkedMods = (cases: CaseName[]) => [NOOP, CAUSAL, ...(cases.includes("soft") ? [SOFTCAP_CAUSAL] : [])];
  const pipesOf = list.map(([v, cases]) => {
    const m = new Map<Mods, Promise<GPUComputePipeline>>();
    if (env("FLEX_VARIANTS_PRECOMPILE") !== "1") return m;
    for (const mm of v.probe?.softmax ? cases.map((k) => mods[k][0]) : checkedMods(cases)) {
      const p = compile(device, flexForwardTensorWgsl({ ...BASE, ...v, identityScore: !mm.scoreWgsl } as FlexTensorConfig, hooksOf(mm)));
      p.catch(() => {}); // reported where it is awaited
      m.set(mm, p);
    }
    return m;
  });
  for (const [iv, [v, cases]] of list.entries()) {
    const c = { ...BASE, ...v } as FlexTensorConfig;
    const tag = JSON.stringify(v);
    if (flexTensorSmemBytes(c) > device.limits.maxComputeWorkgroupStorageSize) { log(`C ${tag}: skip (smem)`); continue; }
    try {
      log(`C ${tag}`);
      const diag = !!v.probe?.softmax; // wrong results by design: timing only
      const pipes = pipesOf[iv]; // the checked pipelines are the timed ones
      const ok = diag || await checkConfig(device, c, [["noop S256", NOOP, small], ["causal ragged 300×237", CAUSAL, { ...small, Sq: 300, Skv: 237 }],
        ...(cases.includes("soft") ? [["softcap + causal S256", SOFTCAP_CAUSAL, small] as [string, Mods, Problem]] : [])], pipes);
      let total = 0;
      for (const name of cases) {
        const [m, t] = mods[name];
        const cc = { ...c, identityScore: !m.scoreWgsl };
        const t0 = performance.now();
        const pipe = await (pipes.get(m) ?? compile(device, flexForwardTensorWgsl(cc, hooksOf(m))));
        const compileMs = performance.now() - t0; // 0 when the check compiled it
        const launch = prepare(device, pipe, cc, big, t, bigQ, bigK, bigV, await secondWalkPipeline(device, cc, m));
        const { ms: best, wall, warm } = await timeLaunch(launch);
        const flops = 4 * big.B * big.Hq * big.Sq * big.Skv * big.D * t.density;
        log(`    ${name} B4 H16 S4096 D${HD}: ${best.toFixed(3)} ms  ${(flops / best / 1e9).toFixed(1)} TF/s  ${stamps ? "GPU" : "wall"}; wall ${wall.toFixed(3)} ms; ${warm} warm-up launches; compile ${compileMs.toFixed(0)} ms`);
        if (again.length < 1 && name === "causal" && !v.probe) again.push([`${tag} causal`, launch]); else launch.destroy();
        if (name !== "soft") total += best;
      }
      if (ok && !diag && cases.length >= 2) times.push({ v, ms: total });
    } catch (e) {
      log(`    FAILED ${(e as Error).message.slice(0, 1500)}`);
    }
    // the first variant's causal pipeline again, after the salted recompile: run-to-run drift vs compile luck
    if (v.probe?.salt !== undefined) {
      for (const [tag, launch] of again.splice(0)) { const r = await timeLaunch(launch); log(`C again ${tag}: ${r.ms.toFixed(3)} ms (wall ${r.wall.toFixed(3)})`); launch.destroy(); }
    }
  }
  times.sort((a, b) => a.ms - b.ms);
  log(`C ranking (noop + causal ms): ${times.map((t) => `${JSON.stringify(t.v)} ${t.ms.toFixed(3)}`).join(" | ")}`);
}

// ------------------------------------------------------------------------------------------------ S. side by side
/** softcap 20 + causal with the library's tanh (lib/lower/wgsl_expr.ts flex_tanh before session 7: the builtin on a
 * clamped argument) and with one exp2 and a division (tanh |x| = (1 − e)/(1 + e), e = 2^(−2·log2(e)·|x|) ∈ (0, 1]:
 * no overflow for any x; absolute error a few f32 ulps of 1, ≲ 1e-6, the cancellation near 0 included). */
const SOFTCAP_CLAMP: Mods = { ...SOFTCAP_CAUSAL, scoreWgsl: "return 20.0 * tanh(clamp(score / 20.0, -15.0, 15.0));" };
const SOFTCAP_EXP2: Mods = {
  ...SOFTCAP_CAUSAL,
  scoreWgsl: "let x = score / 20.0; let e = exp2(-2.8853900817779268 * abs(x)); return 20.0 * (sign(x) * (1.0 - e) / (1.0 + e));",
};
type SideCase = "noop" | "causal" | "soft" | "softc" | "softe";
/** Part S (FLEX_VARIANTS_PARTS=S): every variant of FLEX_VARIANTS_SHAPES (items may carry "cases": "noop,causal,…",
 * default FLEX_VARIANTS_CASES) compiled at once, checked against float64 (S256 noop, ragged causal, and each softcap
 * form it times), each one's softcap kernel then compiled again alone (a salt: the driver's compile ms, serial), and
 * only then timed: one 1.5 s warm-up, then FLEX_VARIANTS_PASSES (default 2) round-robin passes over every
 * (variant, case) — ≥ WARM_MS of launches each, best of 3 × 5 launches GPU-timed — so no compile idles the clocks
 * between timings and each row is the best of its passes. */
async function partS(device: GPUDevice) {
  const U = GPUBufferUsage;
  const flag = device.createBuffer({ size: 4, usage: U.MAP_READ | U.COPY_DST });
  const sync = async () => {
    const e = device.createCommandEncoder(); e.clearBuffer(flag); device.queue.submit([e.finish()]);
    await flag.mapAsync(GPUMapMode.READ); flag.unmap();
  };
  const [bB, bH, bS] = (env("FLEX_VARIANTS_BIG") ?? "4,16,4096").split(",").map(Number);
  const big: Problem = { B: bB, Hq: bH, Hkv: bH, Sq: bS, Skv: bS, D: HD, Dv: HD, QB: 128, KB: 128 };
  const n = big.B * big.Hq * big.Sq * big.D;
  const bigQ = randomF16(n), bigK = randomF16(n), bigV = randomF16(n);
  const tNoop = buildTables(NOOP.maskJs, big.Sq, big.Skv, 128, 128), tCausal = buildTables(CAUSAL.maskJs, big.Sq, big.Skv, 128, 128);
  const mods: Record<SideCase, [Mods, ReturnType<typeof buildTables>]> = {
    noop: [NOOP, tNoop], causal: [CAUSAL, tCausal], soft: [SOFTCAP_CAUSAL, tCausal], softc: [SOFTCAP_CLAMP, tCausal], softe: [SOFTCAP_EXP2, tCausal],
  };
  const defCases = (env("FLEX_VARIANTS_CASES") ?? "noop,causal").split(",") as SideCase[];
  const items = (JSON.parse(env("FLEX_VARIANTS_SHAPES") ?? "[]") as (Partial_ & { cases?: string })[]).map(({ cases, ...v }) => ({
    v: v as Partial_, cases: (cases ? cases.split(",") : defCases) as SideCase[],
  }));
  const t0 = performance.now();
  const compiled = items.map(({ v, cases }) => {
    const m = new Map<Mods, { pipe: Promise<GPUComputePipeline>; doneMs?: number }>();
    const need = new Set<SideCase>(v.probe?.softmax ? cases : ["noop", "causal", ...cases]);
    for (const k of need) {
      const mm = mods[k][0];
      const cfg = { ...BASE, ...v, identityScore: !mm.scoreWgsl } as FlexTensorConfig;
      if (flexTensorSmemBytes(cfg) > device.limits.maxComputeWorkgroupStorageSize) continue;
      const e: { pipe: Promise<GPUComputePipeline>; doneMs?: number } = { pipe: compile(device, flexForwardTensorWgsl(cfg, hooksOf(mm))) };
      e.pipe.then(() => { e.doneMs = performance.now() - t0; }, () => {});
      m.set(mm, e);
    }
    return m;
  });
  const okOf: boolean[] = [];
  for (const [i, { v, cases }] of items.entries()) {
    const c = { ...BASE, ...v } as FlexTensorConfig;
    const tag = JSON.stringify(v);
    if (flexTensorSmemBytes(c) > device.limits.maxComputeWorkgroupStorageSize) { log(`S ${tag}: skip (smem ${flexTensorSmemBytes(c)} B)`); okOf.push(false); continue; }
    log(`S ${tag}: ${flexTensorSmemBytes(c)} B of workgroup memory`);
    if (v.probe?.softmax) { okOf.push(true); continue; } // wrong results by design: timing only
    const pipes = new Map([...compiled[i]].map(([mm, e]) => [mm, e.pipe]));
    const checks: [string, Mods, Problem][] = [["noop S256", NOOP, small], ["causal ragged 300×237", CAUSAL, { ...small, Sq: 300, Skv: 237 }],
      ...cases.filter((k) => k.startsWith("soft")).map((k) => [`${k} S256`, mods[k][0], small] as [string, Mods, Problem])];
    try { okOf.push(await checkConfig(device, c, checks, pipes)); } catch (e) { okOf.push(false); log(`    FAILED ${(e as Error).message.slice(0, 1500)}`); }
  }
  log(`S all compiled and checked in ${((performance.now() - t0) / 1000).toFixed(1)} s; compiles done at (ms, parallel): ${
    items.map(({ v }, i) => `${JSON.stringify(v)} ${[...compiled[i].values()].map((e) => e.doneMs?.toFixed(0) ?? "?").join("/")}`).join(" | ")}`);
  // the driver's compile of each variant's score-mod kernel alone (a new salt: no cache), one after another
  if (env("FLEX_VARIANTS_COMPILE_MS") !== "0") {
    for (const [i, { v }] of items.entries()) {
      if (!okOf[i] || v.probe) continue;
      const cfg = { ...BASE, ...v, identityScore: false, probe: { salt: 1000 + Math.floor(Math.random() * 1e6) } } as FlexTensorConfig;
      const c0 = performance.now();
      try { await compile(device, flexForwardTensorWgsl(cfg, hooksOf(SOFTCAP_CAUSAL))); log(`S compile alone ${JSON.stringify(v)}: ${(performance.now() - c0).toFixed(0)} ms`); } catch (e) { log(`S compile alone FAILED ${(e as Error).message.slice(0, 300)}`); }
    }
  }
  const rows: { i: number; k: SideCase; launch: Launch; best: number; flops: number }[] = [];
  for (const [i, { v, cases }] of items.entries()) {
    if (!okOf[i]) continue;
    for (const k of v.probe?.softmax ? cases.slice(0, 1) : cases) {
      const [m, t] = mods[k];
      const e = compiled[i].get(m);
      if (!e) continue;
      const cc = { ...BASE, ...v, identityScore: !m.scoreWgsl } as FlexTensorConfig;
      rows.push({ i, k, launch: prepare(device, await e.pipe, cc, big, t, bigQ, bigK, bigV, await secondWalkPipeline(device, cc, m)), best: Infinity, flops: 4 * big.B * big.Hq * big.Sq * big.Skv * big.D * t.density });
    }
  }
  if (!rows.length) return;
  const w0 = performance.now();
  while (performance.now() - w0 < Number(env("FLEX_VARIANTS_WARM0_MS") ?? 1500)) { rows[0].launch.run(10); await sync(); }
  const passes = Number(env("FLEX_VARIANTS_PASSES") ?? 2);
  for (let pass = 0; pass < passes; pass++) {
    for (const r of rows) {
      const s0 = performance.now();
      let warm = 0;
      while (performance.now() - s0 < WARM_MS || warm < 5) { r.launch.run(5); await sync(); warm += 5; }
      let best = Infinity;
      for (let rep = 0; rep < 3; rep++) best = Math.min(best, await r.launch.gpuMs(5));
      r.best = Math.min(r.best, best);
      log(`  pass ${pass} ${JSON.stringify(items[r.i].v)} ${r.k}: ${best.toFixed(3)} ms (${warm} warm)`);
    }
  }
  log("S table (best of the passes; GPU ms, TF/s):");
  for (const [i, { v }] of items.entries()) {
    const mine = rows.filter((r) => r.i === i);
    if (mine.length) log(`S ${JSON.stringify(v)}: ${mine.map((r) => `${r.k} ${r.best.toFixed(3)} (${(r.flops / r.best / 1e9).toFixed(1)})`).join(", ")}`);
  }
  for (const r of rows) r.launch.destroy();
}

async function main() {
  const { gpu, adapter, device, feats, extra } = await openProbeDevice();
  g.__variantsGpu = gpu;
  log(`adapter ${adapter.info.description || adapter.info.device} features ${feats.join(",")} toggles ${extra || "(none)"}`);
  if (!EMULATE && !feats.includes("chromium-experimental-subgroup-matrix" as GPUFeatureName)) { log("no subgroup matrices here"); return; }
  const parts = env("FLEX_VARIANTS_PARTS") ?? "ABC";
  if (parts.includes("A")) await micro(device);
  if (parts.includes("B")) await partB(device);
  if (parts.includes("C")) await partC(device);
  if (parts.includes("S")) await partS(device);
}

if (import.meta.main) {
  await main();
  if (g.Deno) g.Deno.exit(0); else g.process.exit(0);
}
