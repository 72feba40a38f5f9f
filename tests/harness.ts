/**
 * One test API for both runtimes (DESIGN.md §6): under Bun it is `bun:test`; under Deno `it` maps to
 * `Deno.test` (names prefixed by the enclosing `describe`s) and `expect` is jest's npm `expect`.
 * Module specifiers are held in variables so neither runtime tries to resolve the other's module.
 *
 *   describe("blockmask", () => { it("counts", () => expect(1).toBe(1)); });
 *   it.skipIf(reason)("needs subgroup matrices", async () => { ... });   // reason: string | false
 */
type TestFn = () => void | Promise<void>;

export interface It {
  (name: string, fn: TestFn, timeoutMs?: number): void;
  /** Skipped with a reason shown in the output. */
  skip(name: string, fn?: TestFn): void;
  /** `it.skipIf("why")(name, fn)` skips; `it.skipIf(false)(name, fn)` runs. */
  skipIf(reason: string | false | undefined | null): (name: string, fn: TestFn, timeoutMs?: number) => void;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
export const runtime: "bun" | "deno" = g.Bun ? "bun" : "deno";

const bunSpec = "bun:test";
const expectSpec = "expect";
// deno-lint-ignore no-explicit-any
const lib: any = runtime === "bun" ? await import(bunSpec) : undefined;
// deno-lint-ignore no-explicit-any
export const expect: any = runtime === "bun" ? lib.expect : (await import(expectSpec)).expect;

const prefix: string[] = [];

export function describe(name: string, body: () => void): void {
  if (runtime === "bun") return lib.describe(name, body);
  prefix.push(name);
  try { body(); } finally { prefix.pop(); }
}

function full(name: string): string { return [...prefix, name].join(" > "); }

function denoTest(name: string, fn: TestFn, ignore = false): void {
  g.Deno.test({ name: full(name), fn, ignore, sanitizeResources: false, sanitizeOps: false });
}

const itImpl = ((name: string, fn: TestFn, timeoutMs?: number) => {
  // Cold shader compiles on a software adapter can take minutes; Deno has no per-test limit, Bun gets a generous one.
  if (runtime === "bun") return lib.it(name, fn, timeoutMs ?? 900_000);
  denoTest(name, fn);
}) as It;

itImpl.skip = (name: string, fn: TestFn = () => {}) => {
  if (runtime === "bun") return lib.it.skip(name, fn);
  denoTest(name, fn, true);
};

itImpl.skipIf = (reason) => (name, fn, timeoutMs) => {
  if (reason) return itImpl.skip(`${name} [skipped: ${reason}]`, fn);
  return itImpl(name, fn, timeoutMs);
};

export const it: It = itImpl;
export const test: It = itImpl;

/** Relative L2 error ‖a − b‖ / ‖b‖ (b the reference); NaN anywhere gives Infinity, so NaN never passes. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`relL2: lengths differ (${a.length} vs ${b.length})`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) return Infinity;
    if (x === y) { if (Number.isFinite(y)) den += y * y; continue; } // equal infinities (lse −∞) agree
    const d = x - y;
    num += d * d; den += y * y;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Max absolute difference (same NaN rule). */
export function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    if (a[i] === b[i]) continue;
    m = Math.max(m, Math.abs(a[i] - b[i]));
  }
  return m;
}
