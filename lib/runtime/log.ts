/**
 * `FLEX_LOG=info|debug` (default off): what the runtime decides, one line each on stderr.
 *   info:  the provider chosen and why (and each one passed over), kernel builds with their compile time,
 *          autotune winners;
 *   debug: also pipeline-cache hits and each autotune candidate's time.
 * `setLogLevel` overrides the variable (undefined: back to FLEX_LOG); `setLogSink` redirects the lines (tests).
 * Messages may be thunks, so a debug line costs nothing while the level is lower.
 */
import { readEnv } from "./env.ts";

/**
 * How much the library logs: nothing, provider choice and kernel builds (`info`), or everything (`debug`).
 *
 * @example
 * ```ts
 * import { type LogLevel, setLogLevel } from "@flex/attention";
 * const level: LogLevel = "info";
 * setLogLevel(level); // as FLEX_LOG=info
 * ```
 */
export type LogLevel = "off" | "info" | "debug";
const RANK: Record<LogLevel, number> = { off: 0, info: 1, debug: 2 };

let forced: LogLevel | undefined;
let fromEnv: LogLevel | undefined;
let sink: ((line: string) => void) | undefined;

function envLevel(): LogLevel {
  if (fromEnv !== undefined) return fromEnv;
  const raw = (readEnv("FLEX_LOG") ?? "").trim().toLowerCase();
  if (raw === "" || raw === "0" || raw === "off" || raw === "none") fromEnv = "off";
  else if (raw === "info" || raw === "1") fromEnv = "info";
  else if (raw === "debug" || raw === "2" || raw === "trace") fromEnv = "debug";
  else {
    fromEnv = "off";
    console.error(`flex-attention: FLEX_LOG is "${raw}"; expected off, info or debug (logging stays off)`);
  }
  return fromEnv;
}

/**
 * The level in force: setLogLevel's, else FLEX_LOG's (read once).
 *
 * @example
 * ```ts
 * import { logLevel } from "@flex/attention";
 * console.log(logLevel()); // FLEX_LOG's level unless setLogLevel chose one
 * ```
 */
export function logLevel(): LogLevel { return forced ?? envLevel(); }

/**
 * Sets the level for this process; undefined returns to FLEX_LOG (read again).
 *
 * @example
 * ```ts
 * import { setLogLevel } from "@flex/attention";
 * setLogLevel("debug"); // provider choice, kernel builds, cache hits
 * setLogLevel(undefined); // back to FLEX_LOG
 * ```
 */
export function setLogLevel(level: LogLevel | undefined): void {
  forced = level;
  if (level === undefined) fromEnv = undefined;
}

/**
 * Where lines go (default: console.error, i.e. stderr); undefined restores the default.
 *
 * @example
 * ```ts
 * import { setLogLevel, setLogSink } from "@flex/attention";
 * const lines: string[] = [];
 * setLogSink((line) => lines.push(line));
 * setLogLevel("info");
 * ```
 */
export function setLogSink(fn: ((line: string) => void) | undefined): void { sink = fn; }

export function logEnabled(level: Exclude<LogLevel, "off">): boolean { return RANK[logLevel()] >= RANK[level]; }

function emit(level: Exclude<LogLevel, "off">, message: string | (() => string)): void {
  if (!logEnabled(level)) return;
  const line = `[flex ${level}] ${typeof message === "function" ? message() : message}`;
  (sink ?? ((l: string) => console.error(l)))(line);
}

export function logInfo(message: string | (() => string)): void { emit("info", message); }
export function logDebug(message: string | (() => string)): void { emit("debug", message); }

/** Milliseconds with a sensible number of digits, for log lines. */
export function ms(x: number): string { return x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(1)} ms`; }
