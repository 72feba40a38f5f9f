/**
 * Raw-WebGPU probe of the tensor-family flex forward (kernels/flex_forward_tensor.ts), independent of the
 * library runtime: builds the kernel for a few configs, checks it against a float64 CPU reference at a small
 * size, then times B4 H16 S4096 D64 noop and causal (128-blocks). On the GPU machine:
 *   bash .gpu/on-device.sh deno run -A bench/tensor_probe.ts        (FLEX_PROBE_EMULATE=1: emulated kernels)
 * Env: FLEX_PROBE_CONFIGS (JSON array of partial configs), FLEX_PROBE_SKIP_CHECK=1, DAWN_EXTRA (extra Dawn
 * toggles, e.g. disable_robustness). Results print as they come (the Dawn addon under Deno has aborted between
 * timed submits before; a crash then loses only the rest).
 *
 * The helpers (tables, reference, one-shot runner) are exported for tests/kernels/flex_forward_tensor_raw.test.ts.
 */
import { FLEX_FORWARD_UNIFORMS } from "../kernels/flex_forward.ts";
import { type FlexTensorConfig, flexForwardTensorWgsl, flexTensorSmemBytes, flexTensorThreads } from "../kernels/flex_forward_tensor.ts";
import { DAWN_FLAGS } from "../lib/runtime/providers.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (k: string): string | undefined => g.Deno ? g.Deno.env.get(k) : g.process?.env?.[k];

export type MaskJs = (b: number, h: number, q: number, kv: number) => boolean;
export type ScoreJs = (s: number, b: number, h: number, q: number, kv: number) => number;

export interface Mods {
  readonly maskWgsl: string; // body of mask_mod
  readonly maskJs: MaskJs;
  readonly scoreWgsl?: string; // body of score_mod (undefined: identity)
  readonly scoreJs?: ScoreJs;
}

export const hooksOf = (m: Mods) => ({
  preamble: "",
  scoreMod: `fn score_mod(score: f32, b: i32, h: i32, q: i32, kv: i32) -> f32 { ${m.scoreWgsl ?? "return score;"} }`,
  maskMod: `fn mask_mod(b: i32, h: i32, q: i32, kv: i32) -> bool { ${m.maskWgsl} }`,
});

/** Broadcast (B = H = 1) BlockMask tables of `mask`, packed like lib/lower/plan_flex.ts's packTables. */
export function buildTables(mask: MaskJs, Sq: number, Skv: number, QB: number, KB: number) {
  const nQ = Math.ceil(Sq / QB), nKV = Math.ceil(Skv / KB);
  const kvNum = new Int32Array(nQ), kvIdx = new Int32Array(nQ * nKV), fullNum = new Int32Array(nQ), fullIdx = new Int32Array(nQ * nKV);
  let visited = 0;
  for (let qb = 0; qb < nQ; qb++) {
    for (let kb = 0; kb < nKV; kb++) {
      let any = false, all = true;
      const q1 = Math.min(Sq, (qb + 1) * QB), k1 = Math.min(Skv, (kb + 1) * KB);
      // causal-like masks: exhaustive is fine at test sizes; at bench sizes the callers use masks that are cheap
      for (let q = qb * QB; q < q1 && (all || !any); q++) {
        for (let kv = kb * KB; kv < k1; kv++) {
          if (mask(0, 0, q, kv)) any = true; else all = false;
          if (any && !all) break;
        }
      }
      if (!any) continue;
      visited++;
      if (all) fullIdx[qb * nKV + fullNum[qb]++] = kb;
      else kvIdx[qb * nKV + kvNum[qb]++] = kb;
    }
  }
  const data = new Int32Array(4 * nQ + 2 * nQ * nKV);
  const offKvNum = 0, offKvIdx = nQ, offFullNum = nQ + nQ * nKV, offFullIdx = 2 * nQ + nQ * nKV;
  data.set(kvNum, offKvNum); data.set(kvIdx, offKvIdx); data.set(fullNum, offFullNum); data.set(fullIdx, offFullIdx);
  return { data, nQ, nKV, offKvNum, offKvIdx, offFullNum, offFullIdx, density: visited / (nQ * nKV) };
}

