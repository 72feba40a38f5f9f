/**
 * One fuzz case: a ModSpec × a ShapeSpec (tests/fuzz/generators.ts) through the PUBLIC API (createBlockMask,
 * flexAttention, vjp, randn, tensor, realizeAll) on the selected GPU provider, against the float64 oracle —
 * the CPU executor (createCpuExecutor().realize via runPromise) on the very same lazy tensors.
 *
 * What must agree:
 *   - the BlockMask: createBlockMask's block states (a GPU kernel) == maskBlockStatesCpu on the same captures;
 *   - the forward: out (rel. L2 ≤ 1e-4 f32, ≤ 5e-4 f16) and lse (≤ 1e-4); NaN never passes; infinities only
 *     where the oracle has the same one (lse = −∞ of a fully masked row, whose out must be exactly 0);
 *   - the backward (mod.grad): dq, dk, dv and the gradients of learnable captures (rel. L2 ≤ 1e-3), with a
 *     floor under the reference norm so that an (almost) exactly zero gradient compares absolutely (see GRAD_FLOOR);
 *   - errors: when the oracle fails with CaptureOutOfRange, the GPU must fail with CaptureOutOfRange too (a typed
 *     error, not a wrong number); any other failure on either side is a finding. The one asymmetry allowed: the
 *     GPU evaluates the score mod on every entry of a visited block, the oracle only on attended entries, so a
 *     score mod whose read MAY go out of range (a raw or forced index) may fail on the GPU alone.
 *
 * `runCase` never throws for a finding: it returns a readable failure (mod source, shapes, which quantity,
 * the error and the worst element, expected vs got).
 */
import {
  type BlockMask, CaptureOutOfRange, createBlockMask, flexAttention, randn, realizeAll, setPoison, type Tensor, tensor, vjp,
} from "../../mod.ts";
import { createCpuExecutor } from "../../lib/runtime/cpu/executor.ts";
import { runPromise } from "../../lib/runtime/run.ts";
import { maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { blockSizePair } from "../../lib/blockmask/validate.ts";
import { traceMaskMod, traceScoreMod } from "../../lib/mods/trace.ts";
import { KINK_EPS, minKinkMargin } from "./kinks.ts";
import {
  capturesOf, describeMod, describeShape, factsOf, maskModOf, type ModFacts, type ModSpec, scoreModOf, type ShapeSpec,
} from "./generators.ts";

/**
 * outF16 1e-3: the tensor family (like PyTorch's and FlashAttention's f16 kernels) rounds P to f16 for P·V, and
 * with few keys per row that rounding is not averaged away: on the H200 a random mask with a handful of keys per
 * row gave 5.4e-4 (FUZZ_SEED=91007, case 732), over the gallery's 5e-4 bar (2× PyTorch's error on noop S = 512,
 * where 512 keys average it out; that bar stays in tests/kernels/flex_tensor_family.test.ts). A bug is O(1).
 */
export const TOL = { outF32: 1e-4, outF16: 1e-3, lse: 1e-4, grad: 1e-3 } as const;

/**
 * Reference-norm floors (per element, RMS) for gradients. A gradient can be exactly zero in exact arithmetic
 * (one attended key per row: softmax is constant; a captured table read at h only: Σ ds over a row is 0), where the
 * oracle gives ~1e-17 and f32 ~1e-7 and a pure relative error is meaningless. dq/dk/dv: 1e-2 RMS (typical
 * non-degenerate values are 0.1 … 10; 3e-3 was too tight: the H200 run with seed 777 met dk = 1.6e-5 at Skv = 1,
 * D = 64, Dv = 128, where dk is exactly 0 and the f32 kernels' dp − Δ cancels to rounding noise). Captured tables: each entry sums up to B·Hq·Sq·Skv terms, so the floor is
 * 1e-2 · B·Hq·Sq in L2. A real bug (an O(1) relative error) still fails by orders of magnitude.
 */
export const GRAD_FLOOR = { qkv: 1e-2, capPerRow: 1e-2 } as const;

/**
 * The floor of dq (i = 0) or dk / dv (1, 2) in L2: GRAD_FLOOR.qkv RMS, grown with the f32 rounding noise of an
 * exactly-zero gradient — each entry sums `terms` products of ds, whose dp − Δ cancels over Dv products: noise
 * ∝ √(terms · Dv), normalized so that 64 terms × Dv 64 keeps the plain floor. The H200 met dk exactly 0 (Skv = 1)
 * with Sq 294, Dv 128: 1.55e-3 of the plain floor (FUZZ_SEED=91003, case 802). A real bug still fails: the floor
 * stays ≤ 0.1 RMS, below the 0.1 … 10 of non-degenerate gradients, and a bug's error is O(1) of those.
 */
export function gradFloorQkv(i: number, len: number, s: { Sq: number; Skv: number; ratio: number; Dv: number }): number {
  const terms = i === 0 ? s.Skv : s.Sq * s.ratio;
  return GRAD_FLOOR.qkv * Math.sqrt(len) * Math.max(1, Math.sqrt(terms * s.Dv) / 64);
}

const cpu = createCpuExecutor();
const cpuRealize = (ts: readonly Tensor[]) => runPromise(cpu.realize(ts));

/** nearKink: a comparison failed but some score lies within rounding of a kink of the score mod (tests/fuzz/kinks.ts). */
export type Outcome = "match" | "bothOutOfRange" | "gpuOnlyOutOfRange" | "nearKink";

export interface CaseResult {
  readonly failure?: string;
  readonly outcome?: Outcome;
  /** The backward ran (and agreed, when no failure). */
  readonly backward: boolean;
  /** Milliseconds per stage (mask, oracle/GPU forward, oracle/GPU backward). */
  readonly ms?: Record<string, number>;
}

let ms: Record<string, number> = {};
async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const t = performance.now();
  try { return await f(); } finally { ms[name] = Math.round(performance.now() - t); }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

async function settle<T>(f: () => Promise<T> | T): Promise<Settled<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (error) {
    return { ok: false, error };
  }
}

