/**
 * Which expressions a mod built, and which of them fed another node, while it is being traced.
 *
 * JS cannot overload `&&`, `||`, `!` or `?:`, and an Expr (an object) is always truthy: `a && b` returns `b`,
 * `!a` is `false`, `a ? x : y` is `x`, all without a trace of `a`. What is detectable is the leftover: a node the
 * mod built that no other node consumed and that is not the result. lib/mods/trace.ts reports those as
 * ModOperatorError. `a || b` returns `a` without evaluating `b`, so it leaves nothing behind: not detectable.
 * Outside a trace (`current === null`) nothing is recorded, so passes and rewrites pay one null check.
 */
import type { Expr } from "./expr.ts";

export interface Usage {
  /** Every node constructed during the trace, in construction order. */
  readonly built: Expr[];
  /** Nodes that were an input of another node or an operand of a method (even one that folded it away). */
  readonly used: Set<Expr>;
}

let current: Usage | null = null;

/** Runs `body` recording usage; nested recordings each see only their own nodes. */
export function recordUsage<T>(body: () => T): { readonly result: T; readonly usage: Usage } {
  const prev = current;
  const usage: Usage = { built: [], used: new Set() };
  current = usage;
  try {
    return { result: body(), usage };
  } finally {
    current = prev;
  }
}

export function noteBuilt(e: Expr, src: readonly Expr[]): void {
  if (current === null) return;
  current.built.push(e);
  for (const s of src) current.used.add(s);
}

export function noteUsed(e: Expr): void {
  if (current !== null) current.used.add(e);
}