export interface Problem {
  B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number; Dv: number; QB: number; KB: number;
  scale?: number; splits?: number;
  /** Keys from position `from` on (every batch and head) scaled by `factor` (f16-rounded): rows whose max grows
   * far past their first tiles' (the optimistic-max forward's second walk). */
  kBoost?: { from: number; factor: number };
}

/** float64 dense reference: out [B, Hq, Sq, Dv], lse [B, Hq, Sq] (natural log; fully masked: 0 and −∞). */
export function reference(p: Problem, mods: Mods, q: Float32Array, k: Float32Array, v: Float32Array) {
  const scale = p.scale ?? 1 / Math.sqrt(p.D);
  const out = new Float64Array(p.B * p.Hq * p.Sq * p.Dv), lse = new Float64Array(p.B * p.Hq * p.Sq);
  const s = new Float64Array(p.Skv);
  for (let b = 0; b < p.B; b++) for (let h = 0; h < p.Hq; h++) {
    const hk = Math.floor(h / (p.Hq / p.Hkv));
    for (let i = 0; i < p.Sq; i++) {
      const qo = ((b * p.Hq + h) * p.Sq + i) * p.D;
      let mx = -Infinity;
      for (let j = 0; j < p.Skv; j++) {
        if (!mods.maskJs(b, h, i, j)) { s[j] = -Infinity; continue; }
        const ko = ((b * p.Hkv + hk) * p.Skv + j) * p.D;
        let dot = 0;
        for (let d = 0; d < p.D; d++) dot += q[qo + d] * k[ko + d];
        dot *= scale;
        s[j] = mods.scoreJs ? mods.scoreJs(dot, b, h, i, j) : dot;
        mx = Math.max(mx, s[j]);
      }
      const row = (b * p.Hq + h) * p.Sq + i;
      if (mx === -Infinity) { lse[row] = -Infinity; continue; }
      let sum = 0;
      for (let j = 0; j < p.Skv; j++) {
        if (s[j] === -Infinity) continue;
        const e = Math.exp(s[j] - mx);
        sum += e;
        const vo = ((b * p.Hkv + hk) * p.Skv + j) * p.Dv;
        for (let d = 0; d < p.Dv; d++) out[row * p.Dv + d] += e * v[vo + d];
      }
      for (let d = 0; d < p.Dv; d++) out[row * p.Dv + d] /= sum;
      lse[row] = mx + Math.log(sum);
    }
  }
  return { out, lse };
}

/** Uniform words of a launch (FLEX_FORWARD_UNIFORMS order). */
export function uniformsOf(p: Problem, t: ReturnType<typeof buildTables>, BM: number, identityScore: boolean): Uint32Array {
  const scale = (p.scale ?? 1 / Math.sqrt(p.D)) * (identityScore ? Math.LOG2E : 1);
  // uniforms this probe does not know (added for other kernels' features) are 0
  const u: Partial<Record<(typeof FLEX_FORWARD_UNIFORMS)[number], number>> = {
    Hq: p.Hq, Hkv: p.Hkv, Sq: p.Sq, Skv: p.Skv, QB: p.QB, KB: p.KB, m_tiles: Math.ceil(p.QB / BM), n_kv_blocks: t.nKV,
    nq_blocks: t.nQ, tb_stride_b: 0, tb_stride_h: 0, off_kv_num: t.offKvNum, off_kv_idx: t.offKvIdx,
    off_full_num: t.offFullNum, off_full_idx: t.offFullIdx, has_full: 1,
    q_scale: new Uint32Array(new Float32Array([scale]).buffer)[0], B: p.B, n_splits: p.splits ?? 1, pad1: 0,
  };
  return Uint32Array.from(FLEX_FORWARD_UNIFORMS, (key) => u[key] ?? 0);
}

