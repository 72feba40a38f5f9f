/**
 * The key a tuned config is stored under (per device: the executor's table, and the persisted cache file's
 * section for the adapter and provider): family, storage dtype, head dims, BlockMask block sizes, user-pinned
 * tiles and the mod class (identity score mod or not: the identity folds log2 e into Q and skips the hook).
 */
import type { KernelOptions } from "../attention/kernel_options.ts";
import type { FlexProblem } from "./flex_config.ts";

export function flexTuneKey(family: string, dtype: string, p: FlexProblem, opts: KernelOptions): string {
  const pins = `${opts.blockM ?? "-"}x${opts.blockN ?? "-"}`;
  return `fwd|${family}|${dtype}|D${p.D}|Dv${p.Dv}|blocks${p.QB}x${p.KB}|pin${pins}|${p.identityScore ? "identity" : p.positionalScore ? "scoremod-positional" : "scoremod"}`;
}
