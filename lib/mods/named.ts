/**
 * `named(name, fn)`: gives a mod a descriptive `name` (JS functions' `name` is read-only but configurable),
 * so traced mods, tables and benchmark rows label themselves (attention-gym's `__name__`).
 */
export function named<F extends (...args: never[]) => unknown>(name: string, fn: F): F {
  Object.defineProperty(fn, "name", { value: name, configurable: true });
  return fn;
}

/** The name of a mod for composite names: its `name`, or a placeholder for anonymous arrows. */
export function nameOf(fn: { readonly name: string }): string {
  return fn.name || "anonymous";
}
