/**
 * The test runner's reading of a child's log (tests/run.ts): the counts, and when a signal exit after the
 * complete report is a teardown abort (counted from the report) rather than a crash (run again, then red).
 */
import { describe, expect, it } from "./harness.ts";
import { isSignalExit, parseBun, parseDeno, reportPrecedesAbort } from "./run_log.ts";

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
});
