/**
 * The tensor-family forward (kernels/flex_forward_tensor.ts) through raw WebGPU (no library runtime) against a
 * float64 dense reference: fresh random f16 inputs, outputs poisoned with NaN first. Runs the emulated matrix
 * operations wherever the adapter has shader-f16 (CI: lavapipe); where the adapter also has subgroup matrices
 * (the GPU machine) the intrinsic kernels run the same cases too.
 * Tolerance: out rel. L2 ≤ 2e-3 (f16 output rounding), lse max abs ≤ 1e-3.
 */
import { describe, expect, it } from "../harness.ts";
import type { FlexTensorConfig } from "../../kernels/flex_forward_tensor.ts";
import { flexForwardTensorWgsl, flexTensorSmemBytes } from "../../kernels/flex_forward_tensor.ts";
import { CAUSAL, checkOnce, compile, hooksOf, type Mods, NOOP, type Problem } from "../../bench/tensor_probe.ts";
import { TENSOR_SHAPES } from "../../lib/lower/flex_tensor_config.ts";
import { TRANSPOSE_TILE, transposeHeadsWgsl } from "../../kernels/transpose_heads.ts";
import { randomF16, transposeHeads } from "../../bench/tensor_probe.ts";
import { dispatchOnce } from "./raw_dispatch.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (k: string): string | undefined => g.Deno ? g.Deno.env.get(k) : g.process?.env?.[k];

/** Dawn's pump re-posts itself with setImmediate for as long as the GPU works; on a software adapter that busy
 * loop starves the driver (see lib/runtime/dawn_poll.ts, which this mirrors in a few lines). */
function throttlePolling() {
  const immediate = g.setImmediate;
  if (typeof immediate !== "function" || g.__flexTensorTestThrottle) return;
  let start = 0, last = -Infinity;
  const isNative = (fn: unknown) => typeof fn === "function" && Function.prototype.toString.call(fn).includes("[native code]");
  const throttled = (fn: (...a: unknown[]) => void, ...args: unknown[]) => {
    if (!isNative(fn)) return immediate(fn, ...args);
    const now = performance.now();
    if (now - last > 20) start = now;
    last = now;
    return now - start < 4 ? immediate(fn, ...args) : setTimeout(fn, 1, ...args);
  };
  Object.setPrototypeOf(throttled, immediate);
  g.setImmediate = throttled;
  g.__flexTensorTestThrottle = true;
}

async function open(): Promise<{ device: GPUDevice; matrices: boolean; smem: number } | string> {
  try {
    if (g.Deno && !env("XDG_RUNTIME_DIR")) g.Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
    const spec = "webgpu";
    const m = await import(spec);
    Object.assign(globalThis, m.globals);
    throttlePolling();
    const gpu: GPU = m.create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]);
    g.__flexTensorTestGpu = gpu; // the Dawn instance must outlive the device: collected, its pump segfaults
    const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) return "no Dawn adapter";
    if (!adapter.features.has("shader-f16")) return "the adapter lacks shader-f16";
    const matrices = adapter.features.has("chromium-experimental-subgroup-matrix" as GPUFeatureName) && adapter.features.has("subgroups" as GPUFeatureName);
    const feats = ["shader-f16", ...(matrices ? ["subgroups", "chromium-experimental-subgroup-matrix"] : [])] as GPUFeatureName[];
    const smem = adapter.limits.maxComputeWorkgroupStorageSize;
    const device = await adapter.requestDevice({ requiredFeatures: feats, requiredLimits: { maxComputeWorkgroupStorageSize: smem } });
    return { device, matrices, smem };
  } catch (e) {
    return `no Dawn WebGPU (${e instanceof Error ? e.message : e})`;
  }
}

const dev = await open();
const skip = typeof dev === "string" ? dev : false;
const device = typeof dev === "string" ? undefined as unknown as GPUDevice : dev.device;

const pipelines = new Map<string, Promise<GPUComputePipeline>>();
function pipelineOf(c: FlexTensorConfig, mods: Mods): Promise<GPUComputePipeline> {
  const code = flexForwardTensorWgsl(c, hooksOf(mods));
  let p = pipelines.get(code);
  if (!p) { p = compile(device, code); pipelines.set(code, p); }
  return p;
}

const TOL_OUT = 2e-3, TOL_LSE = 1e-3;
const base = { family: "tensor", emulate: true, identityScore: true, subgroupSize: 32, outF16: true, kvDirect: true } as const;

