/**
 * `deno task test`: the whole suite three times — Deno with Dawn, Deno with its built-in WebGPU, Bun with
 * Dawn — then one line per pass, the slowest files, and the plain closing line `N passed, N failed[, N skipped]`.
 * Child output is streamed (it is the CI log) minus known harmless driver noise. Exit 1 on any failure
 * or a pass that crashed (no summary, or a non-zero exit without failed tests).
 */
import { type Counts, isSignalExit, parseBun, parseDeno, reportPrecedesAbort, stripAnsi } from "./run_log.ts";
import { type Job, runPool, slowest } from "./run_schedule.ts";

export { isSignalExit, parseBun, parseDeno, reportPrecedesAbort };

interface Pass {
  readonly label: string;
  readonly command: readonly string[];
  readonly provider: string;
  readonly parse: (log: string) => Counts | undefined;
  /** Extra environment of this pass's processes. */
  readonly env?: Readonly<Record<string, string>>;
}

// Dawn on lavapipe warns that dynamic-buffer limits were reduced; Deno warns that npm:webgpu's postinstall
// did not run (the addon ships prebuilt). Both are harmless and would bury the test output.
const NOISE = [/artificially reduced from/, /Ignored build scripts for packages/, /npm:webgpu@/, /Lifecycle scripts are only supported/,
  /Enable it in your deno config file/, /"nodeModulesDir": "auto"/, /^\s*[╭│╰]/];

