/**
 * The benches' timing rule in one place: profile one launch (it also compiles), then, since a compile leaves the
 * GPU idle and an idle GPU drops its clocks (the H200: 1980 → 345 MHz within a second), ≥ warmMs of back-to-back
 * launches in ONE submit (several small profiles leave the GPU idle between them), then the best of `reps`
 * profiles of n launches (n from targetMs, at most maxN; fewer profiles where rowMs caps the row). A launch longer
 * than warmMs warms the clocks by itself.
 */
export interface WarmBest {
  readonly warmMs: number;
  /** Most launches of the warm-up submit. */
  readonly maxWarm: number;
  readonly maxN: number;
  readonly targetMs: number;
  readonly reps: number;
  /** Time cap of a row's profiles (default: none). */
  readonly rowMs?: number;
}

/** GPU ms of one launch of `roots` under `profile(roots, n)` (ms per launch of n back to back). */
export async function warmBest<R>(profile: (roots: R, n: number) => Promise<number>, roots: R, o: WarmBest): Promise<number> {
  const one = await profile(roots, 1);
  if (one < o.warmMs) await profile(roots, Math.min(o.maxWarm, Math.ceil(o.warmMs / Math.max(one, 1e-3))));
  const n = Math.max(1, Math.min(o.maxN, Math.ceil(o.targetMs / one)));
  const r = Math.max(1, Math.min(o.reps, Math.floor((o.rowMs ?? Infinity) / (n * one))));
  let min = Infinity;
  for (let i = 0; i < r; i++) min = Math.min(min, await profile(roots, n));
  return min;
}

/** The benches' default for the executor's FLEX_PROFILE_WARM_MS: every timed submit opens with 100 ms of the same
 * launches unless the variable is set (an idle H200 drops its clocks within ~0.1 s, and a profile's first tenth of a
 * second otherwise ran 1.5–2.6× slow: session 7). */
export function warmProfilesByDefault(): void {
  if (Deno.env.get("FLEX_PROFILE_WARM_MS") === undefined) Deno.env.set("FLEX_PROFILE_WARM_MS", "100");
}
