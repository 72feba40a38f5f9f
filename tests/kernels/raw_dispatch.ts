/**
 * One compute dispatch through raw WebGPU, for the kernel tests that run a WGSL module outside the library's runtime
 * (tests/kernels/exp2_fma.test.ts, the transpose case of tests/kernels/flex_forward_tensor_raw.test.ts): each binding a
 * buffer made from its initial contents (the output's contents are the caller's poison, so an unwritten element fails),
 * one dispatch, and binding `readBack` copied back. Every buffer is destroyed, whatever happens.
 */

export interface RawBinding {
  /** Initial contents (for the output: its poison). */
  readonly data: ArrayBufferView;
  /** A uniform buffer (else storage). */
  readonly uniform?: boolean;
}

export async function dispatchOnce(device: GPUDevice, kernel: string | GPUComputePipeline, bindings: readonly RawBinding[], readBack: number,
  workgroups: readonly [number, number?, number?]): Promise<ArrayBuffer> {
  const U = GPUBufferUsage;
  const made: GPUBuffer[] = [];
  try {
    const buffers = bindings.map(({ data, uniform }) => {
      const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
      const b = device.createBuffer({ size, usage: (uniform ? U.UNIFORM : U.STORAGE) | U.COPY_DST | U.COPY_SRC });
      made.push(b);
      device.queue.writeBuffer(b, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
      return b;
    });
    const bytes = bindings[readBack].data.byteLength;
    const rb = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: U.MAP_READ | U.COPY_DST });
    made.push(rb);
    const pipe = typeof kernel === "string"
      ? await device.createComputePipelineAsync({ layout: "auto", compute: { module: device.createShaderModule({ code: kernel }), entryPoint: "main" } })
      : kernel;
    const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    const e = device.createCommandEncoder();
    const pass = e.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    pass.end();
    e.copyBufferToBuffer(buffers[readBack], 0, rb, 0, Math.ceil(bytes / 4) * 4);
    device.queue.submit([e.finish()]);
    await rb.mapAsync(GPUMapMode.READ);
    const out = rb.getMappedRange().slice(0, bytes);
    rb.unmap();
    return out;
  } finally {
    for (const b of made) b.destroy();
  }
}
