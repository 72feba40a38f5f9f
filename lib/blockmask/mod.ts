/** The BlockMask layer's public surface. */
export {
  BlockMask,
  type BlockMaskFields,
  type BlockMaskInit,
  type FromKvBlocksOptions,
  type FromStatesOptions,
} from "./block_mask.ts";
export { createBlockMask, type CreateBlockMaskOptions, createMask } from "./create_block_mask.ts";
export type { TableInput } from "./table_input.ts";
export type { ToStringOptions } from "./to_string.ts";
