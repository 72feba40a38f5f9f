/**
 * Device probe of the tensor-family backward (kernels/flex_backward_tensor.ts) through the library (FLEX_WEBGPU=dawn):
 *   1. correctness of the intrinsics vs the float64 oracle on gallery cases (f16 inputs), for each operand-source
 *      variant: owner matrices staged + streamed from global (the default), owner from global, streamed staged
 *   2. timings at B4 H16 S4096 D64 noop / causal (f16): the backward before (portable through f32) and after
 *      (tensor family), bwd = profile(forward + backward) − profile(forward), beside the saved PyTorch numbers.
 * On the GPU machine: bash .gpu/on-device.sh deno run -A bench/tensor_bwd_probe.ts
 * Env: FLEX_PROBE_SKIP_CHECK=1, FLEX_PROBE_SKIP_TIME=1, FLEX_PROBE_SHAPES (JSON array of {BA, subgroups, BB} to time too).
 */
import { Effect } from "effect";
import { causalMask, createBlockMask, type FlexOptions, flexAttention, type MaskMod, realizeAll, type ScoreMod, setPoison, type Tensor, vjp } from "../mod.ts";
import { deviceInfo, getExecutor } from "../lib/runtime/mod.ts";
import { randn } from "../lib/tensor/tensor.ts";
import type { FlexCall } from "../lib/attention/flex_attention.ts";
import { flexReferenceBwd } from "../lib/runtime/cpu/flex_reference_bwd.ts";
import { explain } from "../lib/lower/explain.ts";
import { setBwdTensorOverride } from "../lib/lower/flex_bwd_tensor_config.ts";

const env = (k: string) => Deno.env.get(k);
const t0 = performance.now();
const at = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
const info = await deviceInfo();
const ex = await getExecutor();
console.log(`device: ${info.provider} ${info.adapter}; workgroup storage ${ex.caps.limits.maxComputeWorkgroupStorageSize} B; ` +
  `matrix configs ${JSON.stringify(ex.caps.subgroupMatrixConfigs)}`);

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let n = 0, d = 0;
  for (let i = 0; i < a.length; i++) { const e = Number(a[i]) - b[i]; n += e * e; d += b[i] * b[i]; }
  return Math.sqrt(n / Math.max(d, 1e-30));
};
const f16 = { dtype: "f16" as const };
const softcap: ScoreMod = (s) => s.div(20).tanh().mul(20);
const sliding: MaskMod = (_b, _h, q, kv) => q.ge(kv).and(q.sub(kv).le(128));

interface Case { name: string; Hq?: number; Hkv?: number; Sq: number; Skv?: number; D: number; mask?: MaskMod; score?: ScoreMod }
const CASES: Case[] = [
  { name: "noop S256 D64", Sq: 256, D: 64 },
  { name: "causal S512 D64", Sq: 512, D: 64, mask: causalMask },
  { name: "softcap + causal S256 D64", Sq: 256, D: 64, mask: causalMask, score: softcap },
  { name: "sliding window 128 S512 D64", Sq: 512, D: 64, mask: sliding },
  { name: "GQA 8:2 causal S256 D64", Hq: 8, Hkv: 2, Sq: 256, D: 64, mask: causalMask },
  { name: "causal S256 D128", Sq: 256, D: 128, mask: causalMask },
  { name: "noop S256 D32", Sq: 256, D: 32 },
  { name: "causal S256 D80", Sq: 256, D: 80, mask: causalMask },
  { name: "noop cross 256×384 D64", Sq: 256, Skv: 384, D: 64 },
  { name: "causal ragged 200 D64 (emulated on the device: not whole tiles)", Sq: 200, D: 64, mask: causalMask },
];
const VARIANTS = [
  { name: "owner staged, stream global (default)", src: null },
  { name: "owner global, stream global", src: { ownerDirect: true, streamDirect: true } },
  { name: "owner staged, stream staged", src: { ownerDirect: false, streamDirect: false } },
];