const tagOf = (e: unknown): string | undefined => (e as { _tag?: string } | null)?._tag;
function errText(e: unknown): string {
  const tag = tagOf(e);
  const msg = e instanceof Error ? e.message : String(e);
  return `${tag ?? (e instanceof Error ? e.name : "thrown")}: ${msg.split("\n")[0].slice(0, 300)}`;
}
const isOob = (e: unknown) => e instanceof CaptureOutOfRange || tagOf(e) === "CaptureOutOfRange";

/** Relative L2 with exact NaN / infinity rules and a floor under ‖want‖; null when within `tol`. */
export function compareArrays(
  name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, floor = 0,
): string | null {
  if (got.length !== want.length) return `${name}: length ${got.length}, expected ${want.length}`;
  let num = 0, den = 0, worst = -1, worstD = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (Number.isNaN(g) || Number.isNaN(w)) return `${name}[${i}]: got ${g}, expected ${w} (NaN never passes)`;
    if (!Number.isFinite(g) || !Number.isFinite(w)) {
      if (g !== w) return `${name}[${i}]: got ${g}, expected ${w} (infinities must match exactly)`;
      continue;
    }
    const d = Math.abs(g - w);
    num += d * d; den += w * w;
    if (d > worstD) { worstD = d; worst = i; }
  }
  const ref = Math.max(Math.sqrt(den), floor);
  const err = ref === 0 ? Math.sqrt(num) : Math.sqrt(num) / ref;
  if (err <= tol) return null;
  return `${name}: rel. L2 ${err.toExponential(3)} > ${tol} (‖ref‖ ${Math.sqrt(den).toExponential(3)}, floor ${floor}); ` +
    `worst [${worst}]: got ${got[worst]}, expected ${want[worst]} (of ${want.length})`;
}

/** Human-readable failure: the mod, the shape, then the finding. */
function fail(mod: ModSpec, shape: ShapeSpec, stage: string, what: string): CaseResult {
  return { failure: `${stage}: ${what}\n${describeMod(mod)}\n${describeShape(shape)}`, backward: stage.startsWith("backward") };
}

function statesMismatch(got: ArrayLike<number>, want: ArrayLike<number>, dims: number[]): string | null {
  if (got.length !== want.length) return `${got.length} block states, expected ${want.length}`;
  const [, H, nQ, nKV] = dims;
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      const kb = i % nKV, qb = Math.floor(i / nKV) % nQ, h = Math.floor(i / (nKV * nQ)) % H, b = Math.floor(i / (nKV * nQ * H));
      return `block (b ${b}, h ${h}, q-block ${qb}, kv-block ${kb}): state ${got[i]}, expected ${want[i]} (0 empty, 1 partial, 2 full)`;
    }
  }
  return null;
}

