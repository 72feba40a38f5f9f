/**
 * Shapes of the fixed-seed fuzz slice (tests/fuzz/fuzz_slice.test.ts) that keep each mod to ONE decode-tile
 * kernel, so the slice's compile budget goes to more mods rather than to variants of one mod's decode tile.
 *
 * Why: a call with Sq ≤ 16 in one q block runs the decode tile (lib/lower/flex_decode_config.ts), whose row count
 * follows the packed units Sq × hp in powers of two (1, 2, 4, 8, 16), hp the GQA group when the BlockMask is the
 * same for every head; an f16 decode with one split (Skv within one kv block) writes f16 directly, a different
 * kernel from the split-KV one. Plain random shapes gave a mod 2–5 decode kernels, each seconds to compile on
 * lavapipe. Here each mod draws a DecodePlan: either no decode tile at all (its small-Sq shapes run the query-tile
 * forward: lib/lower/flex_decode_config.ts flexDecodeSwitch), or one units class and, for f16, one split kind;
 * its decode-eligible shapes are then moved into that class (Sq, and the GQA ratio only when no Sq fits; Skv
 * across the block edge for the split kind). Everything else of a shape stays as shapeArb drew it.
 *
 * The rules mirror the library's choice; if they drift, a mod builds more kernels (slower), never wrong ones.
 */
import fc from "fast-check";
import { blockSizePair } from "../../lib/blockmask/validate.ts";
import type { ModSpec, ShapeSpec } from "./generators.ts";

/** The decode-tile kernel a mod's small-Sq shapes share, or none (query-tile forward only). */
export interface DecodePlan {
  /** Units class 1 | 2 | 4 | 8 | 16 (pow2ceil(Sq × hp), capped at 16), or 0: the decode tile is off for this mod. */
  readonly units: 0 | 1 | 2 | 4 | 8 | 16;
  /** f16 only: decode shapes keep Skv within one kv block (one split) or past it (split-KV). */
  readonly oneSplit: boolean;
}

/** Half the mods run the decode tile (one class each), half send their small-Sq shapes through the query tile. */
export const decodePlanArb: fc.Arbitrary<DecodePlan> = fc.record({
  units: fc.oneof(
    { weight: 5, arbitrary: fc.constant(0 as const) },
    { weight: 5, arbitrary: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const, 16 as const) },
  ),
  oneSplit: fc.boolean(),
});

/** The decode tile's limits (lib/lower/flex_decode_config.ts DECODE_MAX_SQ, MAX_RT). */
const DECODE_MAX_SQ = 16, MAX_UNITS = 16;
/** Lengths stay within the generators' range (tests/fuzz/generators.ts lengthArb). */
const MAX_LEN = 300;

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const unitsClass = (units: number) => Math.min(pow2ceil(units), MAX_UNITS);

/** [q, kv] block sizes of the case's BlockMask (no mask: flexAttention's default, 128). */
function blocks(mod: ModSpec): [number, number] {
  return mod.mask ? blockSizePair(mod.blockSize, "fuzz slice") : [128, 128];
}

/** Heads packed into one decode unit: the GQA group when the mask is the same for every head (no mask, or H broadcast). */
function headsPacked(mod: ModSpec, s: ShapeSpec): number {
  return mod.mask && s.maskH ? 1 : s.ratio;
}

/** Whether the library would run this shape through the decode tile. */
export function isDecodeShape(mod: ModSpec, s: ShapeSpec): boolean {
  return s.Sq <= DECODE_MAX_SQ && s.Sq <= blocks(mod)[0];
}

/** Query lengths whose units Sq × hp fall in `cls` (and stay decode shapes). */
function sqsFor(cls: number, hp: number, qBlock: number): number[] {
  const out: number[] = [];
  for (let sq = 1; sq <= Math.min(DECODE_MAX_SQ, qBlock); sq++) if (unitsClass(sq * hp) === cls) out.push(sq);
  return out;
}

/**
 * The shape moved into the mod's decode class (unchanged when it is no decode shape or the plan has no decode).
 * `pick` chooses among the fitting query lengths (a number in [0, 1) drawn with the shape: its seed).
 */
export function fitDecodeShape(mod: ModSpec, plan: DecodePlan, s: ShapeSpec): ShapeSpec {
  if (plan.units === 0 || !isDecodeShape(mod, s)) return s;
  const [qBlock, kvBlock] = blocks(mod);
  let shape = s;
  if (unitsClass(s.Sq * headsPacked(mod, s)) !== plan.units) {
    let sqs = sqsFor(plan.units, headsPacked(mod, s), qBlock);
    if (sqs.length === 0) { // the GQA group alone overflows the class: no grouping (ratio 1) fits every class
      shape = { ...shape, ratio: 1 };
      sqs = sqsFor(plan.units, 1, qBlock);
    }
    if (sqs.length === 0) return { ...shape, Sq: Math.min(qBlock, DECODE_MAX_SQ) + 1 }; // q block 8 and class 16: no decode
    shape = { ...shape, Sq: sqs[s.seed % sqs.length] };
  }
  if (mod.dtype === "f16") {
    const oneBlock = shape.Skv <= kvBlock;
    if (plan.oneSplit && !oneBlock) shape = { ...shape, Skv: 1 + ((shape.Skv - 1) % kvBlock) };
    if (!plan.oneSplit && oneBlock) {
      // past the first kv block; a block of ≥ MAX_LEN keys has no room for that within the lengths' range: one split then
      shape = kvBlock < MAX_LEN ? { ...shape, Skv: kvBlock + 1 + (shape.Skv % (MAX_LEN - kvBlock)) } : shape;
    }
  }
  return shape;
}
