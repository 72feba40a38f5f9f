/**
 * FLEX_LOG (lib/runtime/log.ts): the levels gate the lines (and the message thunks), FLEX_LOG is read when
 * no level is set in code, a real GPU realize logs its kernel builds and then its pipeline-cache hits.
 * The progress bar (lib/runtime/progress.ts): what it draws, and that it stays silent when stderr is piped.
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import { describe, expect, it, runtime } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { logDebug, logInfo, logLevel, setLogLevel, setLogSink } from "../../lib/runtime/log.ts";
import { progress, setProgressWriter } from "../../lib/runtime/progress.ts";
import { deviceInfo } from "../../lib/runtime/mod.ts";
import { add } from "../../lib/tensor/ops.ts";
import { randn } from "../../lib/tensor/tensor.ts";

const onCpu = (await deviceInfo()).provider === "cpu";

function capture(level: "off" | "info" | "debug" | undefined): { lines: string[]; stop: () => void } {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  setLogLevel(level);
  return { lines, stop: () => { setLogSink(undefined); setLogLevel(undefined); } };
}

function setEnv(name: string, value: string | undefined): void {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g.Deno?.env) value === undefined ? g.Deno.env.delete(name) : g.Deno.env.set(name, value);
  else if (value === undefined) delete g.process.env[name];
  else g.process.env[name] = value;
}

describe("FLEX_LOG", () => {
  it("off logs nothing and never builds a message; info logs info only; debug logs both", () => {
    let built = 0;
    const msg = () => { built++; return "expensive"; };
    const off = capture("off");
    try { logInfo(msg); logDebug(msg); } finally { off.stop(); }
    expect(off.lines).toEqual([]);
    expect(built).toBe(0);
    const info = capture("info");
    try { logInfo("provider: x"); logDebug(msg); } finally { info.stop(); }
    expect(info.lines).toEqual(["[flex info] provider: x"]);
    expect(built).toBe(0);
    const debug = capture("debug");
    try { logInfo("a"); logDebug(msg); } finally { debug.stop(); }
    expect(debug.lines).toEqual(["[flex info] a", "[flex debug] expensive"]);
    expect(built).toBe(1);
  });

  it("reads FLEX_LOG when no level is set in code", () => {
    const before = (globalThis as { process?: { env: Record<string, string> } }).process?.env.FLEX_LOG;
    try {
      setEnv("FLEX_LOG", "debug");
      setLogLevel(undefined);
      expect(logLevel()).toBe("debug");
      setEnv("FLEX_LOG", "info");
      setLogLevel(undefined);
      expect(logLevel()).toBe("info");
      setLogLevel("off"); // code wins over the variable
      expect(logLevel()).toBe("off");
    } finally {
      setEnv("FLEX_LOG", before);
      setLogLevel(undefined);
    }
  });

  it.skipIf(onCpu && "the CPU executor builds no kernels")("a GPU realize logs its kernel builds, then pipeline-cache hits", async () => {
    const x = randn([3, 77], { seed: 11 }), y = randn([3, 77], { seed: 12 });
    const log = capture("debug");
    try {
      await add(x, y).toArray();
      await add(x, y).toArray();
    } finally {
      log.stop();
    }
    const built = log.lines.filter((l) => l.startsWith("[flex info] kernel built:"));
    expect(built.length).toBeGreaterThan(0);
    expect(built[0]).toMatch(/ in \d+(\.\d)? ms$/);
    expect(log.lines.some((l) => l.startsWith("[flex debug] pipeline cache hit:"))).toBe(true);
  });
});

describe("progress bar", () => {
  it("draws count, bar and label in place and ends with one newline", () => {
    const out: string[] = [];
    setProgressWriter((t) => out.push(t));
    try {
      const bar = progress("demo", 3);
      bar.tick("causal");
      bar.tick();
      bar.tick("alibi");
      bar.done(); // already ended at 3/3: no second newline
    } finally {
      setProgressWriter(undefined);
    }
    expect(out[0]).toContain("[flex demo]");
    expect(out[0]).toContain("0/3");
    expect(out[1]).toContain("[flex demo] causal ▕");
    expect(out[1]).toContain("1/3");
    expect(out[3]).toContain("alibi ▕████████████████████▏ 3/3");
    expect(out.every((t, i) => i === out.length - 1 ? t === "\n" : t.startsWith("\r"))).toBe(true);
    expect(out.filter((t) => t === "\n").length).toBe(1);
  });

  it("is silent when stderr is not a terminal", () => {
    const mod = new URL("../../lib/runtime/progress.ts", import.meta.url).href;
    const code = `import { progress } from ${JSON.stringify(mod)};\nconst b = progress("x", 2); b.tick(); b.tick(); console.log("done");`;
    // the same runtime in a child whose stderr is a pipe (Deno: `deno eval`, Bun: `bun -e`)
    const args = runtime === "deno" ? ["eval", "--no-config", code] : ["-e", code];
    const r = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
    expect(r.stdout.trim()).toBe("done");
    expect(r.stderr).toBe("");
  });
});

releaseGpuAfterAll();
