/**
 * Issue #2's acceptance through the public API: the forward of EVERY gallery mod, on the provider the runtime
 * picked (a GPU adapter when there is one), within rel. L2 1e-4 of the float64 oracle on out and lse, at
 * S ∈ {128, 300, 512}, with outputs poisoned (NaN) first so an unwritten element fails. createBlockMask runs
 * its generated maskBlocks kernel here too.
 */
import { describe, expect, it } from "../harness.ts";
import { gpuSkipReason, releaseGpuAfterAll } from "../gpu.ts";
import { nativeSkip } from "../native_slice.ts";
import { createBlockMask, flexAttention, GALLERY, randn, setPoison, type Tensor } from "../../mod.ts";
import { makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { relL2 } from "../harness.ts";

const skip = await gpuSkipReason();
const [B, H, D] = [1, 2, 32];
const dataOf = (t: unknown) => (t as Tensor).data!;

describe("gallery forward vs float64 oracle", () => {
  // the deno/native pass: a checkerboard over (S, mod) (tests/native_slice.ts): each mod's kernels at one or two lengths
  for (const [si, S] of [128, 300, 512].entries()) {
    for (const [mi, [name, entry]] of Object.entries(GALLERY).entries()) {
      it.skipIf(skip || nativeSkip(si + mi))(`${name} at S=${S}`, async () => {
        setPoison(true);
        const mod = entry.make(S, H);
        const options = entry.kind === "mask"
          // deno-lint-ignore no-explicit-any
          ? { blockMask: await createBlockMask(mod as any, null, null, S, S) }
          // deno-lint-ignore no-explicit-any
          : { scoreMod: mod as any };
        const q = randn([B, H, S, D]), k = randn([B, H, S, D]), v = randn([B, H, S, D]);
        const { out, lse } = flexAttention(q, k, v, { ...options, returnLse: true });
        const [gotOut, gotLse] = [await out.toArray(), await lse.toArray()];
        const call = makeFlexCall(q, k, v, options);
        const ref = flexReference(call, {
          q: q.data!, k: k.data!, v: v.data!,
          scoreCaptures: call.scoreMod.captures.map(dataOf), maskCaptures: call.blockMask.tracedMask.captures.map(dataOf),
        });
        expect(relL2(gotOut, ref.out)).toBeLessThanOrEqual(1e-4);
        expect(relL2(gotLse, ref.lse)).toBeLessThanOrEqual(1e-4);
        // lse is −∞ exactly on the oracle's fully masked rows, finite elsewhere
        for (let i = 0; i < gotLse.length; i++) expect(gotLse[i] === -Infinity).toBe(ref.lse[i] === -Infinity);
      });
    }
  }
});

releaseGpuAfterAll();
