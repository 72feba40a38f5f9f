/**
 * Reading a test child's log (tests/run.ts): the runners' summaries and the teardown-abort rule. No Deno
 * API here, so the suite can test it under Bun too (tests/runner.test.ts).
 */
export interface Counts { passed: number; failed: number; skipped: number }

// deno-lint-ignore no-control-regex
export const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");

function number(log: string, re: RegExp): number {
  const m = log.match(re);
  return m ? Number(m[1]) : 0;
}

/** Deno: `ok | 12 passed | 0 failed | 2 ignored (3s)` (or `FAILED | …`). */
export function parseDeno(log: string): Counts | undefined {
  const line = stripAnsi(log).split("\n").reverse().find((l) => /^(ok|FAILED) \| \d+ passed/.test(l.trim()));
  if (!line) return undefined;
  return { passed: number(line, /(\d+) passed/), failed: number(line, /(\d+) failed/), skipped: number(line, /(\d+) ignored/) };
}

/** Bun: ` 12 pass` / ` 2 skip` / ` 0 fail` lines at the end. */
export function parseBun(log: string): Counts | undefined {
  const text = stripAnsi(log);
  if (!/^\s*\d+ pass\s*$/m.test(text) && !/^\s*\d+ fail\s*$/m.test(text)) return undefined;
  return {
    passed: number(text, /^\s*(\d+) pass\s*$/m),
    failed: number(text, /^\s*(\d+) fail\s*$/m),
    skipped: number(text, /^\s*(\d+) skip\s*$/m) + number(text, /^\s*(\d+) todo\s*$/m),
  };
}

/** 128 + SIGABRT / SIGSEGV / SIGBUS: how a process that died of a signal reports its exit. */
export function isSignalExit(code: number): boolean {
  return code === 134 || code === 139 || code === 135;
}

/** The runner's final summary line comes before the end of the log: all tests of the file had finished. */
export function reportPrecedesAbort(log: string): boolean {
  const lines = stripAnsi(log).split("\n").map((l) => l.trim());
  const i = lines.findLastIndex((l) => /^(ok|FAILED) \| \d+ passed/.test(l) || /^\d+ pass$/.test(l) || /^Ran \d+ tests? across/.test(l));
  return i >= 0;
}