/** Random f16-representable values (uniform in [−a, a]). */
export function randomF16(n: number, a = 1): Float16Array {
  const h = new Float16Array(n);
  for (let i = 0; i < n; i++) h[i] = (Math.random() * 2 - 1) * a;
  return h;
}

export const FLEX_LAYOUT_ENTRIES = (): GPUBindGroupLayoutEntry[] =>
  Array.from({ length: 9 }, (_, i) => ({
    binding: i,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: i === 8 ? "uniform" : i >= 5 ? "storage" : "read-only-storage" },
  }) as GPUBindGroupLayoutEntry);

export async function compile(device: GPUDevice, code: string, autoLayout = false): Promise<GPUComputePipeline> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errs = info.messages.filter((m) => m.type === "error");
  const layout = device.createPipelineLayout({ bindGroupLayouts: [device.createBindGroupLayout({ entries: FLEX_LAYOUT_ENTRIES() })] });
  const pipeline = await device.createComputePipelineAsync({ layout: autoLayout ? "auto" : layout, compute: { module, entryPoint: "main" } }).catch((e) => e as Error);
  const err = await device.popErrorScope();
  if (errs.length || err || pipeline instanceof Error) {
    const m = errs.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join("\n") || err?.message || (pipeline as Error).message;
    throw new Error(`tensor kernel failed to compile:\n${m.slice(0, 3000)}`);
  }
  return pipeline as GPUComputePipeline;
}

export interface Launch {
  run(times?: number): void; // encode + submit `times` dispatches in one submit
  /** GPU ms per dispatch of `times` dispatches in one compute pass (timestamp queries; the device needs
   * "timestamp-query"), free of the host's wait latency that wall-clock timing includes. */
  gpuMs(times: number): Promise<number>;
  read(): Promise<{ out: Float32Array; lse: Float32Array }>;
  destroy(): void;
}

