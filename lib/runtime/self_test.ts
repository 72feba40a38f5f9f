/**
 * The self-test every adapter passes before it is used: a tiny kernel with a known answer
 * (y[i] = 3·i + 1 over 1000 elements), its output poisoned first so a kernel that writes nothing fails too.
 * A driver that miscompiles or drops this is refused with SelfTestFailed.
 */
import { Effect } from "effect";
import { SelfTestFailed } from "../errors.ts";

export const SELF_TEST_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> y: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i < arrayLength(&y)) { y[i] = 3u * i + 1u; }
}`;

const N = 1000;
const POISON = 0xffffffff;

async function runKernel(device: GPUDevice): Promise<Uint32Array> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label: "flex self-test", code: SELF_TEST_WGSL });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const bytes = N * 4;
  const y = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
  new Uint32Array(y.getMappedRange()).fill(POISON);
  y.unmap();
  const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: y } }] });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(N / 64));
    pass.end();
    encoder.copyBufferToBuffer(y, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new Error(`validation error: ${error.message}`);
    await read.mapAsync(GPUMapMode.READ);
    const out = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    return out;
  } finally {
    y.destroy();
    read.destroy();
  }
}

/** The first index whose value is wrong, described; undefined when all are right. */
export function selfTestMismatch(y: Uint32Array): string | undefined {
  if (y.length !== N) return `read back ${y.length} values, expected ${N}`;
  for (let i = 0; i < N; i++) {
    if (y[i] !== 3 * i + 1) return `y[${i}] = ${y[i] === POISON ? "unwritten" : y[i]}, expected ${3 * i + 1}`;
  }
  return undefined;
}

export function selfTest(device: GPUDevice, adapter: string): Effect.Effect<void, SelfTestFailed> {
  const refuse = (why: string) =>
    new SelfTestFailed({ adapter, message: `adapter "${adapter}" failed the self-test kernel (y[i] = 3i+1): ${why}; it was refused` });
  return Effect.tryPromise({ try: () => runKernel(device), catch: (e) => refuse(e instanceof Error ? e.message : String(e)) }).pipe(
    Effect.flatMap((y) => {
      const bad = selfTestMismatch(y);
      return bad === undefined ? Effect.void : Effect.fail(refuse(bad));
    }),
  );
}