/** Compares realized results or the errors they failed with; returns a failure text or the outcome. */
function judge(
  gpu: Settled<unknown>, ref: Settled<unknown>, mayOobGpuOnly: boolean,
): { failure: string } | { outcome: Outcome } | { compare: true } {
  if (!ref.ok) {
    if (!isOob(ref.error)) return { failure: `the oracle failed: ${errText(ref.error)}${gpu.ok ? "" : `; the GPU: ${errText(gpu.error)}`}` };
    if (gpu.ok) return { failure: `the oracle raised CaptureOutOfRange but the GPU returned numbers (${errText(ref.error)})` };
    if (!isOob(gpu.error)) return { failure: `the oracle raised CaptureOutOfRange, the GPU ${errText(gpu.error)}` };
    return { outcome: "bothOutOfRange" };
  }
  if (!gpu.ok) {
    if (isOob(gpu.error) && mayOobGpuOnly) return { outcome: "gpuOnlyOutOfRange" };
    return { failure: `the GPU failed where the oracle did not: ${errText(gpu.error)}` };
  }
  return { compare: true };
}

export interface RunOptions {
  /** Run the backward when the mod asks for it (default true). */
  readonly backward?: boolean;
}

/** Runs one case on the default (GPU) runtime and on the CPU oracle. */
export async function runCase(mod: ModSpec, shape: ShapeSpec, opts: RunOptions = {}): Promise<CaseResult> {
  setPoison(true); // every GPU output starts as NaN: an unwritten element fails
  ms = {};
  const r = await runCaseInner(mod, shape, opts);
  return { ...r, ms };
}