/** Buffers and bind group of one problem (out poisoned with NaN bits, lse too). */
export function prepare(device: GPUDevice, pipeline: GPUComputePipeline, c: FlexTensorConfig, p: Problem, tables: ReturnType<typeof buildTables>,
  q: Float16Array, k: Float16Array, v: Float16Array, secondWalk?: GPUComputePipeline | "none"): Launch {
  // optimisticMax: every dispatch is two, the optimistic walk then the plain kernel with pad1 = 1 (the marked workgroups);
  // "none": the optimistic walk alone (a test that its results are right where no row outgrows its first max)
  if (c.optimisticMax && !secondWalk) throw new Error("prepare: an optimisticMax config needs its second launch's pipeline (secondWalkPipeline)");
  const U = GPUBufferUsage;
  const bufs: GPUBuffer[] = [];
  const mk = (data: ArrayBufferView | number, usage: number) => {
    const size = Math.max(16, Math.ceil((typeof data === "number" ? data : data.byteLength) / 16) * 16);
    const b = device.createBuffer({ size, usage: usage | U.COPY_DST | U.COPY_SRC });
    if (typeof data !== "number") device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    bufs.push(b);
    return b;
  };
  const splits = p.splits ?? 1;
  const rows = p.B * p.Hq * p.Sq;
  const outBytes = splits * rows * p.Dv * (c.outF16 ? 2 : 4);
  const poisonOut = c.outF16 ? new Uint16Array(outBytes / 2).fill(0x7e00) : new Uint32Array(outBytes / 4).fill(0x7fc00000);
  const bq = mk(q, U.STORAGE), bt = mk(tables.data, U.STORAGE);
  const bk = mk(c.kTransposed ? transposeHeads(k, p.B * p.Hkv, p.Skv, p.D) : k, U.STORAGE);
  const bv = mk(c.probe?.vTransposed ? transposeHeads(v, p.B * p.Hkv, p.Skv, p.Dv) : v, U.STORAGE);
  const bc = mk(new Uint32Array(4), U.STORAGE), be = mk(new Uint32Array(4), U.STORAGE);
  const bo = mk(poisonOut, U.STORAGE), bl = mk(new Uint32Array(splits * rows).fill(0x7fc00000), U.STORAGE);
  const words = uniformsOf(p, tables, c.BM, c.identityScore);
  const launchOf = (pipe: GPUComputePipeline, uniforms: Uint32Array) => ({
    pipe,
    bg: device.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [bq, bk, bv, bt, bc, be, bo, bl, mk(uniforms, U.UNIFORM)].map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  });
  const secondWords = Uint32Array.from(words);
  secondWords[FLEX_FORWARD_UNIFORMS.indexOf("pad1")] = 1;
  // FLEX_PROBE_FIRST_WALK_ONLY=1 (diagnostic): every optimistic dispatch without its second launch — times the first walk
  // alone, and a variant whose first walk marks workgroups it should not fails its check
  const second = secondWalk === "none" || env("FLEX_PROBE_FIRST_WALK_ONLY") === "1" ? undefined : secondWalk;
  const launches = [launchOf(pipeline, words), ...(second ? [launchOf(second, secondWords)] : [])];
  const grid: [number, number, number] = [tables.nQ * Math.ceil(p.QB / c.BM), p.Hq, p.B * splits];
  const dispatch = (pass: GPUComputePassEncoder) => {
    for (const l of launches) {
      pass.setPipeline(l.pipe);
      pass.setBindGroup(0, l.bg);
      pass.dispatchWorkgroups(...grid);
    }
  };
  let qs: GPUQuerySet | undefined, qb: GPUBuffer | undefined, qr: GPUBuffer | undefined;
  return {
    async gpuMs(times: number) {
      if (!qs) {
        qs = device.createQuerySet({ type: "timestamp", count: 2 });
        qb = device.createBuffer({ size: 16, usage: U.QUERY_RESOLVE | U.COPY_SRC });
        qr = device.createBuffer({ size: 16, usage: U.MAP_READ | U.COPY_DST });
      }
      const e = device.createCommandEncoder();
      const pass = e.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
      for (let i = 0; i < times; i++) dispatch(pass);
      pass.end();
      e.resolveQuerySet(qs, 0, 2, qb!, 0);
      e.copyBufferToBuffer(qb!, 0, qr!, 0, 16);
      device.queue.submit([e.finish()]);
      await qr!.mapAsync(GPUMapMode.READ);
      const t = new BigInt64Array(qr!.getMappedRange().slice(0));
      qr!.unmap();
      return Number(t[1] - t[0]) / 1e6 / times;
    },
    run(times = 1) {
      const e = device.createCommandEncoder();
      const pass = e.beginComputePass();
      for (let i = 0; i < times; i++) dispatch(pass);
      pass.end();
      device.queue.submit([e.finish()]);
    },
    async read() {
      const rb = device.createBuffer({ size: bo.size + bl.size + 16, usage: U.MAP_READ | U.COPY_DST });
      const e = device.createCommandEncoder();
      e.copyBufferToBuffer(bo, 0, rb, 0, bo.size);
      e.copyBufferToBuffer(bl, 0, rb, bo.size, bl.size);
      e.copyBufferToBuffer(be, 0, rb, bo.size + bl.size, 16);
      device.queue.submit([e.finish()]);
      await rb.mapAsync(GPUMapMode.READ);
      const all = rb.getMappedRange();
      const n = splits * rows * p.Dv;
      const out = c.outF16 ? Float32Array.from(new Float16Array(all.slice(0, 2 * n))) : new Float32Array(all.slice(0, 4 * n));
      const lse = new Float32Array(all.slice(bo.size, bo.size + 4 * splits * rows));
      const errBits = new Uint32Array(all.slice(bo.size + bl.size, bo.size + bl.size + 4))[0];
      rb.unmap();
      rb.destroy();
      if (errBits) throw new Error(`kernel raised error bits ${errBits}`);
      return { out, lse };
    },
    destroy() { for (const b of bufs) b.destroy(); qs?.destroy(); qb?.destroy(); qr?.destroy(); },
  };
}

