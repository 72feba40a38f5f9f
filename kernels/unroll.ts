/** `n` lines of `f(j)` for j = 0..n−1: the portable forward's per-thread register arrays are unrolled into named
 * variables (s0, s1, …, a0, a1, …) so that no compiler ever spills them to local memory through a dynamic index. */
export function unroll(n: number, f: (j: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, j) => f(j)).join(sep);
}
