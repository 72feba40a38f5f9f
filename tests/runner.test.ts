/**
 * The test runner's reading of a child's log (tests/run.ts): the counts, and when a signal exit after the
 * complete report is a teardown abort (counted from the report) rather than a crash (run again, then red).
 */
import { describe, expect, it } from "./harness.ts";
import { isSignalExit, parseBun, parseDeno, reportPrecedesAbort } from "./run_log.ts";
import { type Job, runPool, slowest } from "./run_schedule.ts";

const denoPassing = "running 3 tests from ./x.test.ts\na ... ok\nb ... ok\nc ... ok\n\nok | 3 passed | 0 failed | 1 ignored (2s)\n";

describe("test runner log parsing", () => {
  it("reads Deno's and Bun's summaries", () => {
    expect(parseDeno(denoPassing)).toEqual({ passed: 3, failed: 0, skipped: 1 });
    expect(parseDeno("FAILED | 2 passed | 1 failed (1s)")).toEqual({ passed: 2, failed: 1, skipped: 0 });
    expect(parseBun(" 5 pass\n 1 skip\n 0 fail\nRan 6 tests across 1 file.")).toEqual({ passed: 5, failed: 0, skipped: 1 });
    expect(parseDeno("a ... ok\n(process died)")).toBeUndefined();
  });

  it("a glibc abort after the complete report is a teardown abort; an abort mid-run is a crash", () => {
    expect(isSignalExit(134)).toBe(true);
    expect(isSignalExit(1)).toBe(false);
    expect(reportPrecedesAbort(denoPassing + "double free or corruption (out)\n")).toBe(true);
    expect(reportPrecedesAbort("running 3 tests\na ... ok\ndouble free or corruption (out)\n")).toBe(false);
    expect(reportPrecedesAbort(" 5 pass\n 0 fail\nRan 5 tests across 1 file.\nSegmentation fault")).toBe(true);
  });

  it("the job pool keeps every worker busy and starts a job only after its prerequisite finished", async () => {
    const tick = () => new Promise((r) => setTimeout(r, 5));
    const jobs: Job[] = ["a", "b", "c"].flatMap((file) => [{ pass: 0, file }, { pass: 1, file }]);
    jobs.push(...["a", "b", "c"].map((file) => ({ pass: 2, file })));
    const started: string[] = [], finished = new Set<string>();
    let live = 0, most = 0;
    await runPool(jobs, 2, (j) => j.pass === 2 ? { pass: 0, file: j.file } : undefined, async (j) => {
      if (j.pass === 2) expect(finished.has(`0 ${j.file}`)).toBe(true);
      started.push(`${j.pass} ${j.file}`);
      most = Math.max(most, ++live);
      // pass 0 of "c" is slow: pass 2 of "a" and "b" overtake it, pass 2 of "c" waits for it
      for (let i = 0; i < (j.pass === 0 && j.file === "c" ? 6 : 1); i++) await tick();
      live--;
      finished.add(`${j.pass} ${j.file}`);
    });
    expect(started.length).toBe(9);
    expect(new Set(started).size).toBe(9);
    expect(most).toBe(2);
    expect(started.indexOf("2 a")).toBeLessThan(started.indexOf("2 c"));
    expect(slowest([{ ms: 1 }, { ms: 3 }, { ms: 2 }], 2)).toEqual([{ ms: 3 }, { ms: 2 }]);
  });

  it("the job pool refuses a prerequisite that is not in the list instead of waiting forever", async () => {
    let error: unknown;
    await runPool([{ pass: 1, file: "x" }], 2, () => ({ pass: 0, file: "x" }), async () => {}).catch((e) => { error = e; });
    expect(String(error)).toContain("never ran");
  });
});
