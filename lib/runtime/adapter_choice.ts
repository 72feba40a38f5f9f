/**
 * Whether auto mode should use an adapter it was given, from what the adapter says of itself.
 *
 * The rule: a hardware adapter is used; a software rasterizer is used only through Dawn (its Linux build is
 * Vulkan-only, so that is lavapipe or SwiftShader over Vulkan: 1–3 s per kernel compile, what CI runs). A
 * software adapter behind the runtime's own WebGPU is refused: Deno's wgpu reaches one only when there is no
 * Vulkan driver, and then it is llvmpipe over OpenGL, where each new kernel took about a minute to compile
 * (a 16-minute first demo); the CPU executor is faster there at any size a first run uses.
 * wgpu does not say which backend it is on; llvmpipe's OpenGL exposes ETC2 / ASTC texture compression,
 * which lavapipe's Vulkan does not, so that is named in the reason when it is seen.
 * An explicit FLEX_WEBGPU (or the layer's provider option) is never judged: forcing a provider always wins.
 */
import type { ProviderName } from "./executor.ts";

/** What an adapter says of itself (GPUAdapterInfo plus its features). */
export interface AdapterFacts {
  readonly provider: Exclude<ProviderName, "cpu">;
  readonly description: string;
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  /** GPUAdapterInfo.isFallbackAdapter (Dawn and wgpu set it for software adapters); absent where unsupported. */
  readonly isFallbackAdapter?: boolean;
  readonly features: readonly string[];
}

export type AdapterVerdict =
  | { readonly use: true; readonly software: boolean; readonly why: string }
  | { readonly use: false; readonly software: true; readonly why: string };

const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|software|microsoft basic render|\bwarp\b/i;
const GL_ONLY_FEATURES = ["texture-compression-etc2", "texture-compression-astc"];

export function adapterFacts(provider: Exclude<ProviderName, "cpu">, adapter: GPUAdapter): AdapterFacts {
  const i = (adapter.info ?? {}) as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const a = adapter as GPUAdapter & { isFallbackAdapter?: boolean };
  return {
    provider,
    description: i.description ?? "",
    vendor: i.vendor ?? "",
    architecture: i.architecture ?? "",
    device: i.device ?? "",
    isFallbackAdapter: i.isFallbackAdapter ?? a.isFallbackAdapter,
    features: [...(adapter.features as unknown as Iterable<string>)],
  };
}

function nameOf(f: AdapterFacts): string {
  return f.description || [f.vendor, f.architecture, f.device].filter(Boolean).join(" ") || "unknown adapter";
}

export function isSoftwareAdapter(f: AdapterFacts): boolean {
  return f.isFallbackAdapter === true || SOFTWARE_NAMES.test([f.description, f.vendor, f.architecture, f.device].join(" "));
}

/** The auto-mode decision for one adapter, with the reason in words (logged, and kept in `skipped`). */
export function judgeAutoAdapter(f: AdapterFacts): AdapterVerdict {
  const name = nameOf(f);
  if (!isSoftwareAdapter(f)) return { use: true, software: false, why: `${f.provider}: hardware adapter "${name}"` };
  if (f.provider === "dawn") {
    return { use: true, software: true, why: `dawn: software adapter "${name}" over Vulkan (slow kernels, but compiles in seconds)` };
  }
  const gl = GL_ONLY_FEATURES.some((x) => f.features.includes(x));
  return {
    use: false,
    software: true,
    why: `${f.provider}: "${name}" is a software rasterizer ${gl ? "behind OpenGL" : "(most likely behind OpenGL: no Vulkan driver let Dawn start)"}, ` +
      `where each new kernel takes about a minute to compile; the CPU executor is faster here (FLEX_WEBGPU=${f.provider} forces this adapter)`,
  };
}
