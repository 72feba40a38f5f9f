// Dev tool for lib/runtime/ROBUSTNESS.md (session 9, HR): instruments every runtime-sized storage array index of each
// shader that has the `err` binding — an index at or past arrayLength sets bit 30 of err[0] (the executor then throws the
// plan's typed error) and reads / writes element 0. Use it from a wrapper test file that imports it first, then a suite:
//   import "../bench/oob_instrument.ts"; import "./kernels/flex_forward.test.ts";
// and run that file with FLEX_ROBUSTNESS=off FLEX_WEBGPU=dawn deno test -A --no-check <wrapper>.
import { dawnSource } from "../lib/runtime/providers.ts";

const BIT = "0x40000000u";
export const stats = { modules: 0, instrumented: 0, sites: 0 };

function matching(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === "[") depth++;
    else if (s[i] === "]") { depth--; if (depth === 0) return i; }
  }
  return -1;
}

export function instrument(code: string): string {
  stats.modules++;
  if (code.includes("fn flex_oob(")) return code;
  if (!/var<storage,\s*read_write>\s+err\s*:\s*array<atomic<u32>>/.test(code)) return code;
  const names = [...code.matchAll(/var<storage(?:,\s*\w+)?>\s+(\w+)\s*:\s*array<([^;]*)>\s*;/g)]
    .filter((m) => m[1] !== "err" && !/,\s*\d+u?\s*$/.test(m[2])).map((m) => m[1]);
  if (!names.length) return code;
  const re = new RegExp(`(?<![\\w.])(${names.join("|")})\\s*\\[`, "g");
  const rewrite = (s: string): string => {
    let out = "", pos = 0;
    re.lastIndex = 0;
    for (;;) {
      re.lastIndex = pos;
      const m = re.exec(s);
      if (!m) break;
      const open = m.index + m[0].length - 1, close = matching(s, open);
      if (close < 0) break;
      const inner = rewrite(s.slice(open + 1, close));
      out += s.slice(pos, m.index) + `${m[1]}[flex_oob(u32(${inner}), arrayLength(&${m[1]}))]`;
      stats.sites++;
      pos = close + 1;
    }
    return out + s.slice(pos);
  };
  // leave the declarations alone: rewrite line by line, skipping `var<storage` lines
  const body = code.split("\n").map((l) => l.includes("var<storage") ? l : rewrite(l)).join("\n");
  stats.instrumented++;
  return `${body}\nfn flex_oob(i: u32, n: u32) -> u32 { if (i >= n) { atomicOr(&err[0], ${BIT}); return 0u; } return i; }\n`;
}

const gpu = await dawnSource().load();
const adapter = (await gpu.requestAdapter())!;
const tmp = await adapter.requestDevice();
export const proto = Object.getPrototypeOf(tmp);
const orig = proto.createShaderModule;
proto.createShaderModule = function (this: GPUDevice, d: GPUShaderModuleDescriptor) {
  return orig.call(this, { ...d, code: instrument(d.code) });
};
tmp.destroy();
globalThis.addEventListener?.("unload", () => console.error(`[oob] ${JSON.stringify(stats)}`));
