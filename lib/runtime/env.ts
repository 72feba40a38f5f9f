/** Reads an environment variable under Deno, Bun or Node; undefined where there is no environment or no permission. */
export function readEnv(name: string): string | undefined {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  try {
    if (g.Deno?.env) return g.Deno.env.get(name) ?? undefined;
    if (g.process?.env) return g.process.env[name] ?? undefined;
  } catch { /* no --allow-env: behave as unset */ }
  return undefined;
}
