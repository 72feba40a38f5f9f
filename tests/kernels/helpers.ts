/**
 * Shared pieces of the kernel tests: BlockMasks built from the CPU block states (independent of the
 * runtime's realizer), and one "GPU forward vs float64 oracle" check with poisoned outputs.
 */
import { Effect } from "effect";
import { randn, type Tensor } from "../../lib/tensor/tensor.ts";
import { type FlexCall, flexNodes, type FlexOptions, makeFlexCall } from "../../lib/attention/flex_attention.ts";
import { BlockMask } from "../../lib/blockmask/block_mask.ts";
import { maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { type MaskMod, traceMaskMod } from "../../lib/mods/trace.ts";
import { flexReference } from "../../lib/runtime/cpu/flex_reference.ts";
import { setPoison } from "../../lib/runtime/debug.ts";
import { gpu } from "./device.ts";
import { relL2 } from "../harness.ts";

const dataOf = (t: unknown) => (t as Tensor).data!;

/** The BlockMask of `maskMod` (B/H 1 = broadcast), from `maskBlockStatesCpu`. */
export function blockMaskOf(
  maskMod: MaskMod, B: number, H: number, qLen: number, kvLen: number, blockSize: number | [number, number] = 128,
): BlockMask {
  const bs: [number, number] = typeof blockSize === "number" ? [blockSize, blockSize] : blockSize;
  const traced = traceMaskMod(maskMod);
  const states = maskBlockStatesCpu({ mask: traced, B, H, qLen, kvLen, blockSize: bs }, traced.captures.map(dataOf));
  return BlockMask.fromStates(states, { B, H, qLen, kvLen, blockSize: bs, maskMod, tracedMask: traced });
}

export interface Case {
  B?: number;
  Hq?: number;
  Hkv?: number;
  Sq: number;
  Skv?: number;
  D?: number;
  Dv?: number;
  options?: FlexOptions;
}

export function makeCall(c: Case): FlexCall {
  const B = c.B ?? 1, Hq = c.Hq ?? 2, Hkv = c.Hkv ?? Hq, Skv = c.Skv ?? c.Sq, D = c.D ?? 64, Dv = c.Dv ?? D;
  const q = randn([B, Hq, c.Sq, D]), k = randn([B, Hkv, Skv, D]), v = randn([B, Hkv, Skv, Dv]);
  return makeFlexCall(q, k, v, { enableGqa: Hq !== Hkv, ...c.options });
}

/** Realizes out and lse on the GPU (outputs poisoned) and returns both with the oracle's values. */
export async function runAgainstOracle(call: FlexCall) {
  const { out, lse } = flexNodes(call);
  setPoison(true);
  const [gOut, gLse] = await Effect.runPromise(gpu.executor.realize([out, lse]));
  const ref = flexReference(call, {
    q: dataOf(call.q), k: dataOf(call.k), v: dataOf(call.v),
    scoreCaptures: call.scoreMod.captures.map(dataOf),
    maskCaptures: call.blockMask.tracedMask.captures.map(dataOf),
  });
  return { out: gOut, lse: gLse, refOut: ref.out, refLse: ref.lse, errOut: relL2(gOut, ref.out), errLse: relL2(gLse, ref.lse) };
}
