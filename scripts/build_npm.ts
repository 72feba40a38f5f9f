/**
 * `deno task build`: the npm package in dist/ — ESM JavaScript + .d.ts compiled by the TypeScript compiler from
 * npm (the sources import `./x.ts`; `rewriteRelativeImportExtensions` turns those into `./x.js`), and a
 * publishable package.json whose name, version and runtime dependencies come from deno.json, so the two
 * manifests cannot drift. Node 20 has no type stripping, so the package ships JavaScript only.
 *
 *   deno task build            → dist/
 *   cd dist && npm pack        → flex-attention-<version>.tgz
 */
// deno-lint-ignore no-import-prefix -- the build pins its own compiler; the library does not depend on it
import ts from "npm:typescript@6.0.3";

const root = new URL("..", import.meta.url).pathname;
const outDir = `${root}dist`;
const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
/** The packages the library imports at runtime (tests' dev dependencies stay out). */
const RUNTIME_DEPS = ["effect", "webgpu", "fast-png"] as const;

/** Node's types for the build only (the tuning cache's `node:fs`), pinned, kept outside the repo: a node_modules/@types/node
 * in the repo would change the types `deno check` sees. */
const NODE_TYPES = "@types/node@20.19.43";
const home = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
const typesDir = `${home}/flex-attention-build/${NODE_TYPES.replace(/[@/]/g, "_")}`;

async function run(cmd: string, args: string[], cwd: string, what: string): Promise<void> {
  const { code } = await new Deno.Command(cmd, { args, cwd, stdout: "inherit", stderr: "inherit" }).output();
  if (code !== 0) throw new Error(`build: ${what} failed (${cmd} ${args.join(" ")} in ${cwd}); run it by hand and retry`);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** tsc resolves `effect` and `@webgpu/types` from the repo's node_modules (as the test runner installs them) and node's types from typesDir. */
async function ensureTypes(): Promise<void> {
  if (!(await exists(`${root}node_modules/effect/package.json`)) || !(await exists(`${root}node_modules/@webgpu/types/package.json`))) {
    console.log("build: installing node_modules (bun install) for the type information of effect and WebGPU");
    await run("npx", ["-y", "bun@1.4.5", "install", "--silent"], root, "bun install");
  }
  if (!(await exists(`${typesDir}/node_modules/@types/node/package.json`))) {
    await Deno.mkdir(typesDir, { recursive: true });
    await run("npm", ["install", "--silent", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", typesDir, NODE_TYPES], typesDir, `npm install ${NODE_TYPES}`);
  }
}

function versionOf(dep: string): string {
  const spec: string | undefined = config.imports?.[dep];
  const m = spec?.match(/^npm:(?:@[^/]+\/)?[^@]+@(.+)$/);
  if (!m) throw new Error(`build: deno.json imports.${dep} should be "npm:${dep}@<version>", found ${JSON.stringify(spec)}`);
  return m[1];
}

function compile(): void {
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2025.d.ts", "lib.dom.d.ts"],
    // WebGPU's globals; node's for the `node:fs` the tuning cache imports where it exists
    types: ["@webgpu/types", "node"],
    typeRoots: [`${root}node_modules`, `${typesDir}/node_modules/@types`],
    strict: true,
    declaration: true,
    sourceMap: false,
    rewriteRelativeImportExtensions: true,
    allowImportingTsExtensions: true,
    skipLibCheck: true,
    outDir,
    rootDir: root,
    newLine: ts.NewLineKind.LineFeed,
  };
  const entries = Object.values(config.exports as Record<string, string>).map((p) => `${root}${p.replace(/^\.\//, "")}`);
  const program = ts.createProgram(entries, options);
  const result = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (diagnostics.length > 0) {
    const host = { getCanonicalFileName: (f: string) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" };
    console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, host));
    throw new Error(`build: ${diagnostics.length} TypeScript diagnostics (above)`);
  }
  referenceAugmentations(program, entries);
}

/**
 * The op registry (lib/tensor/op.ts's OpArgs) is completed by module augmentations, some in modules imported for
 * their types only (`import type {} from "./op_args.ts"`), which declaration emit drops. Each entry's .d.ts
 * references every augmenting module, so a consumer's compiler (skipLibCheck or not) sees the whole registry.
 */
function referenceAugmentations(program: ts.Program, entries: string[]): void {
  const augmenting = program.getSourceFiles()
    .filter((f) => f.fileName.startsWith(root) && !f.fileName.includes("/node_modules/") && !f.isDeclarationFile)
    .filter((f) => /^declare module ["']/m.test(f.text))
    .map((f) => f.fileName.slice(root.length).replace(/\.ts$/, ".d.ts"));
  for (const entry of entries) {
    const rel = entry.slice(root.length).replace(/\.ts$/, ".d.ts");
    const depth = rel.split("/").length - 1;
    const up = depth === 0 ? "./" : "../".repeat(depth);
    const refs = augmenting.map((a) => `/// <reference path="${up}${a}" />`).join("\n");
    const path = `${outDir}/${rel}`;
    Deno.writeTextFileSync(path, `${refs}\n${Deno.readTextFileSync(path)}`);
  }
}

function manifest(): Record<string, unknown> {
  const exports: Record<string, { types: string; import: string }> = {};
  for (const [key, path] of Object.entries(config.exports as Record<string, string>)) {
    const js = path.replace(/\.ts$/, ".js");
    exports[key] = { types: js.replace(/\.js$/, ".d.ts"), import: js };
  }
  return {
    name: config.name,
    version: config.version,
    description: "FlexAttention for JavaScript on WebGPU: score and mask mods traced to fused block-sparse kernels",
    license: config.license,
    type: "module",
    main: exports["."].import,
    types: exports["."].types,
    exports,
    files: ["**/*.js", "**/*.d.ts", "README.md", "LICENSE", "CHANGELOG.md"],
    engines: { node: ">=20" },
    keywords: ["attention", "flex-attention", "webgpu", "transformer", "gpu"],
    dependencies: Object.fromEntries(RUNTIME_DEPS.map((d) => [d, versionOf(d)])),
  };
}

await ensureTypes();
await Deno.remove(outDir, { recursive: true }).catch(() => {});
compile();
await Deno.writeTextFile(`${outDir}/package.json`, JSON.stringify(manifest(), null, 2) + "\n");
for (const f of ["README.md", "LICENSE", "CHANGELOG.md"]) await Deno.copyFile(`${root}${f}`, `${outDir}/${f}`);
console.log(`build: wrote ${outDir} (${config.name}@${config.version}); pack it with: cd dist && npm pack`);
