/**
 * WebGPU providers, tried in order: Dawn from npm `webgpu` → the runtime's own `navigator.gpu` → the CPU
 * float64 executor. `FLEX_WEBGPU=dawn|native|cpu` (or the layer's `provider` option) forces one; a forced
 * provider that is unavailable fails with AdapterUnavailable saying what is missing, while auto mode
 * falls through to the next.
 */
import { Effect } from "effect";
import { AdapterUnavailable, UnknownProvider } from "../errors.ts";
import type { ProviderName } from "./executor.ts";
import { readEnv } from "./env.ts";
import { setDawnPollSoftware, throttleDawnPolling } from "./dawn_poll.ts";
import { adapterFacts, isSoftwareAdapter } from "./adapter_choice.ts";

export type ProviderChoice = ProviderName | "auto";

/** A source of `GPU` objects: `load` throws an Error whose message says what is missing. */
export interface GpuSource {
  readonly name: Exclude<ProviderName, "cpu">;
  readonly load: () => Promise<GPU>;
}

/** `allow_unsafe_apis` unlocks subgroup matrices; `vulkan_enable_f16_on_nvidia` unlocks shader-f16 there. */
export const DAWN_FLAGS = ["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"];

/**
 * DAWN_FLAGS plus `FLEX_DAWN_TOGGLES` (comma-separated Dawn toggles) plus `disable_robustness` unless
 * `FLEX_ROBUSTNESS=on`: Tint then drops its clamps on every array index of every kernel of the instance, which
 * is sound only because each generator guards its accesses itself (lib/runtime/ROBUSTNESS.md lists them; the
 * default since session 9: 1.1–1.2× on the H200's f16 kernels). Read once per Dawn instance (the flags are fixed
 * when `create` runs). Anything but `on`/`off`/unset is an error.
 */
export function dawnFlags(): string[] {
  const extra = (readEnv("FLEX_DAWN_TOGGLES") ?? "").split(",").map((t) => t.trim()).filter((t) => /^[a-z0-9_]+$/.test(t));
  const robustness = (readEnv("FLEX_ROBUSTNESS") ?? "").trim().toLowerCase();
  if (robustness !== "" && robustness !== "on" && robustness !== "off") {
    throw new Error(`FLEX_ROBUSTNESS is "${robustness}"; expected on (Dawn's bounds checks) or off (the default: no checks, every kernel guards its own accesses)`);
  }
  if (robustness !== "on" && !extra.includes("disable_robustness")) extra.push("disable_robustness");
  return extra.length ? [`${DAWN_FLAGS[0]},${extra.join(",")}`] : DAWN_FLAGS;
}

const dawnInstances = new Map<string, Promise<GPU>>();

/**
 * The npm `webgpu` the library is tested with (deno.json's import map says the same; a package test compares them).
 * Under Deno the default Dawn import names it in full: the specifier is a variable (bundlers and Node leave it
 * alone), so JSR cannot rewrite a bare "webgpu" for a published package, but Deno resolves an npm: specifier itself.
 */
export const DAWN_NPM_SPECIFIER = "npm:webgpu@0.6.2";

/** What `dawnSource(specifier)` imports: the bare name everywhere but Deno, where the pinned npm: specifier. */
function dawnModuleSpecifier(specifier: string): string {
  const deno = (globalThis as { Deno?: unknown }).Deno !== undefined;
  return specifier === "webgpu" && deno ? DAWN_NPM_SPECIFIER : specifier;
}

/** Dawn's node addon (npm `webgpu`), imported dynamically so the library loads where it is absent. */
export function dawnSource(specifier = "webgpu"): GpuSource {
  const load = () => {
    let gpu = dawnInstances.get(specifier);
    if (!gpu) {
      gpu = (async () => {
        let m: { globals: object; create: (flags: string[]) => GPU };
        try {
          m = await import(dawnModuleSpecifier(specifier));
        } catch (e) {
          throw new Error(`npm package ${specifier} could not be loaded: ${e instanceof Error ? e.message : e}`);
        }
        // Dawn's GPUBufferUsage etc.; the runtime may not define them (Bun, Node)
        Object.assign(globalThis, m.globals);
        throttleDawnPolling();
        return m.create(dawnFlags());
      })();
      dawnInstances.set(specifier, gpu);
      gpu.catch(() => dawnInstances.delete(specifier));
    }
    return gpu;
  };
  return { name: "dawn", load };
}

/** The runtime's own WebGPU: Deno's built-in (wgpu) or a browser's. */
export const nativeSource: GpuSource = {
  name: "native",
  load: () => {
    const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    return gpu ? Promise.resolve(gpu) : Promise.reject(new Error("navigator.gpu is undefined in this runtime"));
  },
};

export const PROVIDER_ORDER: readonly ProviderName[] = ["dawn", "native", "cpu"];

/** Validates a provider name from the option or `FLEX_WEBGPU` (the option wins; empty means auto). */
export function resolveChoice(option?: string): Effect.Effect<ProviderChoice, UnknownProvider> {
  const raw = (option ?? readEnv("FLEX_WEBGPU") ?? "").trim().toLowerCase();
  if (raw === "" || raw === "auto") return Effect.succeed("auto");
  if ((PROVIDER_ORDER as readonly string[]).includes(raw)) return Effect.succeed(raw as ProviderName);
  const from = option !== undefined ? "the provider option" : "FLEX_WEBGPU";
  return Effect.fail(
    new UnknownProvider({ message: `${from} is "${raw}"; expected one of dawn, native, cpu (or unset for auto: ${PROVIDER_ORDER.join(" → ")})` }),
  );
}

/** The adapter of one source, or AdapterUnavailable naming what is missing. */
export function requestAdapter(source: GpuSource): Effect.Effect<GPUAdapter, AdapterUnavailable> {
  const unavailable = (why: string) => new AdapterUnavailable({ provider: source.name, message: `WebGPU provider "${source.name}": ${why}` });
  return Effect.tryPromise({
    try: async () => {
      const gpu = await source.load();
      const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
      // Dawn's promise pump spins less on a software adapter (lib/runtime/dawn_poll.ts)
      if (adapter && source.name === "dawn") setDawnPollSoftware(isSoftwareAdapter(adapterFacts("dawn", adapter)));
      return adapter;
    },
    catch: (e) => unavailable(e instanceof Error ? e.message : String(e)),
  }).pipe(
    Effect.flatMap((adapter) => adapter ? Effect.succeed(adapter) : Effect.fail(unavailable("requestAdapter() returned null"))),
  );
}