async function check(c: Case) {
  const Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.Sq;
  const q = randn([1, Hq, c.Sq, c.D], f16), k = randn([1, Hkv, Skv, c.D], f16), v = randn([1, Hkv, Skv, c.D], f16);
  const dOut = randn([1, Hq, c.Sq, c.D], f16);
  const blockMask = c.mask ? await createBlockMask(c.mask, 1, 1, c.Sq, Skv) : undefined;
  const opts: FlexOptions = { blockMask, scoreMod: c.score, enableGqa: Hq !== Hkv, kernelOptions: { family: "tensor" } };
  const [y, back] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
  const call = (y as Tensor).arg as FlexCall;
  const ref = flexReferenceBwd(call, {
    q: q.data!, k: k.data!, v: v.data!, scoreCaptures: [], maskCaptures: call.blockMask.tracedMask.captures.map((t) => (t as Tensor).data!),
    dOut: dOut.data!, dLse: null,
  });
  for (const variant of VARIANTS) {
    setBwdTensorOverride(variant.src);
    try {
      const [, back2] = vjp((q, k, v) => flexAttention(q, k, v, opts), q, k, v);
      const grads = back2(dOut);
      const kernels = explain(grads, ex.caps).kernels.filter((l) => l.includes("flex_bwd_d"));
      setPoison(true);
      const got = await realizeAll(grads);
      const e = [relL2(got[0], ref.dq), relL2(got[1], ref.dk), relL2(got[2], ref.dv)];
      const ok = e.every((x) => x <= 6e-4);
      console.log(`  ${ok ? "PASS" : "FAIL"} ${c.name} | ${variant.name} | dq ${e[0].toExponential(2)} dk ${e[1].toExponential(2)} dv ${e[2].toExponential(2)} | ${kernels.join("; ")}`);
    } catch (err) {
      console.log(`  ERROR ${c.name} | ${variant.name}: ${err instanceof Error ? err.message : err}`);
    } finally {
      setBwdTensorOverride(null);
    }
  }
  void back;
}

if (!env("FLEX_PROBE_SKIP_CHECK")) {
  console.log(`== correctness vs float64 (rel. L2, tolerance 6e-4) [${at()}]`);
  for (const c of CASES.slice(0, Number(env("FLEX_PROBE_CASES") ?? CASES.length))) await check(c);
}

// ---- timings
const torch = Deno.readTextFileSync(new URL("./torch_h200.jsonl", import.meta.url)).split("\n").filter((l) => l.trim())
  .map((l) => JSON.parse(l) as { case: string; dtype: string; shape: string; fwd_ms?: number; bwd_ms?: number });
const profile = (roots: Tensor[], n: number) => Effect.runPromise(ex.profile(roots, n));
const best = async (roots: Tensor[]) => {
  const one = await profile(roots, 1);
  const n = Math.max(1, Math.min(10, Math.ceil(100 / one)));
  let min = Infinity;
  for (let i = 0; i < 3; i++) min = Math.min(min, await profile(roots, n));
  return min;
};

if (!env("FLEX_PROBE_SKIP_TIME")) {
  const B = 4, H = 16, S = 4096, D = 64;
  console.log(`== timings B${B} H${H} S${S} D${D} f16 [${at()}]`);
  const [q, k, v, dOut] = [1, 2, 3, 4].map((seed) => randn([B, H, S, D], { seed, dtype: "f16" }));
  const shapes = JSON.parse(env("FLEX_PROBE_SHAPES") ?? "[]") as { BA: number; subgroups: number; BB: number }[];
  for (const name of ["noop", "causal"]) {
    const blockMask = name === "causal" ? await createBlockMask(causalMask, null, null, S, S) : undefined;
    const density = blockMask ? 1 - blockMask.sparsity() / 100 : 1;
    const flops = 10 * B * H * S * S * D * density;
    const t = torch.find((r) => r.case === name && r.dtype === "f16" && r.shape === `${B}x${H}x${S}x${D}`);
    const fwd = await best([flexAttention(q, k, v, { blockMask })]);
    const runs: { label: string; o: Parameters<typeof setBwdTensorOverride>[0] }[] = [
      { label: "before (portable f16 through f32)", o: { ownerDirect: false, streamDirect: true, disabled: true } },
      { label: "tensor (default)", o: null },
      { label: "tensor, owner from global", o: { ownerDirect: true, streamDirect: true } },
      ...shapes.map((s) => ({ label: `tensor BA${s.BA} SG${s.subgroups} BB${s.BB}`, o: { ownerDirect: false, streamDirect: true, shape: s } })),
    ];
    for (const r of runs) {
      setBwdTensorOverride(r.o);
      try {
        const [, back] = vjp((q, k, v) => flexAttention(q, k, v, { blockMask }), q, k, v);
        const grads = back(dOut);
        const labels = explain(grads, ex.caps).kernels.filter((l) => l.includes("flex_bwd_d")).join("; ");
        const bwd = await best(grads) - fwd;
        console.log(`  ${name} ${r.label}: fwd ${fwd.toFixed(3)} ms, bwd ${bwd.toFixed(3)} ms = ${(flops / bwd / 1e9).toFixed(1)} TF/s` +
          (t?.bwd_ms ? ` | PyTorch f16 bwd ${t.bwd_ms.toFixed(3)} ms (ours ${(100 * t.bwd_ms / bwd).toFixed(1)} % of its speed)` : "") +
          ` | ${labels} [${at()}]`);
      } catch (err) {
        console.log(`  ${name} ${r.label}: ERROR ${err instanceof Error ? err.message : err}`);
      } finally {
        setBwdTensorOverride(null);
      }
    }
  }
}
console.log(`done [${at()}]`);
Deno.exit(0);