async function commandOutput(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return r.success ? new TextDecoder().decode(r.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Bun's binary: on PATH, else the one npx installs — resolved once (npx costs ~1 s a call, 70 calls a pass). */
async function bunCommand(): Promise<string[]> {
  if (await commandOutput("bun", ["--version"]) !== undefined) return ["bun"];
  const exe = await commandOutput("npx", ["-y", "bun@1.4.5", "-e", "console.log(process.execPath)"]);
  return exe ? [exe] : ["npx", "-y", "bun@1.4.5"];
}

/** Copies a child stream to ours line by line, dropping noise; returns everything it read. */
async function pump(stream: ReadableStream<Uint8Array>, out: { writeSync(p: Uint8Array): number }, prefix = ""): Promise<string> {
  const enc = new TextEncoder();
  let all = "", pending = "";
  const emit = (line: string) => {
    if (!NOISE.some((re) => re.test(stripAnsi(line)))) out.writeSync(enc.encode(prefix + line + "\n"));
  };
  // typed through unknown: where a test file imports node:*, @types/node's TextDecoderStream joins Deno's and they disagree
  const decoder = new TextDecoderStream() as unknown as ReadableWritablePair<string, Uint8Array>;
  for await (const chunk of stream.pipeThrough(decoder)) {
    all += chunk;
    const lines = (pending + chunk).split("\n");
    pending = lines.pop()!;
    lines.forEach(emit);
  }
  if (pending) emit(pending);
  return all;
}

async function run(command: readonly string[], env: Record<string, string>, prefix = ""): Promise<{ code: number; log: string }> {
  const child = new Deno.Command(command[0], { args: command.slice(1), env, stdout: "piped", stderr: "piped" }).spawn();
  const [out, err, status] = await Promise.all([
    pump(child.stdout, Deno.stdout, prefix), pump(child.stderr, Deno.stderr, prefix), child.status,
  ]);
  return { code: status.code, log: out + "\n" + err };
}

// LP_NUM_THREADS=1: lavapipe's worker threads contend with Dawn's and Deno's on a 2-core machine and single
// realizes then stall for minutes; one rasterizer thread keeps the suite predictable (no effect on real GPUs).
const env = {
  XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") || "/tmp",
  LP_NUM_THREADS: Deno.env.get("LP_NUM_THREADS") || "1",
  NO_COLOR: "1",
};

/** Every `*.test.ts` under `paths` (files or folders), sorted. */
async function testFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string) => {
    const st = await Deno.stat(p);
    if (st.isFile) { if (p.endsWith(".test.ts")) out.push(p); return; }
    for await (const e of Deno.readDir(p)) await walk(`${p.replace(/\/$/, "")}/${e.name}`);
  };
  for (const p of paths) await walk(p);
  return out.sort();
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** `deno task test [paths…]`: the given test paths, default the whole suite. */
async function main(paths: readonly string[]): Promise<number> {
  const t0 = performance.now();
  const bun = await bunCommand();
  // `deno` itself may come from npx in CI: use the binary running this script
  const denoBin = Deno.execPath();
  const files = await testFiles(paths);
  // One type-check of every test file in one program (~10 s), then the Deno children run with --no-check: each
  // `deno test <file>` would otherwise check its own graph again (3–5 s a file, ~80 checks in a cold run).
  console.log(`\n=== type-check: deno check ${files.length} test files`);
  const check = await run([denoBin, "check", ...files], env);
  // a type error is one failure; the tests still run (--no-check), so it does not hide their results
  const checkFailed = check.code !== 0;
  const passes: Pass[] = [
    { label: "deno/dawn", provider: "dawn", command: [denoBin, "test", "-A", "--no-check"], parse: parseDeno },
    // DENO_WEBGPU_BACKEND=vulkan: Deno's wgpu otherwise also opens its GL backend through libglvnd's EGL, whose exit
    // teardown races `deno test`'s file thread (a double free, ~1 % of files; scripts/NATIVE_EXIT.md): the same
    // lavapipe Vulkan adapter without it. A value already set is kept.
    { label: "deno/native", provider: "native", command: [denoBin, "test", "-A", "--no-check"], parse: parseDeno,
      env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") || "vulkan" } },
    { label: "bun/dawn", provider: "dawn", command: [...bun, "test"], parse: parseBun },
  ];
  if (passes.some((p) => p.label.startsWith("bun"))) {
    const install = await run([...bun, "install", "--silent"], env);
    if (install.code !== 0) console.error(`bun install failed (exit ${install.code})`);
  }
  // On lavapipe the suite's cost is compiling shaders (LLVM, one core each), so the (pass, file) jobs run on a
  // pool of workers, one per core: both cores stay busy to the end, where passes side by side left one idle
  // once the shorter pass was done. Deno's two providers compile different SPIR-V (Dawn's vs wgpu's) and may run
  // at once; a Bun/Dawn job waits until Deno/Dawn ran the same file, then finds its shaders in Mesa's disk cache.
  // FLEX_TEST_JOBS=n sets the pool size; FLEX_TEST_SERIAL=1 runs everything on one worker, pass after pass.
  const serial = Deno.env.get("FLEX_TEST_SERIAL") === "1";
  const workers = serial ? 1 : Math.max(1, Number(Deno.env.get("FLEX_TEST_JOBS")) || 2);
  const jobs: Job[] = serial
    ? passes.flatMap((_p, pi) => files.map((file) => ({ pass: pi, file })))
    : [...files.flatMap((file) => [{ pass: 0, file }, { pass: 1, file }]), ...files.map((file) => ({ pass: 2, file }))];
  // a Bun/Dawn job needs its file's Deno/Dawn job done (the shaders it will find cached)
  const after = (j: Job) => j.pass === 2 ? { pass: 0, file: j.file } : undefined;
  for (const p of passes) {
    console.log(`=== ${p.label}: FLEX_WEBGPU=${p.provider} ${p.command.join(" ")} <file>, for ${files.length} files` +
      (workers > 1 ? ` (lines prefixed "[${p.label}]")` : ""));
  }
  console.log(`=== ${jobs.length} jobs on ${workers} worker${workers > 1 ? "s" : ""}\n`);

  const sums: Counts[] = passes.map(() => ({ passed: 0, failed: 0, skipped: 0 }));
  const problems: string[][] = passes.map(() => []);
  const crashedFiles = passes.map(() => 0);
  const tails: string[] = [];
  const times: { label: string; file: string; ms: number }[] = [];

  const runJob = async (job: Job) => {
    const pass = passes[job.pass], file = job.file;
    const prefix = workers > 1 ? `[${pass.label}] ` : "";
    const start = performance.now();
    const once = async () => {
      const { code, log } = await run([...pass.command, file], { ...env, ...pass.env, FLEX_WEBGPU: pass.provider }, prefix);
      const counts = pass.parse(log);
      // A process killed by a signal AFTER its runner printed the complete report (every test ran, none
      // failed) died in teardown, below our code: the report is the result, counted from it and named in the
      // pass line, never hidden. (The known case, libglvnd's EGL exit race under Deno's built-in WebGPU, is
      // avoided above; one seen now is a new defect: the summary says so.)
      if (counts && counts.failed === 0 && isSignalExit(code) && reportPrecedesAbort(log)) {
        problems[job.pass].push(`${file}: exit ${code} in teardown after its complete passing report (counted from the report; a NEW teardown defect — the known EGL race is avoided)`);
        tails.push(`${pass.label} ${file} (exit ${code}, after a complete passing report):\n` + stripAnsi(log).trim().split("\n").slice(-6).join("\n"));
        return { code, counts, crashed: false };
      }
      const crashed = !counts || (code !== 0 && counts.failed === 0);
      // the crash's own words (a panic, glibc's heap check, LLVM) end the log: keep them for the summary
      if (crashed) tails.push(`${pass.label} ${file} (exit ${code}):\n` + stripAnsi(log).trim().split("\n").slice(-12).join("\n"));
      return { code, counts, crashed };
    };
    let r = await once();
    if (r.crashed) {
      // Deno's built-in WebGPU has been seen to abort (exit 134) while tearing down after a file's tests all
      // passed; such a file is run once more, and the first exit is reported in the pass line either way.
      problems[job.pass].push(`${file} exited ${r.code} and was run again`);
      r = await once();
      if (r.crashed) problems[job.pass].push(`${file} crashed again (exit ${r.code})`);
    }
    const s = sums[job.pass];
    if (r.counts) { s.passed += r.counts.passed; s.failed += r.counts.failed; s.skipped += r.counts.skipped; }
    if (r.crashed) crashedFiles[job.pass]++;
    const ms = performance.now() - start;
    times.push({ label: pass.label, file, ms });
    console.log(`${prefix}--- ${prefix ? "" : `${pass.label} `}${file}: ${seconds(ms)} wall`);
  };

  await runPool(jobs, workers, after, runJob);

  const total: Counts = { passed: 0, failed: checkFailed ? 1 : 0, skipped: 0 };
  const lines = passes.map((pass, i) => {
    const sum = sums[i];
    total.passed += sum.passed; total.failed += sum.failed; total.skipped += sum.skipped;
    const ms = times.filter((t) => t.label === pass.label).reduce((a, t) => a + t.ms, 0);
    return `${pass.label}: ${sum.passed} passed, ${sum.failed} failed, ${sum.skipped} skipped (${seconds(ms)} of file time)` +
      (problems[i].length ? ` — ${problems[i].join("; ")}` : "");
  });
  const crashed = crashedFiles.some((n) => n > 0);
  if (tails.length) console.log("\n--- last lines of each crashed process ---\n" + tails.join("\n\n"));
  console.log("\nslowest files (wall, their process included):");
  for (const t of slowest(times, 12)) console.log(`  ${seconds(t.ms).padStart(8)}  ${t.label.padEnd(11)} ${t.file}`);
  const report = Deno.env.get("FLEX_TEST_TIMES");
  if (report) await Deno.writeTextFile(report, JSON.stringify(times, null, 1) + "\n");
  console.log(`suite wall time ${seconds(performance.now() - t0)} on ${workers} worker${workers > 1 ? "s" : ""}`);
  if (checkFailed) lines.unshift(`type-check: FAILED (deno check exit ${check.code}; its errors are above "=== deno/dawn")`);
  console.log("\n" + lines.join("\n"));
  console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ""}`);
  return total.failed > 0 || crashed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args.length > 0 ? Deno.args : ["tests/"]));
