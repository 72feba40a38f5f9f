/**
 * The seam between the pure graph and the device: lib/runtime installs a realizer at import time
 * (`mod.ts` imports the runtime), so `Tensor.toArray()` works without this layer importing upward.
 */
import type { Tensor, TypedData } from "./tensor.ts";

export type Realizer = (t: Tensor) => Promise<TypedData>;

let realizer: Realizer | undefined;

export function setRealizer(r: Realizer): void { realizer = r; }

export function realizeWithHook(t: Tensor): Promise<TypedData> {
  if (!realizer) {
    return Promise.reject(new Error("no realizer installed: import the library through mod.ts (which loads lib/runtime)"));
  }
  return realizer(t);
}

/** The installed realizer (tests wrap it to route some nodes elsewhere for a while). */
export function getRealizer(): Realizer | undefined { return realizer; }
