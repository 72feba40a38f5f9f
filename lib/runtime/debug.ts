/**
 * Debug switches and counters shared by the executors and the tests.
 *
 * Poison: when on, the GPU executor fills every output buffer with NaN before its kernels run, so an
 * element a kernel forgot to write fails the comparison with the oracle instead of passing as a stale 0.
 * Live buffers: every GPUBuffer created on a device the runtime opened is counted until destroyed, so
 * tests can prove that a realize leaves nothing behind.
 */
let poison = false;
let live = 0;

export function setPoison(on: boolean): void { poison = on; }
export function poisonEnabled(): boolean { return poison; }

/** GPU buffers created through the runtime's devices and not yet destroyed (all devices together). */
export function liveBufferCount(): number { return live; }

/**
 * Counts `device`'s buffers from now on: wraps createBuffer / destroy in place (once per device).
 * Destroying the device frees whatever buffers it still had, so they stop counting then.
 */
export function trackBuffers(device: GPUDevice): void {
  const d = device as GPUDevice & { __flexTracked?: boolean };
  if (d.__flexTracked) return;
  d.__flexTracked = true;
  let mine = 0;
  let deviceGone = false;
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor): GPUBuffer => {
    const buffer = create(descriptor);
    live++; mine++;
    const destroy = buffer.destroy.bind(buffer);
    let destroyed = false;
    buffer.destroy = () => {
      if (!destroyed && !deviceGone) { live--; mine--; }
      destroyed = true;
      destroy();
    };
    return buffer;
  };
  const destroyDevice = device.destroy.bind(device);
  device.destroy = () => {
    if (!deviceGone) { deviceGone = true; live -= mine; mine = 0; }
    destroyDevice();
  };
}