async function runCaseInner(mod: ModSpec, shape: ShapeSpec, opts: RunOptions): Promise<CaseResult> {
  const facts: ModFacts = factsOf(mod);
  const { B, Hkv, Sq, Skv } = shape;
  const Hq = Hkv * shape.ratio;
  const caps = capturesOf(mod, shape.seed);
  const { D, Dv, dtype } = mod;

  // ---- BlockMask: GPU-built vs CPU-built states
  let blockMask: BlockMask | undefined;
  const maskMod = maskModOf(mod, caps);
  if (maskMod) {
    const mB = shape.maskB ? B : null, mH = shape.maskH ? Hq : null;
    const gpuMask = await timed("mask", () => settle(() => createBlockMask(maskMod, mB, mH, Sq, Skv, { blockSize: mod.blockSize })));
    const pair = blockSizePair(mod.blockSize, "fuzz");
    const cpuStates = await settle(() => {
      const traced = traceMaskMod(maskMod);
      return maskBlockStatesCpu(
        { mask: traced, B: mB ?? 1, H: mH ?? 1, qLen: Sq, kvLen: Skv, blockSize: pair },
        traced.captures.map((c) => (c as Tensor).data!),
      );
    });
    const j = judge(gpuMask, cpuStates, false); // both trace the mask: a constant out-of-range index fails both alike
    if ("failure" in j) return fail(mod, shape, "createBlockMask", j.failure);
    if ("outcome" in j) return { outcome: j.outcome, backward: false };
    blockMask = (gpuMask as { value: BlockMask }).value;
    const bad = statesMismatch(blockMask.toStates(), (cpuStates as { value: Int32Array }).value, [...blockMask.shape]);
    if (bad) return fail(mod, shape, "createBlockMask", `GPU block states differ from the CPU's: ${bad}`);
  }

  // ---- forward
  const seed = shape.seed;
  const q = randn([B, Hq, Sq, D], { dtype, seed: seed + 1 });
  const k = randn([B, Hkv, Skv, D], { dtype, seed: seed + 2 });
  const v = randn([B, Hkv, Skv, Dv], { dtype, seed: seed + 3 });
  const enableGqa = Hq !== Hkv || seed % 2 === 0;
  const scale = mod.scale ?? undefined;
  const built = await settle(() =>
    flexAttention(q, k, v, { scoreMod: scoreModOf(mod, caps), blockMask, enableGqa, scale, returnLse: true })
  );
  if (!built.ok) {
    // a constant out-of-range index is refused while tracing, before any executor: the same typed error everywhere
    if (facts.constOob && isOob(built.error)) return { outcome: "bothOutOfRange", backward: false };
    return fail(mod, shape, "forward", `flexAttention threw at construction: ${errText(built.error)}`);
  }
  const { out, lse } = built.value;
  // only consulted after a comparison failed: is some score within rounding of a kink of the score mod?
  const nearKink = async () => {
    const traced = traceScoreMod(scoreModOf(mod, caps));
    const [qd, kd] = await cpuRealize([q, k]);
    const margin = minKinkMargin(traced.expr, {
      B, Hq, Hkv, Sq, Skv, D, q: qd, k: kd, scale: scale ?? 1 / Math.sqrt(D),
      captures: traced.captures.map((c) => (c as Tensor).data!),
    });
    return margin < KINK_EPS;
  };
  const ref = await timed("cpuFwd", () => settle(() => cpuRealize([out, lse])));
  const gpu = await timed("gpuFwd", () => settle(() => realizeAll([out, lse])));
  const j = judge(gpu, ref, facts.scoreMayOob);
  if ("failure" in j) return fail(mod, shape, "forward", j.failure);
  let outcome: Outcome = "match";
  if ("outcome" in j) {
    outcome = j.outcome;
  } else {
    const [go, gl] = (gpu as { value: ArrayLike<number>[] }).value;
    const [ro, rl] = (ref as { value: ArrayLike<number>[] }).value;
    const bad = compareArrays("out", go, ro, dtype === "f16" ? TOL.outF16 : TOL.outF32) ?? compareArrays("lse", gl, rl, TOL.lse);
    if (bad) return await nearKink() ? { outcome: "nearKink", backward: false } : fail(mod, shape, "forward", bad);
    for (let r = 0; r < rl.length; r++) {
      if (rl[r] !== -Infinity) continue;
      for (let d = 0; d < Dv; d++) {
        if (go[r * Dv + d] !== 0) return fail(mod, shape, "forward", `fully masked row ${r}: out[${d}] = ${go[r * Dv + d]}, expected 0`);
      }
    }
  }
  if (!mod.grad || opts.backward === false) return { outcome, backward: false };

  // ---- backward (vjp): dq, dk, dv and learnable f32 captures read by the score mod
  const learnSlots = mod.learn ? [...facts.scoreReads].filter((s) => mod.caps[s].dtype === "f32").sort() : [];
  const params = learnSlots.map((s) => caps[s]);
  const withParams = (ps: Tensor[]) => caps.map((c, s) => (learnSlots.includes(s) ? ps[learnSlots.indexOf(s)] : c));
  const dOut = randn([B, Hq, Sq, Dv], { dtype, seed: seed + 4 });
  const rnd = (() => { let a = (seed + 5) >>> 0; return () => ((a = (Math.imul(a, 1664525) + 1013904223) >>> 0) / 2 ** 32); })();
  const dLse = tensor(Float32Array.from({ length: B * Hq * Sq }, () => 2 * rnd() - 1), [B, Hq, Sq]);
  const grads = await settle(() => {
    const opt = (ps: Tensor[]) => ({ scoreMod: scoreModOf(mod, withParams(ps)), blockMask, enableGqa, scale });
    if (mod.withLse) {
      const [, back] = vjp((q, k, v, ...ps) => flexAttention(q, k, v, { ...opt(ps), returnLse: true }), q, k, v, ...params);
      return back({ out: dOut, lse: dLse });
    }
    const [, back] = vjp((q, k, v, ...ps) => flexAttention(q, k, v, opt(ps)), q, k, v, ...params);
    return back(dOut);
  });
  if (!grads.ok) return fail(mod, shape, "backward", `vjp threw at construction: ${errText(grads.error)}`);
  const gref = await timed("cpuBwd", () => settle(() => cpuRealize(grads.value)));
  const ggpu = await timed("gpuBwd", () => settle(() => realizeAll(grads.value)));
  const jb = judge(ggpu, gref, facts.scoreMayOob);
  if ("failure" in jb) return fail(mod, shape, "backward", jb.failure);
  if ("outcome" in jb) return { outcome: jb.outcome, backward: true };
  const gg = (ggpu as { value: ArrayLike<number>[] }).value, gr = (gref as { value: ArrayLike<number>[] }).value;
  const names = ["dq", "dk", "dv", ...learnSlots.map((s) => `dc${s}`)];
  for (let i = 0; i < names.length; i++) {
    const floor = i < 3 ? gradFloorQkv(i, gr[i].length, { Sq, Skv, ratio: shape.ratio, Dv }) : GRAD_FLOOR.capPerRow * B * Hq * Sq;
    const bad = compareArrays(names[i], gg[i], gr[i], TOL.grad, floor);
    if (bad) return await nearKink() ? { outcome: "nearKink", backward: true } : fail(mod, shape, "backward", bad);
  }
  return { outcome, backward: true };
}