/** [heads][rows][cols] → [heads][cols][rows] (K / V for the kernel's kTransposed / probe.vTransposed layouts). */
export function transposeHeads(x: Float16Array, heads: number, rows: number, cols: number): Float16Array {
  const t = new Float16Array(x.length);
  for (let h = 0; h < heads; h++) {
    const o = h * rows * cols;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[o + c * rows + r] = x[o + r * cols + c];
  }
  return t;
}

/** Merges split-KV slices (f32 out / lse of each split) like kernels/flex_combine.ts. */
export function combineSplits(out: Float32Array, lse: Float32Array, splits: number, rows: number, Dv: number) {
  const o = new Float64Array(rows * Dv), l = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let s = 0; s < splits; s++) m = Math.max(m, lse[s * rows + r]);
    if (m === -Infinity) { l[r] = -Infinity; continue; }
    let sum = 0;
    for (let s = 0; s < splits; s++) sum += Math.exp(lse[s * rows + r] - m);
    for (let s = 0; s < splits; s++) {
      const w = Math.exp(lse[s * rows + r] - m) / sum;
      if (w === 0) continue;
      for (let d = 0; d < Dv; d++) o[r * Dv + d] += w * out[(s * rows + r) * Dv + d];
    }
    l[r] = m + Math.log(sum);
  }
  return { out: o, lse: l };
}

export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    if (a[i] === b[i]) { if (Number.isFinite(b[i])) den += b[i] * b[i]; continue; }
    num += (a[i] - b[i]) ** 2; den += b[i] * b[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    if (a[i] !== b[i]) m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  return m;
}

/** Runs one problem once and compares with the reference: { errOut (rel. L2), errLse (max abs) }. */
/** optimisticMax: the plain kernel of the same config (its second launch, pad1 = 1); else undefined. */
export function secondWalkPipeline(device: GPUDevice, c: FlexTensorConfig, mods: Mods): Promise<GPUComputePipeline> | undefined {
  return c.optimisticMax ? compile(device, flexForwardTensorWgsl({ ...c, optimisticMax: false }, hooksOf(mods))) : undefined;
}

/** `firstWalkOnly` (optimisticMax): leave the second launch out, so a first walk that marks workgroups it should not
 * (wrong scores make a row's max jump) shows as an error instead of being redone right. */
export async function checkOnce(device: GPUDevice, pipeline: GPUComputePipeline, c: FlexTensorConfig, p: Problem, mods: Mods, firstWalkOnly = false) {
  const q = randomF16(p.B * p.Hq * p.Sq * p.D), k = randomF16(p.B * p.Hkv * p.Skv * p.D), v = randomF16(p.B * p.Hkv * p.Skv * p.Dv);
  if (p.kBoost) for (let i = 0; i < k.length; i++) if (Math.floor(i / p.D) % p.Skv >= p.kBoost.from) k[i] *= p.kBoost.factor;
  const tables = buildTables(mods.maskJs, p.Sq, p.Skv, p.QB, p.KB);
  const trace = env("FLEX_TEST_TRACE") ? (m: string) => console.log(`  [trace] ${m}`) : () => {};
  const launch = prepare(device, pipeline, c, p, tables, q, k, v, firstWalkOnly && c.optimisticMax ? "none" : await secondWalkPipeline(device, c, mods));
  trace("prepared");
  try {
    launch.run();
    trace("submitted");
    let { out, lse } = await launch.read();
    trace("read");
    const ref = reference(p, mods, Float32Array.from(q), Float32Array.from(k), Float32Array.from(v));
    const splits = p.splits ?? 1;
    if (splits > 1) {
      const m = combineSplits(out, lse, splits, p.B * p.Hq * p.Sq, p.Dv);
      out = Float32Array.from(m.out); lse = Float32Array.from(m.lse);
    }
    return { errOut: relL2(out, ref.out), errLse: maxAbs(lse, ref.lse), out, lse, ref };
  } finally {
    launch.destroy();
  }
}

