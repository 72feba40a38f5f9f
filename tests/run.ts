/**
 * `deno task test`: the whole suite three times — Deno with Dawn, Deno with its built-in WebGPU, Bun with
 * Dawn — then one line per pass and the plain closing line `N passed, N failed[, N skipped]`.
 * Child output is streamed (it is the CI log) minus known harmless driver noise. Exit 1 on any failure
 * or a pass that crashed (no summary, or a non-zero exit without failed tests).
 */
import { type Counts, isSignalExit, parseBun, parseDeno, reportPrecedesAbort, stripAnsi } from "./run_log.ts";

export { isSignalExit, parseBun, parseDeno, reportPrecedesAbort };

interface Pass {
  readonly label: string;
  readonly command: readonly string[];
  readonly provider: string;
  readonly parse: (log: string) => Counts | undefined;
}


// Dawn on lavapipe warns that dynamic-buffer limits were reduced; Deno warns that npm:webgpu's postinstall
// did not run (the addon ships prebuilt). Both are harmless and would bury the test output.
const NOISE = [/artificially reduced from/, /Ignored build scripts for packages/, /npm:webgpu@/, /Lifecycle scripts are only supported/,
  /Enable it in your deno config file/, /"nodeModulesDir": "auto"/, /^\s*[╭│╰]/];





async function commandWorks(cmd: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

async function bunCommand(): Promise<string[]> {
  return await commandWorks("bun", ["--version"]) ? ["bun"] : ["npx", "-y", "bun@1.4.5"];
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



/** `deno task test [paths…]`: the given test paths, default the whole suite. */
async function main(paths: readonly string[]): Promise<number> {
  const bun = await bunCommand();
  const passes: Pass[] = [
    { label: "deno/dawn", provider: "dawn", command: ["deno", "test", "-A"], parse: parseDeno },
    { label: "deno/native", provider: "native", command: ["deno", "test", "-A"], parse: parseDeno },
    { label: "bun/dawn", provider: "dawn", command: [...bun, "test"], parse: parseBun },
  ];
  // On lavapipe the suite's cost is compiling shaders (LLVM, one core each). The two Deno passes compile
  // different SPIR-V (Dawn's vs wgpu's), so they run side by side, one per core; Bun then runs on Dawn and
  // finds Dawn's shaders in Mesa's disk cache. FLEX_TEST_SERIAL=1 runs the passes one after the other.
  const serial = Deno.env.get("FLEX_TEST_SERIAL") === "1";
  const waves: Pass[][] = serial ? passes.map((p) => [p]) : [[passes[0], passes[1]], [passes[2]]];
  // `deno` itself may come from npx in CI: use the binary running this script
  const denoBin = Deno.execPath();
  const lines: string[] = [];
  const total: Counts = { passed: 0, failed: 0, skipped: 0 };
  let crashed = false;
  // Each test FILE runs in its own process: lavapipe's LLVM JIT gets slower with every shader a process has
  // compiled (a kernel that compiles in ~10 s alone took minutes late in a one-process run of the suite).
  const files = await testFiles(paths);
  const runPass = async (pass: Pass, prefix: string) => {
    const base = pass.command[0] === "deno" ? [denoBin, ...pass.command.slice(1)] : [...pass.command];
    if (pass.label.startsWith("bun")) {
      const install = await run([...bun, "install", "--silent"], env);
      if (install.code !== 0) console.error(`bun install failed (exit ${install.code})`);
    }
    console.log(`\n=== ${pass.label}: FLEX_WEBGPU=${pass.provider} ${base.join(" ")} <file>, for ${files.length} files` +
      `${prefix ? ` (lines prefixed "${prefix.trim()}")` : ""}\n`);
    const sum: Counts = { passed: 0, failed: 0, skipped: 0 };
    const problems: string[] = [];
    let crashedFiles = 0;
    for (const file of files) {
      const once = async () => {
        const { code, log } = await run([...base, file], { ...env, FLEX_WEBGPU: pass.provider }, prefix);
        const counts = pass.parse(log);
        // A process killed by a signal AFTER its runner printed the complete report (every test ran, none
        // failed) died in teardown, below our code (Deno's built-in WebGPU: glibc "double free or corruption"
        // at exit): the report is the result. Counted from it and named in the pass line, never hidden.
        if (counts && counts.failed === 0 && isSignalExit(code) && reportPrecedesAbort(log)) {
          problems.push(`${file}: exit ${code} in teardown after its complete passing report (counted from the report)`);
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
        problems.push(`${file} exited ${r.code} and was run again`);
        r = await once();
        if (r.crashed) problems.push(`${file} crashed again (exit ${r.code})`);
      }
      if (r.counts) { sum.passed += r.counts.passed; sum.failed += r.counts.failed; sum.skipped += r.counts.skipped; }
      if (r.crashed) crashedFiles++;
    }
    return { sum, problems, crashedFiles };
  };
  const tails: string[] = [];
  const results: { pass: Pass; sum: Counts; problems: string[]; crashedFiles: number }[] = [];
  for (const wave of waves) {
    const done = await Promise.all(wave.map((pass) => runPass(pass, wave.length > 1 ? `[${pass.label}] ` : "")));
    wave.forEach((pass, i) => results.push({ pass, ...done[i] }));
  }
  for (const { pass, sum, problems, crashedFiles } of results) {
    total.passed += sum.passed; total.failed += sum.failed; total.skipped += sum.skipped;
    if (crashedFiles > 0) crashed = true;
    lines.push(`${pass.label}: ${sum.passed} passed, ${sum.failed} failed, ${sum.skipped} skipped` +
      (problems.length ? ` — ${problems.join("; ")}` : ""));
  }
  if (tails.length) console.log("\n--- last lines of each crashed process ---\n" + tails.join("\n\n"));
  console.log("\n" + lines.join("\n"));
  console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ""}`);
  return total.failed > 0 || crashed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args.length > 0 ? Deno.args : ["tests/"]));
