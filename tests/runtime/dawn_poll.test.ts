/**
 * The Dawn polling throttle (lib/runtime/dawn_poll.ts): JS callbacks of setImmediate pass through untouched;
 * a native callback re-posted continuously goes immediately at first, then through setTimeout.
 */
import { describe, expect, it } from "../harness.ts";
import { throttleDawnPolling } from "../../lib/runtime/dawn_poll.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

describe("Dawn polling throttle", () => {
  it("leaves JS callbacks immediate and throttles a long native pump", async () => {
    throttleDawnPolling();
    throttleDawnPolling(); // idempotent
    let ran = false;
    await new Promise<void>((resolve) => g.setImmediate(() => { ran = true; resolve(); }));
    expect(ran).toBe(true);

    const realTimeout = g.setTimeout;
    let viaTimeout = 0;
    g.setTimeout = (fn: () => void, ms?: number, ...a: unknown[]) => { if (fn === Math.random) viaTimeout++; return realTimeout(fn, ms, ...a); };
    try {
      // Math.random stands in for Dawn's native pump callback: re-post it for 30 ms
      const start = performance.now();
      let posts = 0;
      while (performance.now() - start < 30) {
        g.setImmediate(Math.random);
        posts++;
        await new Promise((r) => realTimeout(r, 0));
      }
      expect(posts).toBeGreaterThan(viaTimeout);
      expect(viaTimeout).toBeGreaterThan(0);
    } finally {
      g.setTimeout = realTimeout;
    }
  });
});
