/**
 * The CPU executor: realizes a Tensor graph in topological order through the CPU_OPS table, in float64
 * where it computes (the oracle), with f32 results like the GPU's. Used when no adapter exists
 * (FLEX_WEBGPU=cpu or nothing else available) and by tests as the reference.
 */
import { Effect } from "effect";
import type { Tensor, TypedData } from "../../tensor/tensor.ts";
import { DEFAULT_CAPABILITIES } from "../../lower/capabilities.ts";
import { type FlexError, InvalidArgument } from "../../errors.ts";
import type { DeviceInfo, Executor } from "../executor.ts";
import { runPasses } from "../../passes/pipeline.ts";
import { CPU_OPS, type CpuOp, type CpuOpTable } from "./ops.ts";

/** A table of CPU rules: the complete one, or one with entries wrapped or added (tests). */
export type CpuOps = CpuOpTable | Readonly<Record<string, CpuOp<never>>>;

export const CPU_INFO: DeviceInfo = {
  provider: "cpu",
  adapter: "CPU float64 reference executor",
  features: [],
  limits: { ...DEFAULT_CAPABILITIES.limits },
};

/** Every node `roots` depends on, inputs before users (iterative: graphs may be deep). */
export function topoOrder(roots: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  const stack: { node: Tensor; expanded: boolean }[] = roots.map((node) => ({ node, expanded: false })).reverse();
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.expanded) { order.push(top.node); continue; }
    if (seen.has(top.node.id)) continue;
    seen.add(top.node.id);
    stack.push({ node: top.node, expanded: true });
    for (let i = top.node.inputs.length - 1; i >= 0; i--) {
      if (!seen.has(top.node.inputs[i].id)) stack.push({ node: top.node.inputs[i], expanded: false });
    }
  }
  return order;
}

function isTagged(e: unknown): e is FlexError {
  return e instanceof Error && typeof (e as { _tag?: unknown })._tag === "string";
}

/** Synchronous realization; throws what the ops throw. */
export function realizeCpu(given: readonly Tensor[], ops: CpuOps = CPU_OPS): TypedData[] {
  const roots = runPasses(given);
  const values = new Map<number, TypedData>();
  const memo = new Map<unknown, unknown>();
  const valueOf = (t: Tensor) => {
    const v = values.get(t.id);
    if (!v) throw new Error(`cpu executor: ${t} used before it was realized`);
    return v;
  };
  for (const node of topoOrder(roots)) {
    const op = (ops as Readonly<Record<string, CpuOp | undefined>>)[node.op];
    if (!op) {
      throw new InvalidArgument({
        message: `the CPU executor has no implementation of op "${node.op}" (register one in lib/runtime/cpu/ops.ts CPU_OPS)`,
      });
    }
    values.set(node.id, op({ node, inputs: node.inputs.map(valueOf), valueOf, memo }));
  }
  // copies, so callers may mutate what they get without touching constants
  return roots.map((r) => valueOf(r).slice() as TypedData);
}

export function createCpuExecutor(ops: CpuOps = CPU_OPS): Executor {
  return {
    info: CPU_INFO,
    caps: DEFAULT_CAPABILITIES,
    realize: (roots) =>
      Effect.suspend(() => {
        try {
          return Effect.succeed(realizeCpu(roots, ops));
        } catch (e) {
          // tagged library errors are expected failures; anything else is a bug (a defect)
          return isTagged(e) ? Effect.fail(e) : Effect.die(e);
        }
      }),
    profile: () => Effect.succeed(NaN),
  };
}
