/** The BlockMask layer's public surface. */
export {
  BlockMask,
  type BlockMaskFields,
  type BlockMaskInit,
  type FromKvBlocksOptions,
  type FromStatesOptions,
  type SliceIndex,
} from "./block_mask.ts";
export { createBlockMask, type CreateBlockMaskOptions, createMask } from "./create_block_mask.ts";
export type { TableInput } from "./table_input.ts";
export type { ToStringOptions } from "./to_string.ts";