async function check(cfg: Partial<FlexTensorConfig> & { D: number; BM: number; BN: number; subgroups: number }, p: Partial<Problem> & { Sq: number }, mods: Mods, emulate = true, firstWalkOnly = false) {
  const c = { ...base, Dv: cfg.D, ...cfg, emulate, identityScore: !mods.scoreWgsl } as FlexTensorConfig;
  if (typeof dev !== "string") expect(flexTensorSmemBytes(c)).toBeLessThanOrEqual(dev.smem);
  const prob: Problem = { B: 1, Hq: 2, Hkv: p.Hq ?? 2, Skv: p.Sq, QB: 64, KB: 64, ...p, D: c.D, Dv: c.Dv } as Problem;
  const pipe = await pipelineOf(c, mods);
  if (env("FLEX_TEST_TRACE")) console.log("  compiled");
  const r = await checkOnce(device, pipe, c, prob, mods, firstWalkOnly);
  if (!(r.errOut <= TOL_OUT && r.errLse <= TOL_LSE)) console.log(`  ${JSON.stringify(cfg)} ${JSON.stringify(p)}: out ${r.errOut}, lse ${r.errLse}`);
  expect(r.errOut).toBeLessThanOrEqual(TOL_OUT);
  expect(r.errLse).toBeLessThanOrEqual(TOL_LSE);
  return r;
}

const SOFTCAP_HOLES: Mods = {
  // softcap 2·tanh(s / 2) with a causal mask that drops every row q ≡ 5 (mod 13) entirely
  scoreWgsl: "return 2.0 * tanh(score / 2.0);",
  scoreJs: (s) => 2 * Math.tanh(s / 2),
  maskWgsl: "return q >= kv && (q % 13) != 5;",
  maskJs: (_b, _h, q, kv) => q >= kv && q % 13 !== 5,
};

const RAMP_HOLES: Mods = {
  // a bias growing with the key position (30 natural units over 300 keys): each row's max keeps rising; the causal
  // mask drops every row q ≡ 5 (mod 13) entirely (SOFTCAP_HOLES' mask)
  scoreWgsl: "return score + 0.1 * f32(kv);", scoreJs: (s, _b, _h, _q, kv) => s + 0.1 * kv,
  maskWgsl: "return q >= kv && (q % 13) != 5;", maskJs: (_b, _h, q, kv) => q >= kv && q % 13 !== 5,
};

// 2 subgroups × 32 rows, one thread per row; 4 subgroups × 16 rows, two threads per row (row reductions)
const G1 = { BM: 64, BN: 32, subgroups: 2 };
const G2 = { BM: 64, BN: 32, subgroups: 4 };

