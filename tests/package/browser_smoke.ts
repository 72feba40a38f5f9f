/**
 * Browser smoke test (run by .ci/run, not by `deno task test`): bundles examples/browser, serves it, opens it in
 * headless Chromium and waits for the page to POST its result; then recomputes the same seeded example here on
 * the float64 CPU executor and compares the page's numbers with it. Chromium is tried first with WebGPU on
 * (software Vulkan paths), then plainly; the page runs on navigator.gpu when it finds an adapter, else on the
 * CPU executor — the last line says which.
 *
 *   deno run -A tests/package/browser_smoke.ts        (CHROMIUM=/path/to/chromium to pick the binary)
 */
import { createCpuExecutor, runPromise } from "../../effect.ts";
import { buildExample, maxAbsError, TOLERANCE } from "../../examples/browser/example.ts";

const root = new URL("../../", import.meta.url).pathname;
const pageDir = `${root}examples/browser`;
const chromium = Deno.env.get("CHROMIUM") ?? "chromium";
const TIMEOUT_MS = 120_000;

/**
 * Flag sets, most GPU-capable first: Chromium's WebGPU over the system Vulkan (lavapipe in CI) and over its
 * bundled SwiftShader, with the page forcing the browser's WebGPU (`provider=native`: auto mode would pass over
 * a software adapter); last the page's default (auto), which ends on the CPU executor without an adapter.
 */
const WEBGPU = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--ignore-gpu-blocklist"];
const ATTEMPTS: { label: string; flags: string[]; query: string }[] = [
  { label: "webgpu+vulkan", flags: [...WEBGPU, "--use-vulkan=native", "--use-angle=vulkan"], query: "&provider=native" },
  { label: "webgpu+swiftshader", flags: [...WEBGPU, "--use-webgpu-adapter=swiftshader", "--use-angle=swiftshader"], query: "&provider=native" },
  { label: "auto", flags: [], query: "" },
];

type PageResult = { ok: boolean; seed: number; provider?: string; adapter?: string; why?: string; navigatorGpu?: boolean; maxErr?: number; ms?: number; error?: string; out?: number[]; userAgent?: string };

async function bundle(): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "browser", "-o", `${pageDir}/dist/main.js`, `${pageDir}/main.ts`],
    cwd: root, stdout: "inherit", stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`deno bundle failed:\n${new TextDecoder().decode(stderr)}`);
}

const CONTENT_TYPES: Record<string, string> = { html: "text/html", js: "text/javascript", json: "application/json" };

/** Serves the page's folder; resolves `result` with the first POST to /result. */
function serve(): { port: number; result: Promise<PageResult>; close: () => Promise<void> } {
  let resolve!: (r: PageResult) => void;
  const result = new Promise<PageResult>((r) => { resolve = r; });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (req.method === "POST" && url.pathname === "/result") {
      resolve(await req.json());
      return new Response("ok");
    }
    const path = url.pathname === "/" ? "/index.html" : url.pathname;
    if (path.includes("..")) return new Response("no", { status: 400 });
    try {
      const body = await Deno.readFile(`${pageDir}${path}`);
      return new Response(body, { headers: { "content-type": CONTENT_TYPES[path.split(".").pop()!] ?? "application/octet-stream" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { port: server.addr.port, result, close: () => server.shutdown() };
}

async function chromiumVersion(): Promise<string> {
  try {
    const { stdout } = await new Deno.Command(chromium, { args: ["--version"], stdout: "piped", stderr: "null" }).output();
    return new TextDecoder().decode(stdout).trim();
  } catch {
    throw new Error(`browser smoke: "${chromium}" not found; install Debian's chromium (apt-get install chromium) or set CHROMIUM`);
  }
}

/** One Chromium run with `flags`; the page's result, or an Error after the timeout. */
async function openPage(flags: string[], query: string, seed: number): Promise<PageResult> {
  const server = serve();
  const profile = await Deno.makeTempDir({ prefix: "flex-chromium-" });
  const child = new Deno.Command(chromium, {
    args: [
      "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
      `--user-data-dir=${profile}`, ...flags, `http://127.0.0.1:${server.port}/index.html?report=1&seed=${seed}${query}`,
    ],
    stdout: "null", stderr: "piped",
  }).spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result from the page within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([server.result, timeout]);
  } finally {
    clearTimeout(timer);
    try { child.kill("SIGKILL"); } catch { /* already gone */ }
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await server.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

const version = await chromiumVersion();
await bundle();
const seed = (Math.random() * 2 ** 31) >>> 0;
const { out } = await buildExample(seed);
const [want] = await runPromise(createCpuExecutor().realize([out]));

let page: PageResult | undefined;
let used = "";
for (const attempt of ATTEMPTS) {
  const t0 = performance.now();
  const r = await openPage(attempt.flags, attempt.query, seed).catch((e): PageResult => ({ ok: false, seed, error: String(e) }));
  console.log(`browser smoke: ${attempt.label}: provider ${r.provider ?? "-"} (${r.adapter ?? r.error}; ${r.why ?? ""}), ` +
    `navigator.gpu ${r.navigatorGpu ? "present" : "absent"}, ${Math.round(performance.now() - t0)} ms`);
  if (r.out) { page = r; used = attempt.label; }
  // the first attempt whose page found a WebGPU adapter wins; otherwise keep the last result that ran
  if (r.out && r.provider !== "cpu") break;
}
if (!page) throw new Error("browser smoke: the page produced no result under any flag set (see the lines above)");

// the page's numbers against the float64 executor here, and the page's own check
const err = maxAbsError(page.out!, want);
const ok = page.ok && err <= TOLERANCE;
console.log(`browser smoke: ${version}, flags ${used}, page ran on ${page.provider === "cpu" ? "the CPU executor" : `WebGPU (${page.adapter})`}` +
  ` in ${page.ms} ms; max |err| vs float64 (recomputed in Deno) ${err.toExponential(2)}, page's own check ${page.maxErr?.toExponential(2)}` +
  ` (tol ${TOLERANCE}): ${ok ? "OK" : "FAIL"}`);
if (!ok) Deno.exit(1);
