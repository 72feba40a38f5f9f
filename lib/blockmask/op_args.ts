/**
 * The blockTables op's entry in the Tensor op registry (lib/tensor/op.ts's `OpArgs`), in its own module imported
 * for its types only: JSR's fast check refuses module augmentations in the modules its public types pass through.
 */
import type { BlockTablesArg } from "./block_tables.ts";

declare module "../tensor/op.ts" {
  interface OpArgs {
    /** Ordered block tables from block states (inputs: [states] or none for the noop grid). */
    blockTables: BlockTablesArg;
  }
}
