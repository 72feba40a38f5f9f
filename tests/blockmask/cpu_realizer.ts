/**
 * The blockmask property tests build hundreds of different masks; compiling one GPU kernel per mask on
 * lavapipe would take minutes, so while one of THESE tests runs, `maskBlocks` nodes (and the `blockTables`
 * nodes createBlockMask builds over them) are evaluated on the CPU (`maskBlockStatesCpu`, `blockTablesCpu`). The routing is scoped to the test bodies defined with this module's `it`, so other
 * suites sharing the process (`bun test` runs every file in one process) keep the runtime's real GPU kernel.
 * The GPU kernels themselves are checked against the same reference in gpu_states.test.ts.
 */
import "../../lib/runtime/mod.ts"; // installs the runtime's realizer first
import { getRealizer, setRealizer } from "../../lib/tensor/realize.ts";
import type { Tensor, TypedData } from "../../lib/tensor/tensor.ts";
import { type MaskBlocksArg, maskBlockStatesCpu } from "../../lib/blockmask/mask_blocks.ts";
import { type BlockTablesArg, blockTablesCpu } from "../../lib/blockmask/block_tables.ts";
import { type It, it as baseIt } from "../harness.ts";

const runtimeRealizer = getRealizer()!;
let scope = 0;

async function realizeHere(t: Tensor): Promise<TypedData> {
  if (scope > 0 && t.op === "maskBlocks") {
    const captures = await Promise.all(t.inputs.map((c) => c.toArray()));
    return maskBlockStatesCpu(t.arg as MaskBlocksArg, captures);
  }
  if (scope > 0 && t.op === "blockTables") {
    const states = t.inputs.length ? await realizeHere(t.inputs[0]) : undefined;
    return blockTablesCpu(t.arg as BlockTablesArg, states);
  }
  return runtimeRealizer(t);
}
setRealizer(realizeHere);

type TestFn = () => void | Promise<void>;
const scoped = (fn: TestFn): TestFn => async () => {
  scope++;
  try { await fn(); } finally { scope--; }
};

/** The harness's `it`, with `maskBlocks` on the CPU inside the test body. */
export const it: It = Object.assign(
  (name: string, fn: TestFn, timeoutMs?: number) => baseIt(name, scoped(fn), timeoutMs),
  {
    skip: baseIt.skip,
    skipIf: (reason: string | false | undefined | null) => (name: string, fn: TestFn, timeoutMs?: number) =>
      baseIt.skipIf(reason)(name, scoped(fn), timeoutMs),
  },
);
