/**
 * The rewrite driver of the graph passes: visits the graph from `roots` (inputs first, iteratively), asks
 * `replace` for a substitute of each node (given the node as built by the user), and otherwise rebuilds a
 * node only when one of its inputs was replaced. Unchanged subgraphs keep their identity (and their cached
 * uploads and plans); results are memoized per pass call.
 */
import { Tensor } from "../tensor/tensor.ts";

const BOUND = new Set(["flexOut", "flexLse", "flexMaxScore", "flexGrad", "maskBlocks", "denseAttention"]);

export function rebuild(roots: readonly Tensor[], replace: (node: Tensor) => Tensor | undefined): Tensor[] {
  const out = new Map<Tensor, Tensor>();
  const stack: { node: Tensor; expanded: boolean }[] = roots.map((node) => ({ node, expanded: false }));
  while (stack.length) {
    const top = stack.pop()!;
    const n = top.node;
    if (out.has(n)) continue;
    const sub = top.expanded ? undefined : replace(n);
    if (sub) { out.set(n, sub); continue; }
    if (!top.expanded) {
      stack.push({ node: n, expanded: true });
      for (const i of n.inputs) if (!out.has(i)) stack.push({ node: i, expanded: false });
      continue;
    }
    const inputs = n.inputs.map((i) => out.get(i) ?? i);
    // nodes whose arg names their inputs (a flex call's q, k, v; a mask's captures) are kept as built
    const changed = !BOUND.has(n.op) && inputs.some((x, i) => x !== n.inputs[i]);
    out.set(n, changed ? new Tensor(n.op, inputs, n.shape, n.dtype, n.arg) : n);
  }
  return roots.map((r) => out.get(r)!);
}
