/**
 * Mask algebra (PyTorch's `and_masks` / `or_masks` / `noop_mask`, plus `notMask`): combinators that build a
 * new MaskMod from others. They work on the traced IR, so a composition costs nothing at run time beyond its
 * expression, and the result's `name` spells the composition (`and(causal, slidingWindow(3))`).
 *
 * A mask may return a JS boolean (a constant mask); it is lifted. Anything that is not a bool is a
 * ModReturnTypeError naming the offending mask. A part that is not a function is an InvalidArgument at once
 * (not a TypeError at trace time); the parts are recorded in `maskParts` so the strict arity check of
 * createBlockMask reaches them (lib/mods/mod_checks.ts).
 */
import { type Expr, lift } from "../ir/expr.ts";
import { InvalidArgument, ModReturnTypeError } from "../errors.ts";
import type { MaskMod } from "./trace.ts";
import { named, nameOf } from "./named.ts";
import { maskParts } from "./mod_checks.ts";

function checkParts(who: string, masks: readonly unknown[]): MaskMod[] {
  masks.forEach((m, i) => {
    if (typeof m !== "function") {
      throw new InvalidArgument({
        message: `${who}: argument ${i} is ${m === null ? "null" : typeof m}, not a mask mod; pass functions ` +
          `(b, h, q, kv) => bool expression, e.g. ${who}(causalMask, slidingWindow(128))`,
      });
    }
  });
  return masks as MaskMod[];
}

function combined(name: string, parts: readonly MaskMod[], fn: MaskMod): MaskMod {
  const out = named(name, fn);
  maskParts.set(out, parts);
  return out;
}

function callMask(mask: MaskMod, b: Expr, h: Expr, q: Expr, kv: Expr): Expr {
  const out = lift(mask(b, h, q, kv));
  if (out.dtype !== "bool") {
    throw new ModReturnTypeError({
      message: `mask ${nameOf(mask)} returned a ${out.dtype} expression; a mask mod returns a bool (e.g. q.ge(kv))`,
    });
  }
  return out;
}

/**
 * The mask that keeps everything (PyTorch's `noop_mask`).
 *
 * @example
 * ```ts
 * import { createBlockMask, noopMask } from "@flex/attention";
 * const everything = await createBlockMask(noopMask, null, null, 256, 256);
 * ```
 */
export const noopMask: MaskMod = named("noop", (_b: Expr, _h: Expr, _q: Expr, _kv: Expr) => true);

/** The mask that keeps nothing: the identity of `orMasks` (what `orMasks()` returns). */
const emptyMask: MaskMod = named("empty", (_b: Expr, _h: Expr, _q: Expr, _kv: Expr) => false);

/**
 * Keeps (b, h, q, kv) where every mask keeps it. `andMasks()` is `noopMask`.
 *
 * @example
 * ```ts
 * import { andMasks, causalMask, createBlockMask, slidingWindow } from "@flex/attention";
 * const mask = await createBlockMask(andMasks(causalMask, slidingWindow(128)), null, null, 1024, 1024);
 * ```
 */
export function andMasks(...masks: MaskMod[]): MaskMod {
  checkParts("andMasks", masks);
  if (masks.length === 0) return noopMask;
  if (masks.length === 1) return masks[0];
  return combined(`and(${masks.map(nameOf).join(", ")})`, masks, (b: Expr, h: Expr, q: Expr, kv: Expr) =>
    masks.map((m) => callMask(m, b, h, q, kv)).reduce((acc, x) => acc.and(x)));
}

/**
 * Keeps (b, h, q, kv) where any mask keeps it. `orMasks()` keeps nothing (as PyTorch).
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask, orMasks, prefixLm } from "@flex/attention";
 * const mask = await createBlockMask(orMasks(causalMask, prefixLm(64)), null, null, 512, 512);
 * ```
 */
export function orMasks(...masks: MaskMod[]): MaskMod {
  checkParts("orMasks", masks);
  if (masks.length === 0) return emptyMask;
  if (masks.length === 1) return masks[0];
  return combined(`or(${masks.map(nameOf).join(", ")})`, masks, (b: Expr, h: Expr, q: Expr, kv: Expr) =>
    masks.map((m) => callMask(m, b, h, q, kv)).reduce((acc, x) => acc.or(x)));
}

/**
 * Keeps exactly what `mask` drops.
 *
 * @example
 * ```ts
 * import { causalMask, createBlockMask, notMask } from "@flex/attention";
 * const future = await createBlockMask(notMask(causalMask), null, null, 512, 512); // strictly upper triangle
 * ```
 */
export function notMask(mask: MaskMod): MaskMod {
  checkParts("notMask", [mask]);
  return combined(`not(${nameOf(mask)})`, [mask], (b: Expr, h: Expr, q: Expr, kv: Expr) => callMask(mask, b, h, q, kv).not());
}
