/**
 * kernels/flex_forward_tensor_pipe.ts EXP2_FMA_FN (the tensor forward's `expForm: "split"` probe): 2^x on the FMA
 * units must stay within its polynomial's 7.5e-5 relative error over the softmax's range, on the device's own
 * compiler (Mesa folded an earlier form's (x + c) − c to x: every result was off by up to 41 %), with the output
 * poisoned first; and the knob must only change how the exponentials are computed.
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import { gpu, skipReason } from "./device.ts";
import { dispatchOnce } from "./raw_dispatch.ts";
import { EXP2_FMA_FN } from "../../kernels/flex_forward_tensor_pipe.ts";
import { type FlexTensorConfig, flexForwardTensorWgsl } from "../../kernels/flex_forward_tensor.ts";

const N = 4096;

async function exp2OnDevice(xs: Float32Array): Promise<Float32Array> {
  const device = gpu.device;
  // the two shift constants from selects on the buffers' lengths, as the kernel takes them from uniforms
  const code = `${EXP2_FMA_FN}
@group(0) @binding(0) var<storage, read> xin: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> yout: array<vec4<f32>>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let magic = vec2<f32>(select(12582912.0, 0.0, arrayLength(&xin) == 7u), select(12582912.0, 1.0, arrayLength(&yout) == 7u));
  yout[g.x] = exp2_fma(xin[g.x], magic);
}`;
  const poison = new Float32Array(xs.length).fill(NaN);
  return new Float32Array(await dispatchOnce(device, code, [{ data: xs }, { data: poison }], 1, [xs.length / 4 / 64]));
}

describe("exp2_fma (expForm split)", () => {
  const run = it.skipIf(skipReason);

  run("2^x within 7.5e-5 relative over [−60, 15], random and at the rounding edges", async () => {
    const xs = new Float32Array(N);
    for (let i = 0; i < N; i++) xs[i] = i < 64 ? -20 + i * 0.5 + (i % 2 ? 0.4999 : -0.5) : -60 + Math.random() * 75;
    const ys = await exp2OnDevice(xs);
    let worst = 0;
    for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(ys[i] / 2 ** xs[i] - 1));
    expect(worst).toBeLessThan(7.6e-5);
  });

  run("far below the range: a tiny non-negative value, never a wrapped exponent", async () => {
    const xs = new Float32Array(N).map((_, i) => -1000 + i * 0.2);
    const ys = await exp2OnDevice(xs);
    for (const y of ys) {
      expect(Number.isFinite(y)).toBe(true);
      expect(y >= 0 && y < 2 ** -100).toBe(true);
    }
  });
});

describe("expForm in the generated forward", () => {
  const cfg: FlexTensorConfig = {
    family: "tensor", D: 64, Dv: 64, BM: 128, BN: 16, subgroups: 8, emulate: true, identityScore: true, subgroupSize: 32, outF16: true,
    kvPipe: true, kvSingle: true, compactSmem: true, sTransposed: true, pTransposed: true, optimisticMax: true,
  };
  const hooks = { preamble: "", scoreMod: "", maskMod: "fn mask_mod(b: u32, h: u32, q: u32, kv: u32) -> bool { return true; }" };
  it("split: the polynomial on the odd column groups only; mufu and unset: none", () => {
    // deno-lint-ignore no-explicit-any
    const gen = (c: FlexTensorConfig) => flexForwardTensorWgsl(c, hooks as any);
    const split = gen({ ...cfg, expForm: "split" });
    expect((split.match(/exp2_fma\(x1 - m_ref, exp_magic\)/g) ?? []).length).toBe(1);
    expect(split.includes("exp2_fma(x0")).toBe(false);
    expect(gen(cfg).includes("exp2_fma")).toBe(false);
    expect(gen({ ...cfg, expForm: "mufu" })).toBe(gen(cfg));
  });
});

releaseGpuAfterAll();
