/**
 * Which GPU executor the layer builds: lib/runtime/gpu_executor.ts's `createGpuExecutor` (written by the
 * kernels work) when that module exists, else the stand-in. TRANSITIONAL: once gpu_executor.ts is in the
 * tree, replace this with a static import in gpu.ts (non-literal dynamic imports defeat type checking and
 * JSR's module graph).
 */
import type { ExecutorFactory } from "./gpu.ts";
import { createStandInGpuExecutor } from "./gpu_executor_standin.ts";

const specifier = "./gpu_executor.ts";
let factory: Promise<ExecutorFactory> | undefined;

function isMissingModule(e: unknown): boolean {
  const text = e instanceof Error ? e.message : String(e);
  return /gpu_executor/.test(text) && /not found|cannot find|no such file/i.test(text);
}

export function defaultExecutorFactory(): Promise<ExecutorFactory> {
  factory ??= import(specifier).then(
    (m: { createGpuExecutor?: ExecutorFactory }) => m.createGpuExecutor ?? createStandInGpuExecutor,
    // only a missing module falls back: a broken executor must fail loudly
    (e) => { if (isMissingModule(e)) return createStandInGpuExecutor; throw e; },
  );
  return factory;
}
