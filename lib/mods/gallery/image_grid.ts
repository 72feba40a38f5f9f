/** 2-D token layout shared by the image masks (sasa, natten): row-major H×W, token t at (t // W, t % W). */
import type { Expr } from "../../ir/expr.ts";
import { InvalidArgument } from "../../errors.ts";

export interface GridPos {
  readonly row: Expr;
  readonly col: Expr;
}

export function gridPos(t: Expr, W: number): GridPos {
  return { row: t.floorDiv(W), col: t.mod(W) };
}

/** Both tokens lie in the image (tokens ≥ H·W, e.g. padding, are masked out). */
export function inImage(q: Expr, kv: Expr, H: number, W: number): Expr {
  return q.lt(H * W).and(kv.lt(H * W));
}

export function checkPositiveInt(what: string, x: number): void {
  if (!Number.isInteger(x) || x < 1) throw new InvalidArgument({ message: `${what} must be a positive integer, got ${x}` });
}
