/**
 * Dawn's node addon drives every pending promise (mapAsync, onSubmittedWorkDone, compilation info) by
 * re-posting a native callback with `setImmediate` until the promise settles: a busy loop for as long as
 * the GPU works. On a software adapter the GPU IS the CPU: the loop (plus, under `deno test`, a runtime
 * thread servicing it) took both cores of a 2-core machine while lavapipe's queue thread starved. A kernel
 * that compiles and runs in 4 s took 3 minutes (measured, Deno 2.9.6, Mesa 25 lavapipe).
 *
 * `throttleDawnPolling()` wraps `globalThis.setImmediate` once: a native callback (Dawn's pump; user
 * callbacks are JS functions and pass through untouched) is re-posted immediately for the first
 * BUSY_MS of a continuous wait, then with `setTimeout(…, 1)`. Short waits keep their latency; long ones
 * cost at most ~1 ms extra and leave the CPU to the driver. FLEX_DAWN_POLL=busy turns it off.
 */
import { readEnv } from "./env.ts";

const BUSY_MS = 4;
/** A gap longer than this between pump callbacks ends a wait. */
const WAIT_GAP_MS = 20;
const INSTALLED = Symbol.for("@flex/attention/dawnPollThrottle");

function isNative(fn: unknown): boolean {
  return typeof fn === "function" && Function.prototype.toString.call(fn).includes("[native code]");
}

export function throttleDawnPolling(): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g[INSTALLED] || typeof g.setImmediate !== "function" || readEnv("FLEX_DAWN_POLL") === "busy") return;
  const immediate = g.setImmediate;
  let waitStart = 0, last = -Infinity;
  const throttled = (fn: (...a: unknown[]) => void, ...args: unknown[]) => {
    if (!isNative(fn)) return immediate(fn, ...args);
    const now = performance.now();
    if (now - last > WAIT_GAP_MS) waitStart = now;
    last = now;
    return now - waitStart < BUSY_MS ? immediate(fn, ...args) : setTimeout(fn, 1, ...args);
  };
  // keep what setImmediate carries (Node's util.promisify.custom, etc.)
  Object.setPrototypeOf(throttled, immediate);
  for (const key of Reflect.ownKeys(immediate)) {
    if (!(key in throttled)) {
      try { Object.defineProperty(throttled, key, Object.getOwnPropertyDescriptor(immediate, key)!); } catch { /* read-only */ }
    }
  }
  g.setImmediate = throttled;
  g[INSTALLED] = true;
}