export const NOOP: Mods = { maskWgsl: "return true;", maskJs: () => true };
export const CAUSAL: Mods = { maskWgsl: "return q >= kv;", maskJs: (_b, _h, q, kv) => q >= kv };
/** The gallery's softcap 20 with a causal mask. */
export const SOFTCAP_CAUSAL: Mods = {
  ...CAUSAL, scoreWgsl: "return 20.0 * tanh(score / 20.0);", scoreJs: (x) => 20 * Math.tanh(x / 20),
};


/** Each matrix load / store layout on workgroup and storage arrays against the CPU (16×16 f16, f32 result). */
async function micro(device: GPUDevice) {
  const U = GPUBufferUsage;
  const A = new Float16Array(4096).map(() => Math.round(Math.random() * 8 - 4) / 4);
  const bA = device.createBuffer({ size: A.byteLength, usage: U.STORAGE | U.COPY_DST });
  device.queue.writeBuffer(bA, 0, A.buffer as ArrayBuffer);
  const bC = device.createBuffer({ size: 1024, usage: U.STORAGE | U.COPY_SRC });
  const rb = device.createBuffer({ size: 1024, usage: U.MAP_READ | U.COPY_DST });
  // C = L · R with L, R loaded with (space, layout, offset, stride); C stored via workgroup or storage
  const cases: [string, string, string, number, number, string][] = [];
  for (const space of ["wg", "st"]) for (const kind of ["left", "right"]) for (const layout of ["row_major", "col_major"]) for (const stride of [16, 24, 72]) {
    cases.push([space, kind, layout, 40, stride, "st"]);
  }
  cases.push(["wg", "right", "col_major", 40, 72, "wg"]);
  for (const [space, kind, layout, off, stride, cst] of cases) {
    // the tested operand uses (layout, off, stride); the other one is row_major from storage at 2048, stride 16
    const src = space === "wg" ? "W" : "A";
    const tested = `subgroupMatrixLoad<${kind === "left" ? "LM" : "RM"}, ${layout}>(&${src}, ${off}u, ${stride}u)`;
    const other = `subgroupMatrixLoad<${kind === "left" ? "RM" : "LM"}, row_major>(&A, 2048u, 16u)`;
    const code = `enable f16; enable subgroups; enable chromium_experimental_subgroup_matrix;
alias LM = subgroup_matrix_left<f16, 16, 16>; alias RM = subgroup_matrix_right<f16, 16, 16>; alias CM = subgroup_matrix_result<f32, 16, 16>;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
var<workgroup> W: array<f16, 2048>;
var<workgroup> F: array<f32, 512>;
@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) tid: u32) {
  for (var i = tid; i < 2048u; i += 32u) { W[i] = A[i]; }
  workgroupBarrier();
  let t = ${tested};
  let o = ${other};
  var c = CM();
  c = subgroupMatrixMultiplyAccumulate(${kind === "left" ? "t, o" : "o, t"}, c);
  ${cst === "wg" ? "subgroupMatrixStore<row_major>(&F, 8u, c, 20u); workgroupBarrier(); for (var i = tid; i < 256u; i += 32u) { C[i] = F[8u + (i / 16u) * 20u + i % 16u]; }" : "subgroupMatrixStore<row_major>(&C, 0u, c, 16u);"}
}`;
    try {
      const p = await compile(device, code.replace(/@group\(0\) @binding\(1\)/, "@group(0) @binding(6)").replace("@binding(0) var<storage, read> A", "@binding(0) var<storage, read> A"), true);
      const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: bA } }, { binding: 6, resource: { buffer: bC } }] });
      const e = device.createCommandEncoder(); const ps = e.beginComputePass(); ps.setPipeline(p); ps.setBindGroup(0, bg); ps.dispatchWorkgroups(1); ps.end();
      e.copyBufferToBuffer(bC, 0, rb, 0, 1024); device.queue.submit([e.finish()]);
      await rb.mapAsync(GPUMapMode.READ); const got = new Float32Array(rb.getMappedRange().slice(0)); rb.unmap();
      const T = (r: number, c: number) => layout === "row_major" ? A[off + r * stride + c] : A[off + c * stride + r];
      const Ot = (r: number, c: number) => A[2048 + r * 16 + c];
      let err = 0;
      for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) {
        let x = 0;
        for (let k = 0; k < 16; k++) x += kind === "left" ? T(i, k) * Ot(k, j) : Ot(i, k) * T(k, j);
        err = Math.max(err, Math.abs(got[i * 16 + j] - x));
      }
      console.log(`  micro ${space} ${kind} ${layout} off ${off} stride ${stride} store ${cst}: max err ${err}`);
    } catch (e) { console.log(`  micro ${space} ${kind} ${layout}: ${(e as Error).message.slice(0, 300)}`); }
  }
}

