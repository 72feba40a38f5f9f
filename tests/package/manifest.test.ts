/** The pinned versions agree: deno.json's import map, package.json (Bun/Node development) and Dawn's npm: specifier. */
import { describe, expect, it } from "../harness.ts";
import { DAWN_NPM_SPECIFIER } from "../../lib/runtime/providers.ts";
import deno from "../../deno.json" with { type: "json" };
import pkg from "../../package.json" with { type: "json" };

describe("package manifests", () => {
  it("deno.json, package.json and the Dawn specifier pin the same runtime dependency versions", () => {
    const imports: Record<string, string> = deno.imports, deps: Record<string, string> = pkg.dependencies;
    expect(imports.webgpu).toBe(DAWN_NPM_SPECIFIER);
    for (const dep of ["effect", "webgpu"]) expect(`npm:${dep}@${deps[dep]}`).toBe(imports[dep]);
    expect(deno.license).toBe("MIT");
    expect(deno.exports["."]).toBe("./mod.ts");
  });
});
