import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { AdapterUnavailable, UnknownProvider } from "../../lib/errors.ts";
import { dawnSource, nativeSource, requestAdapter, resolveChoice } from "../../lib/runtime/providers.ts";
import { deviceInfo, resetRuntime } from "../../lib/runtime/mod.ts";
import { readEnv } from "../../lib/runtime/env.ts";
import { adapterFacts, judgeAutoAdapter } from "../../lib/runtime/adapter_choice.ts";
import { brokenDawn, layerFailure as failureOf, nullAdapterSource, withGpu } from "./fakes.ts";


async function adapterReason(source: typeof nativeSource): Promise<string | false> {
  return await Effect.runPromise(
    requestAdapter(source).pipe(Effect.as(false as const), Effect.catch((e) => Effect.succeed(e.message))),
  );
}

/** Whether auto mode would take this source's adapter (it passes over software adapters behind OpenGL). */
async function autoTakes(source: typeof nativeSource): Promise<boolean> {
  return await Effect.runPromise(
    requestAdapter(source).pipe(Effect.map((a) => judgeAutoAdapter(adapterFacts(source.name, a)).use), Effect.orElseSucceed(() => false)),
  );
}

const providers = [
  { name: "dawn" as const, reason: await adapterReason(dawnSource()), auto: await autoTakes(dawnSource()) },
  { name: "native" as const, reason: await adapterReason(nativeSource), auto: await autoTakes(nativeSource) },
];

describe("runtime providers", () => {
  for (const p of providers) {
    it.skipIf(p.reason)(`${p.name}: forced provider gives a self-tested adapter and names itself`, async () => {
      const info = await withGpu({ provider: p.name }, (g) => {
        expect(g.device).not.toBeNull();
        return g.executor.info;
      });
      expect(info.provider).toBe(p.name);
      expect(info.adapter.length).toBeGreaterThan(0);
      expect(info.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    });
  }

  it("cpu: forced provider gives the CPU executor", async () => {
    const g = await withGpu({ provider: "cpu" }, (g) => g);
    expect(g.device).toBeNull();
    expect(g.executor.info.provider).toBe("cpu");
  });

  it("an unknown provider name fails with UnknownProvider", async () => {
    const e = await failureOf({ provider: "bogus" });
    expect(e).toBeInstanceOf(UnknownProvider);
    expect((e as Error).message).toContain("bogus");
    expect(await Effect.runPromise(resolveChoice("DAWN"))).toBe("dawn");
    expect(await Effect.runPromise(resolveChoice("auto"))).toBe("auto");
  });

  it("forcing Dawn when its package cannot load fails with AdapterUnavailable naming the package", async () => {
    const e = await failureOf({ provider: "dawn", sources: { dawn: brokenDawn } });
    expect(e).toBeInstanceOf(AdapterUnavailable);
    expect((e as AdapterUnavailable).provider).toBe("dawn");
    expect((e as Error).message).toContain("could not be loaded");
  });

  it("forcing a provider whose requestAdapter() returns null fails with AdapterUnavailable", async () => {
    const e = await failureOf({ provider: "native", sources: { native: nullAdapterSource("native") } });
    expect(e).toBeInstanceOf(AdapterUnavailable);
    expect((e as Error).message).toContain("requestAdapter() returned null");
  });

  const hasNavigatorGpu = !!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
  it.skipIf(hasNavigatorGpu && "this runtime has navigator.gpu")("forcing native where navigator.gpu is missing says so", async () => {
    const e = await failureOf({ provider: "native" });
    expect(e).toBeInstanceOf(AdapterUnavailable);
    expect((e as Error).message).toContain("navigator.gpu is undefined");
  });

  it("auto mode falls through unavailable providers to the CPU and says why", async () => {
    const g = await withGpu({ provider: "auto", sources: { dawn: brokenDawn, native: nullAdapterSource("native") } }, (g) => g);
    expect(g.executor.info.provider).toBe("cpu");
    expect(g.skipped.length).toBe(2);
    expect(g.skipped[0]).toContain("could not be loaded");
    expect(g.skipped[1]).toContain("returned null");
  });

  it("auto mode takes Dawn first when it works, else the next", async () => {
    const g = await withGpu({ provider: "auto" }, (g) => g.executor.info.provider);
    const expected = providers.find((p) => p.auto)?.name ?? "cpu";
    expect(g).toBe(expected);
  });

  it("deviceInfo() names the provider the default runtime actually uses (FLEX_WEBGPU)", async () => {
    const info = await deviceInfo();
    const forced = readEnv("FLEX_WEBGPU");
    if (forced) expect(info.provider).toBe(forced);
    else expect(["dawn", "native", "cpu"]).toContain(info.provider);
    expect(Array.isArray(info.features)).toBe(true);
  });

  it("resetRuntime() lets the process switch providers through FLEX_WEBGPU", async () => {
    const env = (globalThis as { Deno?: { env: { get(k: string): string | undefined; set(k: string, v: string): void; delete(k: string): void } } }).Deno?.env;
    const proc = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env;
    const before = readEnv("FLEX_WEBGPU");
    const set = (v: string | undefined) => {
      if (env) v === undefined ? env.delete("FLEX_WEBGPU") : env.set("FLEX_WEBGPU", v);
      else if (proc) v === undefined ? delete proc.FLEX_WEBGPU : proc.FLEX_WEBGPU = v;
    };
    try {
      set("cpu");
      await resetRuntime();
      expect((await deviceInfo()).provider).toBe("cpu");
      set("bogus");
      await resetRuntime();
      await expect(deviceInfo()).rejects.toBeInstanceOf(UnknownProvider);
    } finally {
      set(before);
      await resetRuntime();
    }
    const info = await deviceInfo();
    if (before) expect(info.provider).toBe(before);
  });
});

releaseGpuAfterAll();