/** A Dawn device for the raw probes, as the library's Dawn provider makes it (lib/runtime/providers.ts DAWN_FLAGS) plus
 * DAWN_EXTRA's toggles: the adapter's features of f16 / subgroups / subgroup matrices / timestamps and its largest
 * buffer, binding, workgroup-storage and invocation limits; GPU errors print. `gpu` must stay referenced until the
 * process exits (a Dawn instance collected early crashes the exit: scripts/NATIVE_EXIT.md). */
export async function openProbeDevice(): Promise<{ gpu: unknown; adapter: GPUAdapter; device: GPUDevice; feats: GPUFeatureName[]; extra: string }> {
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals);
  const extra = env("DAWN_EXTRA") ?? "";
  const gpu = create([`${DAWN_FLAGS[0]}${extra ? "," + extra : ""}`]);
  const adapter = (await gpu.requestAdapter({ powerPreference: "high-performance" }))!;
  const want = ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix", "timestamp-query"] as GPUFeatureName[];
  const feats = want.filter((f) => adapter.features.has(f));
  const L = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: feats,
    requiredLimits: {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize, maxBufferSize: L.maxBufferSize,
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
    },
  });
  device.addEventListener?.("uncapturederror", (e) => console.log(`GPUERR ${(e as GPUUncapturedErrorEvent).error.message.slice(0, 500)}`));
  return { gpu, adapter, device, feats, extra };
}

