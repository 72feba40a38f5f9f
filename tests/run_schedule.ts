/**
 * The test runner's job pool (tests/run.ts): `workers` loops take (pass, file) jobs in list order, each the
 * first whose prerequisite has finished, and wait for a running job when none is ready. No Deno API here, so
 * the suite can test it under Bun too (tests/runner.test.ts).
 */
export interface Job { readonly pass: number; readonly file: string }

const key = (j: Job) => `${j.pass}\u0000${j.file}`;

/**
 * Runs every job, at most `workers` at once. `after(job)` names the job that must have finished first (or
 * undefined); it must be a job of the list that has no prerequisite itself and comes before it, so the pool
 * never waits on a job no worker will take.
 */
export async function runPool(
  jobs: readonly Job[],
  workers: number,
  after: (job: Job) => Job | undefined,
  runJob: (job: Job) => Promise<void>,
): Promise<void> {
  const pending = [...jobs];
  const done = new Set<string>();
  const running = new Map<string, Promise<void>>();
  const ready = (j: Job) => { const a = after(j); return !a || done.has(key(a)); };
  const worker = async () => {
    while (pending.length > 0) {
      const i = pending.findIndex(ready);
      if (i < 0) {
        if (running.size === 0) throw new Error(`runPool: ${pending.length} jobs wait on jobs that never ran`);
        // a failed job counts as finished here; its own worker reports the failure
        await Promise.race([...running.values()].map((p) => p.catch(() => {})));
        continue;
      }
      const [job] = pending.splice(i, 1);
      const p = runJob(job).finally(() => { done.add(key(job)); running.delete(key(job)); });
      running.set(key(job), p);
      await p;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, workers) }, worker));
}

/** The `n` longest entries, longest first. */
export function slowest<T extends { ms: number }>(times: readonly T[], n: number): T[] {
  return [...times].sort((a, b) => b.ms - a.ms).slice(0, n);
}
