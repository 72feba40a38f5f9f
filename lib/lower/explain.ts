/**
 * `explain(t)`: what a realize of `t` will do — the graph as built, the graph after the passes (fusion), and
 * the kernels (launch labels, in order) the GPU lowering plans for it on `caps` (default: WebGPU's guaranteed
 * limits; pass an executor's `caps` for the real device: the family choice depends on the adapter). A flex
 * kernel's label contains "flex", so a user sees that fusion happened and tests can count kernels.
 */
import type { Tensor } from "../tensor/tensor.ts";
import { runPasses } from "../passes/pipeline.ts";
import { type Capabilities, DEFAULT_CAPABILITIES } from "./capabilities.ts";
import { planNode } from "./plan_node.ts";
import type { NodePlan } from "./plan.ts";

/**
 * What `explain()` returns: the graph before and after the passes and the kernels a realize runs.
 *
 * @example
 * ```ts
 * import { explain, randn, mulScalar } from "@flex/attention";
 * const { before, after, kernels } = explain(mulScalar(randn([4]), 2));
 * ```
 */
export interface Explanation {
  /** The graph as written. */
  readonly before: string;
  /** The graph after the passes (fusion, gradient packing). */
  readonly after: string;
  /** Launch labels, inputs first; a node whose plan needs realized host values shows as "(<op>: planned at realize)". */
  readonly kernels: readonly string[];
  /** All of it, readable. */
  toString(): string;
}

function listing(roots: readonly Tensor[]): string {
  const ids = new Map<Tensor, number>();
  const lines: string[] = [];
  const visit = (t: Tensor) => {
    if (ids.has(t)) return;
    t.inputs.forEach(visit);
    ids.set(t, ids.size);
    const ins = t.inputs.map((i) => `%${ids.get(i)}`).join(", ");
    lines.push(`  %${ids.get(t)} = ${t.op}(${ins}) : ${t.dtype}[${t.shape}]`);
  };
  // iterative enough for attention-sized graphs; very deep graphs are listed up to the call stack
  roots.forEach(visit);
  return lines.join("\n");
}

/**
 * The kernels a realize of `t` would run, and its graph before and after the passes (nothing runs).
 *
 * @example
 * ```ts
 * import { explain, flexAttention, randn } from "@flex/attention";
 * const x = randn([1, 2, 128, 32]);
 * console.log(explain(flexAttention(x, x, x)).toString());
 * ```
 */
export function explain(t: Tensor | readonly Tensor[], caps: Capabilities = DEFAULT_CAPABILITIES): Explanation {
  const roots = Array.isArray(t) ? [...t] as Tensor[] : [t as Tensor];
  const after = runPasses(roots);
  const kernels: string[] = [];
  const planned = new Set<NodePlan>();
  const seen = new Set<Tensor>();
  const visit = (n: Tensor) => {
    if (seen.has(n) || n.op === "const") return;
    seen.add(n);
    let plan: NodePlan;
    try {
      plan = planNode(n, caps);
    } catch {
      n.inputs.forEach(visit);
      kernels.push(`(${n.op}: planned at realize)`);
      return;
    }
    if (planned.has(plan)) return;
    planned.add(plan);
    for (const l of plan.launches) for (const b of l.bindings) if (b.kind === "input") visit(b.tensor);
    kernels.push(...plan.launches.map((l) => l.label));
  };
  after.forEach(visit);
  const before = listing(roots), afterText = listing(after);
  return {
    before, after: afterText, kernels,
    toString: () => `graph as built:\n${before}\n\nafter the passes:\n${afterText}\n\nkernels (${kernels.length}):\n${kernels.map((k) => `  ${k}`).join("\n")}`,
  };
}
