/**
 * FLEX_ROBUSTNESS=off (Dawn's `disable_robustness`: no bounds clamps in any kernel; lib/runtime/ROBUSTNESS.md):
 * in a child process of the same runtime, whose Dawn instance is made with that toggle, a few kernel kinds run on
 * ragged sizes (S not a multiple of any tile) against the float64 CPU executor, outputs poisoned first:
 * the f16 tensor-family forward (emulated where the adapter has no subgroup matrices), the backward of a masked,
 * score-modded call, a fused pointwise chain, a reduction over a dim, and createBlockMask's two kernels (states,
 * tables; exact). The toggle is per Dawn instance, so the parent (robust) process cannot test it in place.
 * On lavapipe an unguarded workgroup-memory index reads or writes beside its array (the probe in ROBUSTNESS.md);
 * storage accesses are bounds-checked by llvmpipe itself, so this is evidence for workgroup memory only there.
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const env = (k: string): string | undefined => g.Deno ? g.Deno.env.get(k) : g.process?.env?.[k];
const CHILD = "FLEX_ROBUSTNESS_CHILD";

if (env(CHILD) === "1") await child();
else await parent();

async function parent(): Promise<void> {
  const { describe, expect, it, runtime } = await import("../harness.ts");
  const { gpuSkipReason, releaseGpuAfterAll } = await import("../gpu.ts");
  const { deviceInfo } = await import("../../lib/runtime/mod.ts");
  const { dawnFlags } = await import("../../lib/runtime/providers.ts");
  const noGpu = await gpuSkipReason();
  const skip = noGpu || ((await deviceInfo()).provider !== "dawn" ? "FLEX_ROBUSTNESS is a Dawn instance toggle (Deno's wgpu has none)" : false);

  const setEnv = (k: string, v: string | undefined) => {
    if (g.Deno) { if (v === undefined) g.Deno.env.delete(k); else g.Deno.env.set(k, v); } else if (v === undefined) delete g.process.env[k]; else g.process.env[k] = v;
  };
  const flagsWith = (v: string | undefined) => {
    const old = env("FLEX_ROBUSTNESS");
    setEnv("FLEX_ROBUSTNESS", v);
    try { return dawnFlags(); } finally { setEnv("FLEX_ROBUSTNESS", old); }
  };

  describe("FLEX_ROBUSTNESS", () => {
    it("off and unset (the default) add disable_robustness to the Dawn toggles, on does not, anything else names the choices", () => {
      expect(flagsWith("off")[0]).toContain(",disable_robustness");
      expect(flagsWith("on")[0]).not.toContain("disable_robustness");
      expect(flagsWith(undefined)[0]).toContain(",disable_robustness");
      expect(() => flagsWith("maybe")).toThrow(/expected on .* or off/);
    });

    it.skipIf(skip)("kernels without Dawn's bounds checks match the float64 executor (child process)", () => {
      const file = fileURLToPath(import.meta.url);
      const args = runtime === "deno" ? ["run", "-A", "--no-check", file] : [file];
      const r = spawnSync(process.execPath, args, {
        stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", timeout: 240_000,
        // the dQ-from-dS' kernel (48 KB of unrolled WGSL) takes lavapipe ~25 s to compile: the child's backward uses
        // the dQ kernel of the plain path; tests/kernels_bwd covers the other under FLEX_ROBUSTNESS=off (ROBUSTNESS.md)
        env: { ...process.env, [CHILD]: "1", FLEX_ROBUSTNESS: "off", FLEX_WEBGPU: "dawn", FLEX_BWD_DQ_FROM_DS: "0" },
      });
      const lines = (r.stdout ?? "").trim().split("\n").filter((l) => l.startsWith("{"));
      const results = lines.map((l) => JSON.parse(l) as { name: string; err: number; tol: number; ms: number });
      // every case reported, each within its tolerance, and the child exited cleanly (no crash, no error)
      expect({ status: r.status, stderr: r.status === 0 ? "" : r.stderr.slice(-2000) }).toEqual({ status: 0, stderr: "" });
      expect(results.map((x) => x.name)).toEqual(["toggle", "forward f16 tensor", "backward", "pointwise chain", "reduce", "createBlockMask"]);
      for (const x of results) expect({ name: x.name, ok: x.err <= x.tol, err: x.err }).toEqual({ name: x.name, ok: true, err: x.err });
    });
  });
  releaseGpuAfterAll();
}

/** The child: prints one JSON line per case ({ name, err, tol }); any throw exits non-zero. */
async function child(): Promise<void> {
  const relL2 = localRelL2;
  const { dawnFlags } = await import("../../lib/runtime/providers.ts");
  const { deviceInfo, realizeAll, setPoison, getExecutor } = await import("../../lib/runtime/mod.ts");
  const { realizeCpu } = await import("../../lib/runtime/cpu/executor.ts");
  const { randn } = await import("../../lib/tensor/tensor.ts");
  const { cast, mulScalar } = await import("../../lib/tensor/ops.ts");
  const { add, exp, mul, sum, tanh, logsumexp, causalMask, andMasks, createBlockMask } = await import("../../mod.ts");
  const { flexAttention } = await import("../../lib/attention/flex_attention.ts");
  const { vjp } = await import("../../lib/passes/mod.ts");
  const { explain } = await import("../../lib/lower/explain.ts");
  const { maskBlocksNode } = await import("../../lib/blockmask/mask_blocks.ts");
  const { blockTablesNode, PARTS } = await import("../../lib/blockmask/block_tables.ts");
  const { traceMaskMod } = await import("../../lib/mods/trace.ts");
  type T = import("../../lib/tensor/tensor.ts").Tensor;
  type E = import("../../lib/ir/expr.ts").Expr;

  const t0 = Date.now();
  const report = (name: string, err: number, tol: number) => console.log(JSON.stringify({ name, err, tol, ms: Date.now() - t0 }));
  const info = await deviceInfo();
  if (info.provider !== "dawn") throw new Error(`child: provider ${info.provider}, expected dawn`);
  report("toggle", dawnFlags()[0].includes("disable_robustness") ? 0 : 1, 0);
  setPoison(true);
  const both = async (roots: T[]) => ({ got: await realizeAll(roots), want: realizeCpu(roots) });
  const caps = (await getExecutor()).caps;
  let seed = (Math.random() * 2 ** 31) >>> 0;
  const fresh = (shape: number[], dtype: "f32" | "f16" = "f32") => randn(shape, { seed: seed++, dtype });
  // sizes off every tile multiple: ragged rows, columns and kv blocks
  const [B, H, S, D] = [1, 2, 45, 16];
  const window = (_b: E, _h: E, q: E, kv: E) => q.sub(kv).le(20);
  const mask = await createBlockMask(andMasks(causalMask, window), null, null, S, S, { blockSize: 16 });

  { // forward, f16 tensor family (emulated without subgroup matrices)
    const q = fresh([B, H, S, D], "f16"), k = fresh([B, H, S, D], "f16"), v = fresh([B, H, S, D], "f16");
    const out = flexAttention(q, k, v, { blockMask: mask, kernelOptions: { family: "tensor" } }) as T;
    const labels = explain(out, caps).kernels.join(" | ");
    if (!labels.includes("flex_forward_tensor")) throw new Error(`child: no tensor-family launch in ${labels}`);
    const { got, want } = await both([out]);
    report("forward f16 tensor", relL2(got[0], want[0]), 5e-3);
  }
  { // backward: dQ, dK, dV of a masked, score-modded f32 call
    const q = fresh([B, H, S, D]), k = fresh([B, H, S, D]), v = fresh([B, H, S, D]), dout = fresh([B, H, S, D]);
    const scoreMod = (s: E) => s.div(5).tanh().mul(5);
    const [, back] = vjp((a: T, b: T, c: T) => flexAttention(a, b, c, { blockMask: mask, scoreMod }) as T, q, k, v);
    const grads = back(dout);
    const { got, want } = await both(grads);
    report("backward", Math.max(...grads.map((_, i) => relL2(got[i], want[i]))), 1e-4);
  }
  { // a fused pointwise chain over broadcast operands (f16 in, f32 math) and a reduction over a dim
    const a = fresh([3, 37, 29]), b = fresh([37, 1]), c = cast(fresh([3, 37, 29]), "f16");
    const chain = add(mul(tanh(a), b), mulScalar(exp(cast(c, "f32")), 0.5));
    const { got, want } = await both([chain, logsumexp(chain, 1), sum(chain, [0, 2])]);
    report("pointwise chain", relL2(got[0], want[0]), 1e-5);
    report("reduce", Math.max(relL2(got[1], want[1]), relL2(got[2], want[2])), 1e-4);
  }
  { // createBlockMask's kernels (mask states, ordered tables) on a ragged grid: exactly the CPU executor's words
    const traced = traceMaskMod(andMasks(causalMask, window));
    const arg = { B: 1, H: 1, qLen: 77, kvLen: 61, blockSize: [16, 8] as [number, number], source: "states" as const, separateFull: true, parts: PARTS };
    const tables = blockTablesNode(arg, maskBlocksNode({ mask: traced, B: 1, H: 1, qLen: 77, kvLen: 61, blockSize: [16, 8] }));
    const { got, want } = await both([tables]);
    let diff = got[0].length === want[0].length ? 0 : 1;
    for (let i = 0; i < want[0].length; i++) if (got[0][i] !== want[0][i]) diff++;
    report("createBlockMask", diff, 0);
  }
  g.Deno ? g.Deno.exit(0) : g.process.exit(0);
}

function localRelL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Number.isFinite(num) ? Math.sqrt(num / Math.max(den, 1e-30)) : Infinity;
}
