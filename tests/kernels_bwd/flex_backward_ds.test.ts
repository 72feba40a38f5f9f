/**
 * The backward's dS' path (lib/lower/plan_flex_grad_ds.ts, the default where it applies; forced on here with
 * setFlexBwdProbe({ dqFromDs: true }) except in the case that checks the default): the dK/dV kernel stores dS' per
 * chunk of kv heads (vec4 or scalar stores), dQ = scale·dS'·K reads it. Checked against the float64 oracle
 * (flexReferenceBwd) on fresh random inputs, outputs poisoned, rel. L2 ≤ 1e-3, and bit-identical across two
 * realizes of fresh nodes on the same inputs; `explain` shows which dQ kernel ran. A learnable f32 capture (alibi
 * slopes, a relative-position table; a full bias matrix where its slices fit: tests/kernels_bwd/capture_grad_determinism)
 * takes the dS' path too: the dK/dV kernel sums its gradient
 * into per-workgroup slices and a fixed-order reduce adds them (no atomics); dq / dk / dv then equal the fused
 * path's bit for bit and the capture's gradient its within float rounding.
 */
import { describe, expect, it, relL2 } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { nativeHalf } from "../native_slice.ts";
import {
  alibi, causalMask, createBlockMask, explain, flexAttention, type MaskMod, randn, realizeAll, type ScoreMod, setPoison, softcap,
  type Tensor, tensor, vjp,
} from "../../mod.ts";
import type { FlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../../lib/runtime/cpu/flex_reference_bwd.ts";
import { getExecutor } from "../../lib/runtime/mod.ts";
import { flexBackwardSource, setFlexBwdProbe } from "../../lib/lower/plan_flex_grad.ts";
import { readEnv } from "../../lib/runtime/env.ts";
import { dsRowStride, type FlexBwdConfig } from "../../kernels/flex_backward.ts";
import { DS_SCRATCH_MAX_BYTES, dsScratchBytes } from "../../lib/lower/plan_flex_grad_ds.ts";
import { InvalidArgument } from "../../lib/errors.ts";
import { chooseFlexBwdConfig } from "../../lib/lower/flex_bwd_config.ts";
import { DEFAULT_CAPABILITIES } from "../../lib/lower/capabilities.ts";
import { type DqFromDsConfig, dqFromDsKey } from "../../kernels/flex_bwd_dq_from_ds.ts";

const noGpu = await gpuSkipReason();
const TOL = 1e-3;
const SLOW = 900_000;

interface DsCase {
  B?: number;
  Hq?: number;
  Hkv?: number;
  S: number;
  /** Keys (cross attention); default S. */
  Skv?: number;
  D?: number;
  maskMod?: MaskMod;
  blockSize?: number;
  /** A learnable f32 capture (a vjp primal) and the score mod reading it. */
  param?: (Hq: number) => Tensor;
  scoreMod?: (p: Tensor | undefined) => ScoreMod;
  /** Attention dropout (the dK/dV kernel's dS' carries its mask). */
  dropout?: { p: number; seed: number };
  /** A cotangent on lse too (the path sinks' gradient takes: Δ − dLse in the preprocess). */
  withLse?: boolean;
  /** Pinned tiling of the dS' dQ kernel: other tilings than the heuristic's. */
  dqPin?: DqFromDsConfig;
  /** Scratch bound forcing several chunks. */
  chunkBytes?: number;
  /** Leave the knob unset: the default path (the dS' one where it applies, unless FLEX_BWD_DQ_FROM_DS=0). */
  byDefault?: boolean;
  /** The dK/dV kernel stores dS' as scalars (setFlexBwdProbe dsScalarStore). */
  scalarStore?: boolean;
  /** The dQ kernel expected: the dS' one, or the fused one (fallback). */
  expect: "ds" | "fused";
  /** The mask differs per (batch, head): createBlockMask(maskMod, B, Hq, ...) (per-head slot bases of the compact scratch). */
  maskPerHead?: boolean;
  /** The dS' scratch layout expected (compact: only the visited blocks; dense where that is no smaller). */
  layout?: "compact" | "dense";
  /** Chunks expected where the compact scratch's differ from the dense formula's. */
  chunks?: number;
  /** The compact scratch even where the default would take the dense one (setFlexBwdProbe dsCompact). */
  compact?: boolean;
  /** The dK/dV tiling expected where the device has ≥ 48 KiB of workgroup memory (lib/lower/flex_bwd_config.ts DKDV_MEASURED). */
  dkdvOn48k?: string;
  /** Pinned dK/dV tiling (setFlexBwdProbe dkdv): e.g. the one-tile-array variant (FlexBwdConfig.oneTile). */
  dkdvPin?: FlexBwdConfig;
  /** Merge rounds of the dK/dV kernel's capture gradients: once per group head (index free of q) or per column too. */
  capRounds?: "per head" | "per column";
}

const dataOf = (t: unknown) => (t as Tensor).data!;

async function run(c: DsCase): Promise<void> {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, S = c.S, Skv = c.Skv ?? S, D = c.D ?? 32;
  const q = randn([B, Hq, S, D]), k = randn([B, Hkv, Skv, D]), v = randn([B, Hkv, Skv, D]), dOut = randn([B, Hq, S, D]);
  const dLse = randn([B, Hq, S]);
  const param = c.param?.(Hq);
  const blockMask = c.maskMod ? await createBlockMask(c.maskMod, c.maskPerHead ? B : 1, c.maskPerHead ? Hq : 1, S, Skv, { blockSize: c.blockSize }) : undefined;
  const build = () => {
    const primals: Tensor[] = param ? [q, k, v, param] : [q, k, v];
    const opts = (xs: Tensor[]) => ({ blockMask, enableGqa: Hq !== Hkv, scoreMod: c.scoreMod?.(xs[3]), dropout: c.dropout });
    if (c.withLse) {
      const [y, back] = vjp((...xs: Tensor[]) => flexAttention(xs[0], xs[1], xs[2], { ...opts(xs), returnLse: true }), ...primals);
      return { call: y.out.arg as FlexCall, grads: back({ out: dOut, lse: dLse }) };
    }
    const [y, back] = vjp((...xs: Tensor[]) => flexAttention(xs[0], xs[1], xs[2], opts(xs)), ...primals);
    return { call: (y as Tensor).arg as FlexCall, grads: back(dOut) };
  };
  const off = readEnv("FLEX_BWD_DQ_FROM_DS") === "0";
  setFlexBwdProbe({ ...(c.byDefault ? {} : { dqFromDs: true }), dsChunkBytes: c.chunkBytes, dqDs: c.dqPin, dsScalarStore: c.scalarStore, dsCompact: c.compact, dkdv: c.dkdvPin });
  try {
    const ex = await getExecutor();
    const first = build();
    const kernels = explain(first.grads, ex.caps).kernels;
    const dsLaunches = kernels.filter((l) => l.startsWith("flex_bwd_dq_ds")).length;
    // FLEX_BWD_DQ_FROM_DS=0 turns the default to the fused dQ kernel
    if (c.expect === "ds" && !(c.byDefault && off)) {
      const chunks = c.chunks ?? (c.chunkBytes ? Math.ceil((B * Hkv) / Math.floor(c.chunkBytes / ((Hq / Hkv) * S * dsRowStride(Skv) * 4))) : 1);
      expect(dsLaunches).toBe(chunks);
      if (c.layout) expect(kernels.filter((l) => l.startsWith("flex_bwd_dq_ds") && l.includes(` ${c.layout} heads `)).length).toBe(chunks);
      // how dS' is stored: vec4s where the dK/dV kernel has 4 kv rows a thread (TA 4) and KB % 4 = 0
      const store = kernels.find((l) => l.startsWith("flex_bwd_dkdv_ds"))!.match(/ ds (vec4|scalar) /)?.[1];
      if (c.scalarStore) expect(store).toBe("scalar");
      else if (/ TA4 /.test(kernels.find((l) => l.startsWith("flex_bwd_dkdv_ds"))!)) expect(store).toBe("vec4");
      expect(kernels.some((l) => l.startsWith("flex_bwd_dq "))).toBe(false);
      const dkdvLabel = kernels.find((l) => l.startsWith("flex_bwd_dkdv_ds"))!;
      if (c.dkdvOn48k && ex.caps.limits.maxComputeWorkgroupStorageSize >= 48 * 1024) expect(dkdvLabel.includes(` ${c.dkdvOn48k} `)).toBe(true);
      if (c.dqPin) expect(kernels.some((l) => l.startsWith(`flex_bwd_dq_ds ${dqFromDsKey(c.dqPin!)} `))).toBe(true);
      // a learnable capture: its gradient from the dK/dV kernel's slices, one reduce after the chunks, no atomics
      expect(kernels.filter((l) => l === "flex_bwd_reduce_captures").length).toBe(param ? 1 : 0);
      if (param) {
        const src = flexBackwardSource(first.call, "dkdv", ex.caps, { writeDs: true, dsHeadsFastest: true });
        expect(src.capGrad.mode).toBe("partials");
        expect(src.code.includes("atomicCompareExchangeWeak")).toBe(false);
        const rounds = src.code.split("cg_round(tid, cg_slice);").length - 1;
        expect({ perHead: rounds === 1 }).toEqual({ perHead: c.capRounds === "per head" });
      }
    } else {
      expect(dsLaunches).toBe(0);
      expect(kernels.some((l) => l.startsWith("flex_bwd_dq "))).toBe(true);
    }
    setPoison(true);
    const gpu = (await realizeAll(first.grads)) as Float32Array[];
    const ref = flexReferenceBwd(first.call, {
      q: dataOf(q), k: dataOf(k), v: dataOf(v),
      scoreCaptures: first.call.scoreMod.captures.map(dataOf), maskCaptures: first.call.blockMask.tracedMask.captures.map(dataOf),
      dOut: dataOf(dOut), dLse: c.withLse ? dataOf(dLse) : null,
    });
    const refs = [ref.dq, ref.dk, ref.dv, ...(param ? [ref.dScoreCaptures[first.call.scoreMod.captures.indexOf(param)]!] : [])];
    refs.forEach((r, i) => {
      const e = relL2(gpu[i], r);
      if (!(e <= TOL)) throw new Error(`gradient ${i}: rel. L2 ${e} > ${TOL}`);
    });
    // fresh nodes, same inputs: the same bits
    const again = (await realizeAll(build().grads)) as Float32Array[];
    gpu.forEach((g, i) => {
      const a = new Uint32Array(g.buffer, g.byteOffset, g.length), b = new Uint32Array(again[i].buffer, again[i].byteOffset, again[i].length);
      const bad = a.findIndex((x, j) => x !== b[j]);
      if (bad >= 0) throw new Error(`gradient ${i} differs between two realizes at element ${bad}`);
    });
    if (param && c.expect === "ds") {
      // the fused path (its dQ kernel sums the capture gradient): dq, dk, dv bit-equal, the capture's close
      setFlexBwdProbe({ dqFromDs: false, dkdv: c.dkdvPin });
      const fused = build();
      expect(explain(fused.grads, ex.caps).kernels.some((l) => l.startsWith("flex_bwd_dq "))).toBe(true);
      const f = (await realizeAll(fused.grads)) as Float32Array[];
      for (let i = 0; i < 3; i++) {
        const a = new Uint32Array(gpu[i].buffer, gpu[i].byteOffset, gpu[i].length), b = new Uint32Array(f[i].buffer, f[i].byteOffset, f[i].length);
        const bad = a.findIndex((x, j) => x !== b[j]);
        if (bad >= 0) throw new Error(`gradient ${i} differs from the fused path's at element ${bad}`);
      }
      const e = relL2(gpu[3], f[3]);
      if (!(e <= 1e-5)) throw new Error(`the capture's gradient: rel. L2 ${e} to the fused path's > 1e-5`);
    }
  } finally {
    setFlexBwdProbe({});
  }
}

const CASES: [string, DsCase][] = [
  ["noop mask, B=2, cross attention Sq=128, Skv=80, the default path (a dense scratch: Skv = 80 fills 80 of a block's 128 columns)", {
    B: 2, S: 128, Skv: 80, byDefault: true, expect: "ds", layout: "dense",
  }],
  ["GQA (Hq 4, Hkv 2), causal, ragged S=100, softcap, an lse cotangent; dQ tiles of 24 rows, 4 × 4 per thread, 16 kv", {
    Hq: 4, Hkv: 2, S: 100, maskMod: causalMask, blockSize: 32, scoreMod: () => softcap(2), withLse: true, expect: "ds",
    dqPin: { D: 32, BA: 24, TA: 4, TD: 4, BB: 16 },
  }],
  ["chunked: B=2, H=2, one kv head per chunk (4 chunks), causal S=96, dropout 0.2; kv tiles of 64 over blocks of 32, 8 × 4; scalar dS' stores, compact scratch", {
    B: 2, S: 96, maskMod: causalMask, blockSize: 32, chunkBytes: 96 * 96 * 4, dropout: { p: 0.2, seed: 5 }, expect: "ds",
    dqPin: { D: 32, BA: 32, TA: 8, TD: 4, BB: 64 }, scalarStore: true, compact: true, layout: "compact",
  }],
  ["a mask per (batch, head): B=2, GQA (Hq 4, Hkv 2), windows of 8·(h + 1) + 4·b (causal), S=128, blocks of 16; compact scratch in 3 uneven chunks", {
    B: 2, Hq: 4, Hkv: 2, S: 128, blockSize: 16, maskPerHead: true, layout: "compact", chunks: 3, expect: "ds",
    // kv heads (b, hk) hold 30, 42, 36, 47 slots of 1 KiB: a bound of 80 000 B takes kv heads {0, 1}, {2}, {3}
    maskMod: (b, h, q, kv) => q.ge(kv).and(q.sub(kv).le(h.mul(8).add(8).add(b.mul(4)))),
    chunkBytes: 80_000,
  }],
  ["D=64, S=256, noop: even kv lists (BA128 TA4 G8 BB64, one tile array, dK/dV where it fits)", { S: 256, D: 64, expect: "ds", byDefault: true, dkdvOn48k: "BA128 TA4 G8 BB64" }],
  // blocks of 64: the kv blocks' q lists run 4, 3, 2, 1 (longest > 1.5 × the mean; with 128-blocks, 2 and 1 are not)
  ["D=64, S=256, causal, blocks of 64: uneven kv lists (BA64 TA4 G16 BB64, shared staging, where it fits: BB 128 needs q blocks of 128)", {
    S: 256, D: 64, maskMod: causalMask, blockSize: 64, expect: "ds", byDefault: true, dkdvOn48k: "BA64 TA4 G16 BB64",
  }],
  ["learnable alibi slopes, causal, GQA (Hq 4, Hkv 2), 2 chunks: the dK/dV kernel sums their gradient (one round per group head)", {
    Hq: 4, Hkv: 2, S: 64, maskMod: causalMask, blockSize: 32, chunkBytes: 2 * 64 * 64 * 4, capRounds: "per head",
    param: (Hq) => tensor(Float32Array.from({ length: Hq }, () => 0.05 + 0.45 * Math.random()), [Hq]),
    scoreMod: (p) => alibi(p!), expect: "ds",
  }],
  ["one tile array in the dK/dV kernel (oneTile: P, then dS' over it), 32 × 128 tiles, causal S=128 blocks of 128, alibi slopes", {
    S: 128, D: 64, maskMod: causalMask, blockSize: 128, capRounds: "per head",
    dkdvPin: { family: "portable", D: 64, Dv: 64, BA: 32, TA: 4, G: 16, BB: 128, DK: 8, NV: 16, oneTile: true, shareStage: true, loops: true },
    param: (Hq) => tensor(Float32Array.from({ length: Hq }, () => 0.05 + 0.45 * Math.random()), [Hq]),
    scoreMod: (p) => alibi(p!), expect: "ds",
  }],
  ["a relative-position bias table [2S − 1], causal, B=2, S=80: per-column merge rounds in the dK/dV kernel", {
    B: 2, S: 80, maskMod: causalMask, blockSize: 32, capRounds: "per column",
    param: () => randn([2 * 80 - 1]),
    scoreMod: (p) => (s, _b, _h, q, kv) => s.add(p!.at(q.sub(kv).add(80 - 1))), expect: "ds",
  }],
];

describe("flex backward, dQ from the stored dS' vs the float64 oracle", () => {
  // the deno/native pass: every other case (tests/native_slice.ts)
  const gpuCase = nativeHalf(noGpu);
  for (const [name, c] of CASES) gpuCase(name, () => run(c), SLOW);
});

describe("the measured dK/dV shapes at D 64 (lib/lower/flex_bwd_config.ts), on a device with 48 KiB of workgroup memory", () => {
  const caps = { ...DEFAULT_CAPABILITIES, software: false, limits: { ...DEFAULT_CAPABILITIES.limits, maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256 } };
  const pick = (streamBlock: number, unevenOwners: boolean, capReads = 0) => {
    const c = chooseFlexBwdConfig("dkdv", { D: 64, Dv: 64, ownerBlock: 128, streamBlock, unevenOwners, capReads, capRowRounds: capReads > 0 }, caps);
    return `BA${c.BA} G${c.G} BB${c.BB} NV${c.NV}${c.oneTile ? " one" : ""}${c.shareStage ? " shared" : ""}`;
  };
  it("one tile array and twice BB where the q blocks admit it (also with alibi's capture merge), else session 7's shapes", () => {
    expect(pick(128, false)).toBe("BA128 G8 BB64 NV16 one shared");
    expect(pick(128, true)).toBe("BA64 G16 BB128 NV32 one shared");
    expect(pick(128, true, 1)).toBe("BA64 G16 BB128 NV32 one shared");
    expect(pick(64, true)).toBe("BA64 G16 BB64 NV32 shared");
    expect(pick(32, false)).toBe("BA128 G8 BB32 NV16");
  });
});

function setEnv(name: string, value: string | undefined): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g.Deno?.env) value === undefined ? g.Deno.env.delete(name) : g.Deno.env.set(name, value);
  else if (value === undefined) delete g.process.env[name];
  else g.process.env[name] = value;
}

describe("FLEX_BWD_DS_SCRATCH_MIB", () => {
  it("bounds the dS' scratch in MiB; unset is 512 MiB; a value that is not a positive number is an InvalidArgument naming it", () => {
    const before = readEnv("FLEX_BWD_DS_SCRATCH_MIB");
    try {
      setEnv("FLEX_BWD_DS_SCRATCH_MIB", undefined);
      expect(dsScratchBytes()).toBe(DS_SCRATCH_MAX_BYTES);
      setEnv("FLEX_BWD_DS_SCRATCH_MIB", "1.5");
      expect(dsScratchBytes()).toBe(1.5 * 2 ** 20);
      for (const bad of ["0", "-4", "lots"]) {
        setEnv("FLEX_BWD_DS_SCRATCH_MIB", bad);
        let err: unknown;
        try { dsScratchBytes(); } catch (e) { err = e; }
        expect(err instanceof InvalidArgument && err.message.includes("FLEX_BWD_DS_SCRATCH_MIB")).toBe(true);
      }
    } finally {
      setEnv("FLEX_BWD_DS_SCRATCH_MIB", before);
    }
  });
});

releaseGpuAfterAll();
