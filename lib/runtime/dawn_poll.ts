/**
 * Dawn's node addon drives every pending promise (mapAsync, onSubmittedWorkDone, compilation info) by
 * re-posting a native callback with `setImmediate` until the promise settles: a busy loop for as long as
 * the GPU works. On a software adapter the GPU IS the CPU: the loop (plus, under `deno test`, a runtime
 * thread servicing it) took both cores of a 2-core machine while lavapipe's queue thread starved. A kernel
 * that compiles and runs in 4 s took 3 minutes (measured, Deno 2.9.6, Mesa 25 lavapipe).
 *
 * `throttleDawnPolling()` wraps `globalThis.setImmediate` once: a native callback (Dawn's pump; user
 * callbacks are JS functions and pass through untouched) is re-posted immediately for the first
 * `busyMs` of a wait (4 ms; 1 ms on a software adapter), then with `setTimeout(…, 1)`. Short waits keep their latency; long ones cost at most
 * ~1 ms extra and leave the CPU to the driver. FLEX_DAWN_POLL=busy turns it off.
 *
 * A wait starts when the pump is posted from outside a pump callback (Dawn posts the first one when a
 * promise is created with no tick queued, then each callback re-posts itself while promises are pending).
 * An earlier rule (a gap of > 20 ms between callbacks starts a wait) counted back-to-back realizes as one
 * endless wait, so every promise of every later realize waited a timer step: ~6 ms per realize on lavapipe,
 * 7–8 ms of createBlockMask's 10 ms on the H200 (measured, bench/create_block_mask.ts).
 */
import { readEnv } from "./env.ts";

/** Busy time of a wait before pacing: 4 ms on a hardware adapter, 1 ms on a software one (its driver needs the CPU). */
let busyMs = 4;

/** Sets the busy time from the adapter Dawn gave (lib/runtime/providers.ts calls it). */
export function setDawnPollSoftware(software: boolean): void {
  busyMs = software ? 1 : 4;
}
const INSTALLED = Symbol.for("@flex/attention/dawnPollThrottle");
/** A JS function carrying this key is paced as Dawn's native pump (tests/runtime/dawn_poll.test.ts stands one in). */
export const PUMP_STAND_IN = Symbol.for("@flex/attention/dawnPumpStandIn");

function isPump(fn: unknown): boolean {
  return typeof fn === "function" &&
    ((fn as unknown as Record<symbol, unknown>)[PUMP_STAND_IN] === true || Function.prototype.toString.call(fn).includes("[native code]"));
}

let waitStart = 0;

/**
 * Restarts the current wait's busy time now: the GPU executor calls it right after its submit, because the realize's
 * error-scope promises were created (and the pump posted) before the encoding and the submit, which would otherwise
 * spend the busy time of the wait on the GPU work (on lavapipe, whose busy time is 1 ms, most of it).
 */
export function dawnWaitStartsNow(): void {
  waitStart = performance.now();
}

export function throttleDawnPolling(): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g[INSTALLED] || typeof g.setImmediate !== "function" || readEnv("FLEX_DAWN_POLL") === "busy") return;
  const immediate = g.setImmediate;
  let inPump = false;
  const throttled = (fn: (...a: unknown[]) => void, ...args: unknown[]) => {
    if (!isPump(fn)) return immediate(fn, ...args);
    const now = performance.now();
    if (!inPump) waitStart = now; // posted by a new promise, not re-posted by the pump: a new wait
    // run the callback marked as the pump, so the posts it makes continue this wait
    const pump = () => {
      inPump = true;
      try { fn(...args); } finally { inPump = false; }
    };
    return now - waitStart < busyMs ? immediate(pump) : setTimeout(pump, 1);
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
