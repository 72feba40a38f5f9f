/**
 * The Dawn polling throttle (lib/runtime/dawn_poll.ts): JS callbacks of setImmediate pass through untouched;
 * a pump that keeps re-posting itself goes immediately at first, then through setTimeout; a new wait (a post
 * from outside the pump) right after a long one is immediate again (back-to-back realizes kept their latency).
 */
import { describe, expect, it } from "../harness.ts";
import { PUMP_STAND_IN, throttleDawnPolling } from "../../lib/runtime/dawn_poll.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

describe("Dawn polling throttle", () => {
  it("leaves JS callbacks immediate, paces a long pump, and starts each new wait busy", async () => {
    throttleDawnPolling();
    throttleDawnPolling(); // idempotent
    let ran = false;
    await new Promise<void>((resolve) => g.setImmediate(() => { ran = true; resolve(); }));
    expect(ran).toBe(true);

    const realTimeout = g.setTimeout;
    let viaTimeout = 0;
    g.setTimeout = (fn: () => void, ms?: number, ...a: unknown[]) => { if (fn.name === "pump") viaTimeout++; return realTimeout(fn, ms, ...a); };
    try {
      // a stand-in for Dawn's pump: each run re-posts itself (as Dawn's does while a promise is pending) for `ms`
      const wait = (ms: number) => new Promise<number>((resolve) => {
        const start = performance.now();
        let runs = 0;
        const tick = Object.assign(() => {
          runs++;
          if (performance.now() - start < ms) g.setImmediate(tick);
          else resolve(runs);
        }, { [PUMP_STAND_IN]: true });
        g.setImmediate(tick); // the post that starts the wait, from outside the pump
      });
      const runs = await wait(30);
      expect(viaTimeout).toBeGreaterThan(0);
      expect(runs).toBeGreaterThan(viaTimeout); // the first BUSY_MS went immediately
      // back-to-back short waits right after: their posts go immediately (the rule before paced every one of
      // them, ~10 a wait; a few may still be paced when the shared machine deschedules this process for 4 ms)
      viaTimeout = 0;
      let posts = 0;
      for (let i = 0; i < 20; i++) posts += await wait(0.2);
      expect(posts).toBeGreaterThan(40);
      expect(viaTimeout).toBeLessThan(10);
    } finally {
      g.setTimeout = realTimeout;
    }
  });
});
