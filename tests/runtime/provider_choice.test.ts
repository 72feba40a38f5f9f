/**
 * Auto mode's verdict on an adapter (lib/runtime/adapter_choice.ts) from fake adapter infos, the layer acting on
 * it (a software adapter behind the runtime's own WebGPU → the CPU executor, with the reason kept and logged;
 * forcing the provider skips the verdict), and the one warning Deno prints when FLEX_* cannot be read.
 */
import { describe, expect, it, runtime } from "../harness.ts";
import { type AdapterFacts, isSoftwareAdapter, judgeAutoAdapter } from "../../lib/runtime/adapter_choice.ts";
import type { GpuSource } from "../../lib/runtime/providers.ts";
import { setLogLevel, setLogSink } from "../../lib/runtime/log.ts";
import { brokenDawn, layerFailure, withGpu } from "./fakes.ts";

const facts = (over: Partial<AdapterFacts>): AdapterFacts => ({
  provider: "native", description: "", vendor: "", architecture: "", device: "", features: [], ...over,
});

// what the two software adapters of this machine report (Dawn on lavapipe; Deno's wgpu on llvmpipe-GL)
const dawnLavapipe = facts({
  provider: "dawn", vendor: "mesa", architecture: "software", device: "llvmpipe-llvm-15-0-6-256-bits-",
  description: "llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1", isFallbackAdapter: true,
  features: ["core-features-and-limits", "shader-f16", "subgroups", "timestamp-query"],
});
const wgpuGl = facts({
  provider: "native", vendor: "65541", device: "0", description: "llvmpipe (LLVM 15.0.6, 256 bits)", isFallbackAdapter: true,
  features: ["texture-compression-astc", "texture-compression-etc2", "timestamp-query"],
});

/** A source whose adapter says `info` and fails loudly if a device is requested from it. */
function fakeSource(name: "dawn" | "native", info: Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean }, features: string[]): GpuSource {
  const adapter = {
    info, features: new Set(features), limits: {},
    requestDevice: () => Promise.reject(new Error("requestDevice reached: the adapter was accepted")),
  };
  return { name, load: () => Promise.resolve({ requestAdapter: () => Promise.resolve(adapter) } as unknown as GPU) };
}

const glSource = fakeSource("native", { description: wgpuGl.description, vendor: "65541", device: "0", isFallbackAdapter: true }, [...wgpuGl.features]);

describe("provider choice", () => {
  it("uses hardware adapters and Dawn's lavapipe, refuses llvmpipe behind OpenGL", () => {
    const nvidia = judgeAutoAdapter(facts({ provider: "native", vendor: "nvidia", description: "NVIDIA H200", features: ["shader-f16"] }));
    expect(nvidia).toEqual({ use: true, software: false, why: 'native: hardware adapter "NVIDIA H200"' });
    const lvp = judgeAutoAdapter(dawnLavapipe);
    expect(lvp.use).toBe(true);
    expect(lvp.software).toBe(true);
    const gl = judgeAutoAdapter(wgpuGl);
    expect(gl.use).toBe(false);
    expect(gl.why).toContain("behind OpenGL");
    expect(gl.why).toContain("CPU executor");
    expect(gl.why).toContain("FLEX_WEBGPU=native");
  });

  it("tells software adapters by flag or by name, and refuses any behind the runtime's own WebGPU", () => {
    expect(isSoftwareAdapter(facts({ isFallbackAdapter: true, description: "Some Adapter" }))).toBe(true);
    expect(isSoftwareAdapter(facts({ description: "SwiftShader Device (Subzero)" }))).toBe(true);
    expect(isSoftwareAdapter(facts({ description: "Microsoft Basic Render Driver" }))).toBe(true);
    expect(isSoftwareAdapter(facts({ vendor: "apple", description: "Apple M3" }))).toBe(false);
    expect(isSoftwareAdapter(facts({ vendor: "intel", description: "Intel(R) Arc(tm) Graphics", isFallbackAdapter: false }))).toBe(false);
    // no GL-only feature seen: still refused (wgpu reaches llvmpipe only without a Vulkan driver), said less surely
    const unsure = judgeAutoAdapter(facts({ description: "llvmpipe (LLVM 15.0.6, 256 bits)", features: ["timestamp-query"] }));
    expect(unsure.use).toBe(false);
    expect(unsure.why).toContain("most likely behind OpenGL");
    // SwiftShader through Dawn is Vulkan: used
    expect(judgeAutoAdapter(facts({ provider: "dawn", description: "SwiftShader Device (Subzero)" })).use).toBe(true);
  });

  it("auto mode passes over a software OpenGL adapter for the CPU executor, keeps and logs the reason", async () => {
    const lines: string[] = [];
    setLogSink((l) => lines.push(l));
    setLogLevel("info");
    try {
      const g = await withGpu({ provider: "auto", sources: { dawn: brokenDawn, native: glSource } }, (g) => g);
      expect(g.executor.info.provider).toBe("cpu");
      expect(g.skipped.length).toBe(2);
      expect(g.skipped[1]).toContain("behind OpenGL");
      expect(g.reason).toBe("auto: no usable WebGPU adapter");
      expect(lines.some((l) => l.startsWith("[flex info] provider passed over:") && l.includes("behind OpenGL"))).toBe(true);
      expect(lines.some((l) => l.startsWith("[flex info] provider: cpu"))).toBe(true);
    } finally {
      setLogSink(undefined);
      setLogLevel(undefined);
    }
  });

  it("forcing the provider skips the verdict: the same adapter is opened", async () => {
    const e = await layerFailure({ provider: "native", sources: { native: glSource } });
    expect((e as Error).message).toContain("requestDevice reached");
  });

  it("a forced CPU executor says who forced it", async () => {
    const g = await withGpu({ provider: "cpu" }, (g) => g);
    expect(g.reason).toBe('the provider option is "cpu"');
  });

  it.skipIf(runtime !== "deno" && "the permission model is Deno's")("without --allow-env, FLEX_* settings are reported ignored, once, and no prompt is raised", async () => {
    const script = new URL("../../lib/runtime/env.ts", import.meta.url).href;
    const code = `import { readEnv } from ${JSON.stringify(script)};\nconsole.log(readEnv("FLEX_WEBGPU"), readEnv("FLEX_LOG"));`;
    // deno-lint-ignore no-explicit-any
    const D = (globalThis as any).Deno;
    const out = await new D.Command(D.execPath(), {
      args: ["run", "--no-prompt", "--no-config", "-"], stdin: "piped", stdout: "piped", stderr: "piped",
      env: { FLEX_WEBGPU: "cpu", NO_COLOR: "1" },
    }).spawn();
    const w = out.stdin.getWriter();
    await w.write(new TextEncoder().encode(code));
    await w.close();
    const r = await out.output();
    const stdout = new TextDecoder().decode(r.stdout).trim(), stderr = new TextDecoder().decode(r.stderr).trim();
    expect(stdout).toBe("undefined undefined");
    const warnings = stderr.split("\n").filter((l: string) => l.includes("no permission to read environment variables"));
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain("--allow-env");
  });
});
