/**
 * Environment variables under Deno, Bun and Node; undefined where there is no environment or no permission.
 * Under Deno without `--allow-env` the FLEX_* settings cannot be read: the first attempt prints one warning
 * naming the flag (instead of ignoring a FLEX_WEBGPU=cpu silently), and no permission prompt is raised.
 */
// deno-lint-ignore no-explicit-any
const g = globalThis as any;

let warned = false;

function warnNoPermission(name: string): void {
  if (warned) return;
  warned = true;
  console.error(
    `flex-attention: no permission to read environment variables (${name} and the other FLEX_* settings are ignored); ` +
      `run Deno with --allow-env (or --allow-env=FLEX_WEBGPU,FLEX_LOG) to use them`,
  );
}

/** Whether Deno may read `name` without prompting; undefined outside Deno or where permissions cannot be queried. */
function denoMayRead(name: string): boolean | undefined {
  try {
    const state = g.Deno?.permissions?.querySync?.({ name: "env", variable: name })?.state;
    return state === undefined ? undefined : state === "granted";
  } catch {
    return undefined;
  }
}

export function readEnv(name: string): string | undefined {
  if (g.Deno?.env) {
    if (denoMayRead(name) === false) { warnNoPermission(name); return undefined; }
    try {
      return g.Deno.env.get(name) ?? undefined;
    } catch {
      warnNoPermission(name);
      return undefined;
    }
  }
  try {
    return g.process?.env?.[name] ?? undefined;
  } catch {
    return undefined;
  }
}