for (const emulate of [true, false]) {
  // The emulated raw matrix takes ~8 min to compile on lavapipe; CI covers emulation through the library
  // (tests/kernels/flex_tensor_family.test.ts). FLEX_TEST_RAW_TENSOR=1 runs it anyway.
  const rawEmulated = (globalThis as { Deno?: { env: { get(k: string): string | undefined } }; process?: { env: Record<string, string | undefined> } });
  const wantEmulated = (rawEmulated.Deno?.env.get("FLEX_TEST_RAW_TENSOR") ?? rawEmulated.process?.env.FLEX_TEST_RAW_TENSOR) === "1";
  const why = skip || (!emulate && !(dev as { matrices: boolean }).matrices ? "the adapter has no subgroup matrices"
    : emulate && !wantEmulated && !(dev as { matrices: boolean }).matrices ? "raw emulated matrix: set FLEX_TEST_RAW_TENSOR=1 (CI runs the library-level emulated slice)" : false);
  const run = it.skipIf(why);
  describe(`flex forward tensor family (${emulate ? "emulated" : "subgroup-matrix intrinsics"}) vs float64`, () => {
    run("noop, D 64, S 128 (full blocks, direct K/V)", async () => void await check({ ...G1, D: 64 }, { Sq: 128 }, NOOP, emulate));
    run("causal, D 64, S 256, block 64: partial + full + skipped blocks", async () =>
      void await check({ ...G1, D: 64 }, { Sq: 256 }, CAUSAL, emulate));
    run("ragged Sq 200 × Skv 173, causal, block 128 (two workgroups per q block), batch 2", async () =>
      void await check({ ...G1, D: 64 }, { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate));
    run("GQA Hq 4, Hkv 2, noop, ragged Skv 150, D 40 (padded to 48)", async () =>
      void await check({ ...G1, D: 40, kvDirect: false }, { Hq: 4, Hkv: 2, Sq: 96, Skv: 150 }, NOOP, emulate));
    run("softcap score mod, fully masked rows (out 0, lse −∞), 2 threads per row", async () => {
      const r = await check({ ...G2, D: 64 }, { Sq: 150 }, SOFTCAP_HOLES, emulate);
      for (const row of [5, 18, 135]) {
        expect(r.lse[row]).toBe(-Infinity);
        for (let d = 0; d < 64; d++) expect(r.out[row * 64 + d]).toBe(0);
      }
    });
    run("D 32, causal, BN 64, staged K/V", async () =>
      void await check({ BM: 32, BN: 64, subgroups: 1, D: 32, kvDirect: false }, { Sq: 160 }, CAUSAL, emulate));
    run("D 80, causal, ragged S 173, staged K/V", async () =>
      void await check({ ...G1, D: 80, kvDirect: false }, { Sq: 173 }, CAUSAL, emulate));
    run("D 128, Dv 128, causal, S 130", async () =>
      void await check({ ...G1, D: 128 }, { Sq: 130 }, CAUSAL, emulate));
    run("split-KV 3 (f32 per-split out), noop over Skv 300, Sq 20", async () =>
      void await check({ ...G1, D: 64, outF16: false }, { Sq: 20, Skv: 300, splits: 3 }, NOOP, emulate));
    run("eager rescale (threshold 0), causal, scores ×4 (large spread)", async () =>
      void await check({ ...G1, D: 64, rescaleThreshold: 0 }, { Sq: 192, scale: 0.5 }, CAUSAL, emulate));
  });
}

// The pipelined staged path (kvPipe: K / V double-buffered in workgroup memory, the next tile in registers): the block
// walk's cross-block prefetch, edge tiles, row reductions through workgroup memory (G 2) and shuffles (native), split-KV,
// padded and large head dims. Shapes that fit lavapipe's 32 KiB; emulated only with FLEX_TEST_RAW_TENSOR=1, except two
// cases (the cross-block prefetch with ragged edges; S transposed with 2 threads a row, holes and split-KV) that the Deno +
// Dawn pass always runs emulated (~70 s on lavapipe): the default native shape's template is then in CI on every stop.
// The knob off by default (no shape of lib/lower/flex_tensor_config.ts's TENSOR_SHAPES sets it: P row-major beside
// compactSmem) runs emulated only with FLEX_TEST_FWD_KNOBS_ALL=1 (or FLEX_TEST_RAW_TENSOR=1); CI keeps one cheap case of
// it (noop, interior tiles).
const denoDawn = !!g.Deno && (env("FLEX_WEBGPU") ?? "dawn") === "dawn";
const knobsAll = env("FLEX_TEST_FWD_KNOBS_ALL") === "1" || env("FLEX_TEST_RAW_TENSOR") === "1";
for (const emulate of [false, true]) {
  const why = skip || (!emulate && !(dev as { matrices: boolean }).matrices ? "the adapter has no subgroup matrices"
    : emulate && env("FLEX_TEST_RAW_TENSOR") !== "1" ? "emulated kvPipe cases: set FLEX_TEST_RAW_TENSOR=1" : false);
  const run = it.skipIf(why);
  const whyCi = skip || (!emulate && !(dev as { matrices: boolean }).matrices ? "the adapter has no subgroup matrices"
    : emulate && !denoDawn && env("FLEX_TEST_RAW_TENSOR") !== "1" ? "emulated kvPipe CI cases run in the Deno + Dawn pass" : false);
  const runCi = it.skipIf(whyCi);
  const whyKnob = skip || (!emulate && !(dev as { matrices: boolean }).matrices ? "the adapter has no subgroup matrices"
    : emulate && !knobsAll ? "emulated cases of a default-off knob: set FLEX_TEST_FWD_KNOBS_ALL=1 (they run natively where the adapter has subgroup matrices)" : false);
  const runKnob = it.skipIf(whyKnob);
  const P1 = { BM: 32, BN: 32, subgroups: 1, kvDirect: false, kvPipe: true };
  describe(`flex forward tensor family, pipelined staged K/V (${emulate ? "emulated" : "subgroup-matrix intrinsics"}) vs float64`, () => {
    runCi("32/32/1: causal ragged 200×173, block 128, batch 2 (the next tile in the next block, edge tiles)", async () =>
      void await check({ ...P1, D: 64 }, { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate));
    run("32/32/2 (2 threads per row): softcap, fully masked rows (out 0, lse −∞)", async () => {
      const r = await check({ ...P1, subgroups: 2, D: 64 }, { Sq: 150 }, SOFTCAP_HOLES, emulate);
      for (const row of [5, 18, 135]) {
        expect(r.lse[row]).toBe(-Infinity);
        for (let d = 0; d < 64; d++) expect(r.out[row * 64 + d]).toBe(0);
      }
    });
    run("64/16/4 + shuffles: GQA 4:2, noop, D 40 (padded 48), ragged Skv 150", async () =>
      void await check({ ...P1, BM: 64, BN: 16, subgroups: 4, shuffleReduce: true, D: 40 }, { Hq: 4, Hkv: 2, Sq: 96, Skv: 150 }, NOOP, emulate));
    run("32/32/1: split-KV 3 (f32 per-split out), noop over Skv 300, Sq 20", async () =>
      void await check({ ...P1, D: 64, outF16: false }, { Sq: 20, Skv: 300, splits: 3 }, NOOP, emulate));
    run("64/16/4: D 128, causal, S 130", async () =>
      void await check({ ...P1, BM: 64, BN: 16, subgroups: 4, D: 128 }, { Sq: 130 }, CAUSAL, emulate));
    run("32/32/1: eager rescale (threshold 0), causal, scores ×4", async () =>
      void await check({ ...P1, D: 64, rescaleThreshold: 0 }, { Sq: 192, scale: 0.5 }, CAUSAL, emulate));
    // S and P transposed in workgroup memory (col_major S store, col_major P loads), 1 and 2 threads per row
    run("32/32/1, S and P transposed: causal ragged 200×173, block 128", async () =>
      void await check({ ...P1, sTransposed: true, pTransposed: true, D: 64 }, { Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate));
    runCi("32/32/2, S transposed, D 40: softcap, fully masked rows, split-KV 2", async () => {
      const r = await check({ ...P1, subgroups: 2, sTransposed: true, D: 40, outF16: false }, { Sq: 150, splits: 2 }, SOFTCAP_HOLES, emulate);
      for (const row of [5, 18, 135]) expect(r.lse[row]).toBe(-Infinity);
    });
    // kvSingle: one K / V buffer (the next tile's K and this tile's V stored after barrier 1)
    run("64/16/4 + shuffles, kvSingle, S and P transposed: causal ragged 200×173, block 128, batch 2", async () =>
      void await check({ ...P1, BM: 64, BN: 16, subgroups: 4, shuffleReduce: true, kvSingle: true, sTransposed: true, pTransposed: true, D: 64 },
        { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate));
    run("32/32/2, kvSingle, D 40: softcap, fully masked rows, split-KV 2", async () => {
      const r = await check({ ...P1, subgroups: 2, kvSingle: true, D: 40, outF16: false }, { Sq: 150, splits: 2 }, SOFTCAP_HOLES, emulate);
      for (const row of [5, 18, 135]) expect(r.lse[row]).toBe(-Infinity);
    });
    // compactSmem: Q staged in chunks of whole subgroups (64/16/4 kvSingle: 48 + 16 rows), O through fs as Sᵀ
    const CS = { ...P1, BM: 64, BN: 16, subgroups: 4, shuffleReduce: true, kvSingle: true, sTransposed: true, pTransposed: true, compactSmem: true };
    runCi("64/16/4 compactSmem kvSingle: causal ragged 200×173, block 128, batch 2; eager rescale, scores ×4", async () => {
      await check({ ...CS, D: 64 }, { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate);
      await check({ ...CS, D: 64, rescaleThreshold: 0 }, { Sq: 192, scale: 0.5 }, CAUSAL, emulate);
    });
    // P row-major (a row_major left load: one ldmatrix natively, where the col_major one of Pᵀ was 8 scalar loads): off by
    // default (every compactSmem shape transposes P); CI compiles and checks its template on interior tiles only
    runCi("64/16/4 compactSmem kvSingle, P row-major: noop 256 (interior tiles)", async () =>
      void await check({ ...CS, pTransposed: false, D: 64 }, { Sq: 256, QB: 128, KB: 128 }, NOOP, emulate));
    runKnob("64/16/4 compactSmem kvSingle, P row-major: causal ragged 200×173", async () =>
      void await check({ ...CS, pTransposed: false, D: 64 }, { Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate));
    // optimisticMax: the first walk without the rescale; rows whose max outgrows their first tiles' by more than 15
    // (boosted keys, a score ramp) send their workgroup through a second walk with it — without that walk P
    // overflows f16 (2¹⁵ < exp2(s − m)) and out is NaN
    runCi("64/16/4 compactSmem kvSingle optimisticMax: causal ragged 200×173; keys from 40 on ×12 (second walks); ramp score mod, fully masked rows, split-KV 2", async () => {
      const OM = { ...CS, optimisticMax: true, D: 64 };
      await check(OM, { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate, true); // no row outgrows its first max: the first walk alone
      await check(OM, { Sq: 192, QB: 128, KB: 128, kBoost: { from: 40, factor: 12 } }, NOOP, emulate);
      const r = await check({ ...OM, outF16: false }, { Sq: 150, Skv: 300, splits: 2, QB: 128, KB: 128 }, RAMP_HOLES, emulate);
      for (const row of [5, 18, 135]) expect(r.lse[row]).toBe(-Infinity);
    });
    if (!emulate) {
      // the default shape, long rows (32 blocks of 8 tiles): the first walk alone
      run("128/16/8 compactSmem kvSingle optimisticMax: noop S 2048 (first walk alone)", async () =>
        void await check({ ...CS, BM: 128, subgroups: 8, optimisticMax: true, D: 64 }, { Sq: 2048, QB: 128, KB: 128 }, NOOP, emulate, true));
    }
    run("128/16/8 compactSmem kvSingle, D 40: softcap, fully masked rows, split-KV 2", async () => {
      const r = await check({ ...CS, BM: 128, subgroups: 8, D: 40, outF16: false }, { Sq: 150, Skv: 300, splits: 2, QB: 128, KB: 128 }, SOFTCAP_HOLES, emulate);
      for (const row of [5, 18, 135]) expect(r.lse[row]).toBe(-Infinity);
    });
    if (!emulate) {
      // 35 and 44 KB: more than lavapipe's 32 KiB
      run("128/32/8 compactSmem, kvSingle (Q in 112 + 16 rows): causal ragged 200×173, batch 2; two buffers: GQA noop ragged 130×257", async () => {
        const c = { ...CS, BM: 128, BN: 32, subgroups: 8, D: 64 };
        await check(c, { B: 2, Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate);
        await check({ ...c, kvSingle: false }, { Hq: 4, Hkv: 2, Sq: 130, Skv: 257, QB: 128, KB: 128 }, NOOP, emulate);
      });
    }
  });
}

// Every shape the config search may pick: ragged causal (edge tiles staged), and a padded head dim (D 40 → 48,
// staged) where the shape stages K / V. On the intrinsics where the adapter has them (the GPU machine); emulated
// only with FLEX_TEST_RAW_TENSOR=1 (each emulated kernel compiles for a minute or more on lavapipe).
for (const emulate of [false, true]) {
  const wantEmulated = env("FLEX_TEST_RAW_TENSOR") === "1";
  const why = skip || (!emulate && !(dev as { matrices: boolean }).matrices ? "the adapter has no subgroup matrices"
    : emulate && !wantEmulated ? "emulated candidate shapes: set FLEX_TEST_RAW_TENSOR=1" : false);
  describe(`every tensor-family candidate shape (${emulate ? "emulated" : "subgroup-matrix intrinsics"}) vs float64`, () => {
    for (const s of TENSOR_SHAPES) {
      const { BM, BN, subgroups, kvDirect, prefetchV, shuffleReduce, kAhead, pTransposed, kTransposed, kvPipe, sTransposed, kvSingle, compactSmem, optimisticMax } = s;
      const cfg = { BM, BN, subgroups, kvDirect, prefetchV, shuffleReduce, kAhead, pTransposed, kTransposed, kvPipe, sTransposed, kvSingle, compactSmem, optimisticMax };
      // a shape that does not fit this adapter's workgroup storage is never picked on it (lavapipe: 32 KiB)
      const c64 = { ...base, ...cfg, D: 64, Dv: 64, emulate } as FlexTensorConfig;
      const fits = typeof dev === "string" || flexTensorSmemBytes(c64) <= dev.smem;
      const skipShape = why || (!fits ? `needs ${flexTensorSmemBytes(c64)} B of workgroup storage` : false);
      // optimisticMax shapes: the first walk alone (no row of these inputs outgrows its first max, so none may be marked)
      it.skipIf(skipShape)(`${JSON.stringify(s)}: causal ragged 200×173, block 128`, async () =>
        void await check({ ...cfg, D: 64 }, { Sq: 200, Skv: 173, QB: 128, KB: 128 }, CAUSAL, emulate, !!optimisticMax));
      if (!kvDirect) {
        it.skipIf(skipShape)(`${JSON.stringify(s)}: noop D40 (padded 48), GQA 4:2, Skv 150`, async () =>
          void await check({ ...cfg, D: 40 }, { Hq: 4, Hkv: 2, Sq: 96, Skv: 150, QB: 128, KB: 128 }, NOOP, emulate, !!optimisticMax));
      }
    }
  });
}

describe("tensor config bookkeeping", () => {
  it("rejects configs it cannot generate", () => {
    const c = { ...base, D: 64, Dv: 64, BM: 64, BN: 32, subgroups: 2 } as FlexTensorConfig;
    expect(() => flexForwardTensorWgsl({ ...c, BM: 48 }, hooksOf(NOOP))).toThrow();
    expect(() => flexForwardTensorWgsl({ ...c, D: 72, kvDirect: true }, hooksOf(NOOP))).toThrow();
    expect(() => flexForwardTensorWgsl({ ...c, subgroupSize: 16 }, hooksOf(NOOP))).toThrow();
    expect(flexForwardTensorWgsl({ ...c, emulate: false }, hooksOf(NOOP))).toContain("subgroupMatrixMultiplyAccumulate");
    expect(flexForwardTensorWgsl(c, hooksOf(NOOP))).not.toContain("subgroup_matrix");
  });
  it("kvPipe rejects the other staging knobs and double-buffers K / V with padded rows", () => {
    const c = { ...base, kvDirect: false, kvPipe: true, D: 64, Dv: 64, BM: 128, BN: 32, subgroups: 4 } as FlexTensorConfig;
    expect(() => flexForwardTensorWgsl({ ...c, kvDirect: true }, hooksOf(NOOP))).toThrow();
    expect(() => flexForwardTensorWgsl({ ...c, prefetchV: true }, hooksOf(NOOP))).toThrow();
    const native = flexForwardTensorWgsl({ ...c, emulate: false }, hooksOf(CAUSAL));
    expect(native).toContain("subgroupMatrixLoad<RM, col_major>(&hs, kbuf + 16u * (1u) * 72u"); // K rows of 64 + 8 f16
    expect(native).toContain("let o = nbuf + n * 72u"); // the next tile goes to the other buffer
    expect(flexTensorSmemBytes(c)).toBeLessThanOrEqual(49152); // fits the H200's workgroup storage
    const one = flexForwardTensorWgsl({ ...c, emulate: false, kvSingle: true }, hooksOf(CAUSAL));
    expect(one).not.toContain("nbuf"); // one buffer
    expect(flexTensorSmemBytes({ ...c, kvSingle: true })).toBeLessThan(flexTensorSmemBytes(c) - 8000);
    expect(() => flexForwardTensorWgsl({ ...c, kvPipe: false, kvSingle: true }, hooksOf(NOOP))).toThrow();
    // the knobs retired in session 16, named in a config built from JSON
    for (const knob of ["skew", "pvDefer", "kvLate", "kvLead", "pingPong", "qSmem"]) {
      expect(() => flexForwardTensorWgsl({ ...c, [knob]: true } as FlexTensorConfig, hooksOf(NOOP))).toThrow(/retired/);
    }
    expect(() => flexForwardTensorWgsl({ ...c, probe: { skewOrder: "sm-pv-qk" } } as unknown as FlexTensorConfig, hooksOf(NOOP))).toThrow();
  });
  it("compactSmem stages Q in chunks of whole subgroups and sizes fs to the Sᵀ tile", () => {
    const c = { ...base, kvDirect: false, kvPipe: true, D: 64, Dv: 64, BM: 128, BN: 16, subgroups: 8, shuffleReduce: true, sTransposed: true, pTransposed: true } as FlexTensorConfig;
    const w = flexForwardTensorWgsl({ ...c, emulate: false, kvSingle: true, compactSmem: true }, hooksOf(CAUSAL));
    expect(w).toContain("if (sg >= 3u && sg < 6u) {"); // chunks of 48 rows: subgroups 0–2, 3–5, 6–7
    expect(w).toContain("var<workgroup> fs: array<f32, 2112>;"); // Sᵀ [16][128 + 4], the O chunks too
    expect(w).toContain("subgroupMatrixLoad<CM, col_major>(&fs, ");
    const n = { ...c, emulate: false };
    expect(flexTensorSmemBytes({ ...n, compactSmem: true })).toBeLessThan(flexTensorSmemBytes(n) - 10000);
    expect(flexTensorSmemBytes({ ...n, kvSingle: true, compactSmem: true })).toBeLessThan(18000);
    expect(() => flexForwardTensorWgsl({ ...c, sTransposed: false, compactSmem: true }, hooksOf(NOOP))).toThrow();
    expect(() => flexForwardTensorWgsl({ ...c, kvPipe: false, compactSmem: true }, hooksOf(NOOP))).toThrow();
  });
  it("kAhead pipelines the K loads natively and changes nothing emulated", () => {
    const c = { ...base, D: 64, Dv: 64, BM: 32, BN: 32, subgroups: 1, prefetchV: true } as FlexTensorConfig;
    const native = flexForwardTensorWgsl({ ...c, emulate: false, kAhead: true }, hooksOf(CAUSAL));
    expect(native).toContain("have_kp = tile + 64u <= col_limit;");
    expect(native).not.toBe(flexForwardTensorWgsl({ ...c, emulate: false }, hooksOf(CAUSAL)));
    expect(flexForwardTensorWgsl({ ...c, kAhead: true }, hooksOf(CAUSAL))).toBe(flexForwardTensorWgsl(c, hooksOf(CAUSAL)));
  });
  it("pTransposed stores P down its column and loads it col_major, natively and emulated", () => {
    const c = { ...base, D: 64, Dv: 64, BM: 32, BN: 32, subgroups: 1, prefetchV: true } as FlexTensorConfig;
    const native = flexForwardTensorWgsl({ ...c, emulate: false, pTransposed: true }, hooksOf(CAUSAL));
    expect(native).toContain("subgroupMatrixLoad<LM, col_major>(&hs, ");
    expect(native).not.toContain("subgroupMatrixLoad<LM, row_major>(&hs, 2304u + (sg");
    expect(native).toContain("hs[o + 40u] = ph.y;");
    expect(flexForwardTensorWgsl({ ...c, pTransposed: true }, hooksOf(CAUSAL))).toContain("fn em_ld_left_hs_c(");
    expect(flexTensorSmemBytes({ ...c, BM: 64, subgroups: 2, pTransposed: true })).toBeLessThan(flexTensorSmemBytes({ ...c, BM: 64, subgroups: 2 }));
  });
});

// the kTransposed configs' Kᵀ (lib/lower/k_transpose.ts): ragged in both dims (partial 32×32 tiles), 3 heads
it.skipIf(skip)("transpose_heads: 3 heads × 77 rows × 48 cols, f16 exact vs the CPU, output poisoned", async () => {
  const heads = 3, rows = 77, cols = 48, n = heads * rows * cols;
  const x = randomF16(n);
  const poison = new Uint16Array(n).fill(0x7e00); // NaN: unwritten elements fail
  const pipe = await compile(device, transposeHeadsWgsl(), true);
  const got = new Uint16Array(await dispatchOnce(device, pipe, [{ data: x }, { data: poison }, { data: new Uint32Array([rows, cols, 0, 0]), uniform: true }], 1,
    [Math.ceil(rows / TRANSPOSE_TILE), Math.ceil(cols / TRANSPOSE_TILE), heads]));
  const want = transposeHeads(x, heads, rows, cols);
  expect(Array.from(got)).toEqual(Array.from(new Uint16Array(want.buffer, want.byteOffset, n)));
});

if (typeof dev !== "string") {
  it("release the device", async () => {
    await dev.device.queue.onSubmittedWorkDone();
    dev.device.destroy();
  });
}
