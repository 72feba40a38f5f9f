/**
 * The blockmask tests realize `maskBlocks` nodes on the CPU (`maskBlockStatesCpu`): the property tests
 * build hundreds of different masks, and compiling one GPU kernel per mask on lavapipe takes minutes.
 * Every other op is handed to the library's runtime, so a suite sharing this process (`bun test` over
 * all files) still gets real kernels for its flex nodes. The runtime is imported first (installing its
 * realizer), then this one replaces it.
 */
import { realizeAll } from "../../lib/runtime/mod.ts";
import { setRealizer } from "../../lib/tensor/realize.ts";
import type { Tensor, TypedData } from "../../lib/tensor/tensor.ts";
import { type MaskBlocksArg, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";

async function realizeHere(t: Tensor): Promise<TypedData> {
  if (t.data) return t.data.slice() as TypedData;
  if (t.op === "maskBlocks") {
    const captures = await Promise.all(t.inputs.map(realizeHere));
    return maskBlockStatesCpu(t.arg as MaskBlocksArg, captures);
  }
  return (await realizeAll([t]))[0];
}

setRealizer(realizeHere);