// ---------------------------------------------------------------------------------------------- main
async function main() {
  const { gpu, adapter, device, feats, extra } = await openProbeDevice();
  g.__probeGpu = gpu;
  const emulate = env("FLEX_PROBE_EMULATE") === "1";
  const L = adapter.limits;
  // deno-lint-ignore no-explicit-any
  const info = adapter.info as any;
  console.log(`adapter ${info.description || info.device} features ${feats.join(",")} toggles ${extra || "(none)"} wg storage ${L.maxComputeWorkgroupStorageSize}`);
  if (info.subgroupMatrixConfigs) console.log("subgroupMatrixConfigs", JSON.stringify([...info.subgroupMatrixConfigs]));
  if (!emulate && !feats.includes("chromium-experimental-subgroup-matrix" as GPUFeatureName)) {
    console.log("no subgroup matrices: set FLEX_PROBE_EMULATE=1");
    return;
  }
  if (env("FLEX_PROBE_MICRO") !== "0") await micro(device);
  const base = { family: "tensor", D: 64, Dv: 64, emulate, identityScore: true, subgroupSize: 32, outF16: true } as const;
  // H200 (2026-12-01): direct K/V, BN 32 best; staged (kvDirect false) exact since the uniform block walk (RESULTS.md)
  const defaults: Partial<FlexTensorConfig>[] = [
    { BM: 64, BN: 32, subgroups: 2, kvDirect: true },
    { BM: 32, BN: 32, subgroups: 1, kvDirect: true },
    { BM: 64, BN: 32, subgroups: 4, kvDirect: true },
    { BM: 64, BN: 64, subgroups: 2, kvDirect: true },
    { BM: 64, BN: 32, subgroups: 2, kvDirect: false },
  ];

  const configs = (env("FLEX_PROBE_CONFIGS") ? JSON.parse(env("FLEX_PROBE_CONFIGS")!) : defaults) as Partial<FlexTensorConfig>[];
  const U = GPUBufferUsage;
  const flag = device.createBuffer({ size: 4, usage: U.MAP_READ | U.COPY_DST });
  const sync = async () => {
    const e = device.createCommandEncoder(); e.clearBuffer(flag); device.queue.submit([e.finish()]);
    await flag.mapAsync(GPUMapMode.READ); flag.unmap();
  };
  const big: Problem = { B: 4, Hq: 16, Hkv: 16, Sq: 4096, Skv: 4096, D: 64, Dv: 64, QB: 128, KB: 128 };
  const bigQ = randomF16(big.B * big.Hq * big.Sq * big.D), bigK = randomF16(big.B * big.Hq * big.Sq * big.D), bigV = randomF16(big.B * big.Hq * big.Sq * big.D);
  const tNoop = buildTables(NOOP.maskJs, big.Sq, big.Skv, 128, 128);
  const tCausal = buildTables(CAUSAL.maskJs, big.Sq, big.Skv, 128, 128);
  for (const partial of configs) {
    const c = { ...base, ...partial } as FlexTensorConfig;
    const tag = JSON.stringify(partial);
    const smem = flexTensorSmemBytes(c);
    if (smem > L.maxComputeWorkgroupStorageSize) { console.log(`${tag}: skip, smem ${smem}`); continue; }
    try {
      const t0 = performance.now();
      const pNoop = await compile(device, flexForwardTensorWgsl(c, hooksOf(NOOP)));
      const pCausal = await compile(device, flexForwardTensorWgsl(c, hooksOf(CAUSAL)));
      console.log(`${tag}: threads ${flexTensorThreads(c)} smem ${smem} compiled in ${(performance.now() - t0).toFixed(0)} ms`);
      if (env("FLEX_PROBE_SKIP_CHECK") !== "1") {
        const small: Problem = { B: 1, Hq: 2, Hkv: 2, Sq: 512, Skv: 512, D: 64, Dv: 64, QB: 128, KB: 128 };
        const ragged: Problem = { ...small, Sq: 300, Skv: 237 };
        for (const [name, pipe, mods, pr] of [["noop", pNoop, NOOP, small], ["causal", pCausal, CAUSAL, small], ["causal ragged 300x237", pCausal, CAUSAL, ragged]] as const) {
          const r = await checkOnce(device, pipe, c, pr, mods);
          console.log(`  check ${name} B1 H2 S${pr.Sq} D64: out rel.L2 ${r.errOut.toExponential(2)}, lse max abs ${r.errLse.toExponential(2)}`);
        }
      }
      for (const [name, pipe, t, mods] of [["noop", pNoop, tNoop, NOOP], ["causal", pCausal, tCausal, CAUSAL]] as const) {
        const launch = prepare(device, pipe, c, big, t, bigQ, bigK, bigV, await secondWalkPipeline(device, c, mods));
        const reps = 10;
        // ≥ 200 ms of back-to-back launches first: the H200 idles at 345 MHz within a second (e.g. during a compile)
        const w0 = performance.now();
        while (performance.now() - w0 < 200) { launch.run(5); await sync(); }
        let best = Infinity;
        for (let r = 0; r < 5; r++) {
          if (feats.includes("timestamp-query" as GPUFeatureName)) { best = Math.min(best, await launch.gpuMs(reps)); continue; }
          const t1 = performance.now(); launch.run(reps); await sync(); best = Math.min(best, (performance.now() - t1) / reps);
        }
        const flops = 4 * big.B * big.Hq * big.Sq * big.Skv * big.D * t.density;
        console.log(`  ${name} B4 H16 S4096 D64: ${best.toFixed(3)} ms  ${(flops / best / 1e9).toFixed(1)} TF/s (density ${t.density.toFixed(3)})`);
        launch.destroy();
      }
    } catch (e) {
      console.log(`${tag}: FAILED ${(e as Error).message.slice(0, 1500)}`);
    }
  }
}

if (import.meta.main) {
  await main();
  if (g.Deno) g.Deno.exit(0); else g.process.exit(0);
}
