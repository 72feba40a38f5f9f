/**
 * Until the runtime is wired in, the blockmask tests realize with this tiny CPU realizer: const nodes
 * return their data, `maskBlocks` nodes run `maskBlockStatesCpu` on their realized captures.
 * (The integrator may replace the import with the library's real runtime.)
 */
import { setRealizer } from "../../lib/tensor/realize.ts";
import type { Tensor, TypedData } from "../../lib/tensor/tensor.ts";
import { type MaskBlocksArg, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";

function realizeNow(t: Tensor): TypedData {
  if (t.data) return t.data.slice() as TypedData;
  if (t.op === "maskBlocks") return maskBlockStatesCpu(t.arg as MaskBlocksArg, t.inputs.map(realizeNow));
  throw new Error(`cpu_realizer: op ${t.op} is not supported in the blockmask tests`);
}

setRealizer((t) => Promise.resolve().then(() => realizeNow(t)));
