/**
 * The persisted autotune cache: one JSON file, `flex-tune-v1.json`, with a section per (adapter, provider)
 * mapping tuning keys to winning configs, so a second process with `autotune: "max"` does no timing.
 *
 *   FLEX_TUNE_CACHE=<dir>   where the file lives (default $XDG_CACHE_HOME/flex-attention, else
 *                           ~/.cache/flex-attention)
 *   FLEX_TUNE_CACHE=off     memory only (nothing read or written)
 *
 * Where there is no file system (browsers) or no permission (Deno without --allow-read/--allow-write), the
 * cache silently stays in memory: tuning still works, it is only redone by the next process.
 */
import { readEnv } from "./env.ts";

export interface TuneStore {
  /** The file, or null when the cache is memory only. */
  readonly path: string | null;
  get(key: string): unknown;
  set(key: string, value: unknown): Promise<void>;
}

const FILE = "flex-tune-v1.json";

export function tuneCacheDir(): string | null {
  const v = readEnv("FLEX_TUNE_CACHE");
  if (v === "off") return null;
  if (v) return v;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/flex-attention`;
  const home = readEnv("HOME");
  return home ? `${home}/.cache/flex-attention` : null;
}

type Fs = typeof import("node:fs");

async function nodeFs(): Promise<Fs | null> {
  try {
    return await import("node:fs");
  } catch {
    return null;
  }
}

function readAll(fs: Fs, path: string): Record<string, Record<string, unknown>> {
  try {
    const parsed = JSON.parse(fs.readFileSync(path, "utf8"));
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {}; // missing, unreadable or corrupt: start over (it is only a cache)
  }
}

/** The store of one device section (`device` = adapter + provider). */
export async function openTuneStore(device: string): Promise<TuneStore> {
  const dir = tuneCacheDir();
  const fs = dir ? await nodeFs() : null;
  const path = dir && fs ? `${dir}/${FILE}` : null;
  const mem = new Map<string, unknown>(Object.entries(path && fs ? readAll(fs, path)[device] ?? {} : {}));
  return {
    path,
    get: (key) => mem.get(key),
    // deno-lint-ignore require-await -- the store's interface is asynchronous; this one writes synchronously
    set: async (key, value) => {
      mem.set(key, value);
      if (!path || !fs || !dir) return;
      try {
        // re-read so that concurrent processes tuning other keys are not overwritten; write atomically
        const all = readAll(fs, path);
        all[device] = { ...all[device], [key]: value };
        fs.mkdirSync(dir, { recursive: true });
        const tmp = `${path}.${Math.random().toString(36).slice(2)}.tmp`;
        fs.writeFileSync(tmp, JSON.stringify(all, null, 1));
        fs.renameSync(tmp, path);
      } catch { /* no permission: memory only */ }
    },
  };
}
