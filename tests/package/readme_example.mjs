// The README's first example, run through the package name (as an npm user would), then checked against the
// float64 CPU executor on the same lazy tensors. Plain JavaScript: Node 20 runs it without a TypeScript step.
// Usage (inside a project that installed the package): node readme_example.mjs | bun readme_example.mjs
import { alibi, alibiSlopes, andMasks, causalMask, createBlockMask, flexAttention, randn, slidingWindow } from "@flex/attention";
import { deviceInfo, setPoison } from "@flex/attention";
import { createCpuExecutor, runPromise } from "@flex/attention/effect";

setPoison(true); // unwritten output elements read back as NaN, so they fail the check below

// --- the README's example (TypeScript annotations dropped) ---
const [B, H, S, D] = [1, 8, 1024, 64];
const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);

const mask = await createBlockMask(andMasks(causalMask, slidingWindow(256)), null, null, S, S); // B, H, qLen, kvLen
console.log(mask.toString(), mask.sparsity());            // ██ full block, ░░ partial block, blank skipped

const out = flexAttention(q, k, v, { blockMask: mask, scoreMod: alibi(alibiSlopes(H)) }); // lazy Tensor
const { out: o, lse } = flexAttention(q, k, v, { blockMask: mask, returnLse: true });
const values = await out.toArray();                        // realizes: trace → lower → run

// --- the check: the same tensors on the float64 CPU executor ---
const [want, wantO, wantLse] = await runPromise(createCpuExecutor().realize([out, o, lse]));
const [gotO, gotLse] = [await o.toArray(), await lse.toArray()];
const maxErr = (got, ref) => {
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    m = Number.isNaN(e) ? Infinity : Math.max(m, e);
  }
  return m;
};
const info = await deviceInfo();
const runtime = globalThis.Bun ? `bun ${Bun.version}` : globalThis.Deno ? `deno ${Deno.version.deno}` : `node ${process.version}`;
const errs = { out: maxErr(values, want), outNoMod: maxErr(gotO, wantO), lse: maxErr(gotLse, wantLse) };
const TOL = 2e-4; // f32 kernels vs float64 (outputs are O(1))
const ok = values.length === B * H * S * D && Object.values(errs).every((e) => e <= TOL);
console.log(`readme example: ${runtime}, provider ${info.provider} (${info.adapter ?? "cpu"}), max |err| vs float64 ` +
  `out ${errs.out.toExponential(2)}, out (no mod) ${errs.outNoMod.toExponential(2)}, lse ${errs.lse.toExponential(2)} ` +
  `(tol ${TOL}): ${ok ? "OK" : "FAIL"}`);
if (!ok) process.exit(1);
