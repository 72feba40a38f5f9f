/**
 * Half of a heavy kernel file's GPU cases in the deno/native pass of `deno task test` (tests/run.ts sets
 * FLEX_WEBGPU=native there): those files' kernels are the same WGSL on every provider and the deno/dawn and bun/dawn
 * passes run every case, so the native pass runs every other case (a deterministic half, by index) to check Deno's
 * built-in WebGPU (wgpu's SPIR-V on the same adapter) and reports the rest skipped with the reason. FLEX_TEST_NATIVE_ALL=1
 * runs them all; any other provider always runs them all.
 *
 *   const run = nativeHalf(skipReason);      // like it.skipIf(skipReason), counting its cases: 0, 2, 4, … run natively
 *   run("case", async () => { ... });
 *   it.skipIf(skipReason || nativeSkip(i))(…) // an index of the file's own (e.g. a checkerboard over a grid of cases)
 */
import { it } from "./harness.ts";
import { readEnv } from "../lib/runtime/env.ts";

/** Whether this process is the sliced native pass (FLEX_WEBGPU=native without FLEX_TEST_NATIVE_ALL=1). */
export const nativeSliced: boolean = readEnv("FLEX_WEBGPU") === "native" && readEnv("FLEX_TEST_NATIVE_ALL") !== "1";

/** Why case `i` does not run here (false: it runs): odd indices skip in the sliced native pass. */
export function nativeSkip(i: number): string | false {
  return nativeSliced && i % 2 === 1
    ? "the deno/native pass runs every other case of this file (the Dawn passes run them all): FLEX_TEST_NATIVE_ALL=1 runs it"
    : false;
}

/** `it.skipIf(reason)` whose cases, in registration order, skip at odd indices in the sliced native pass. */
export function nativeHalf(reason: string | false | undefined | null): (name: string, fn: () => void | Promise<void>, timeoutMs?: number) => void {
  let i = 0;
  return (name, fn, timeoutMs) => {
    const skip = nativeSkip(i++);
    it.skipIf(reason || skip)(name, fn, timeoutMs);
  };
}
