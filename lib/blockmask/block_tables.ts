/**
 * The `blockTables` node: the ordered block tables (PyTorch's layout, lib/blockmask/tables.ts' rule) built
 * from block states, so a GPU builds them where the states are (kernels/block_tables.ts) and the host gets
 * them in one readback, or never sees them before realize (the lazy default mask).
 *
 * The node's value is the concatenation of the requested parts, in PARTS order:
 *   kvNum [G·nQ], kvIdx [G·nQ·nKV], fullKvNum, fullKvIdx, qNum [G·nKV], qIdx [G·nKV·nQ], fullQNum, fullQIdx
 * Source "states": the input is a maskBlocks node (i32 [B, H, nQ, nKV]). Source "noop": no input, every block
 * inside both lengths full and every edge block partial (BlockMask.noop's grid, computed, never stored).
 * `separateFull: false` counts full blocks as partial (no full parts may be asked for then).
 */
import { Tensor } from "../tensor/tensor.ts";
import { BLOCK_FULL, BLOCK_PARTIAL, numBlocks } from "./mask_blocks.ts";
import { tablesFromStates } from "./tables.ts";

export const PARTS = ["kvNum", "kvIdx", "fullKvNum", "fullKvIdx", "qNum", "qIdx", "fullQNum", "fullQIdx"] as const;
export type TablePart = (typeof PARTS)[number];

// the registry entry of blockTables (lib/blockmask/op_args.ts: JSR refuses augmentations in public modules)
import type {} from "./op_args.ts";

export interface BlockTablesArg {
  readonly B: number;
  readonly H: number;
  readonly qLen: number;
  readonly kvLen: number;
  readonly blockSize: readonly [number, number];
  readonly source: "states" | "noop";
  readonly separateFull: boolean;
  /** The parts this node holds, in PARTS order. */
  readonly parts: readonly TablePart[];
}

/** Grid sizes of a tables arg. */
export function tableGrid(a: BlockTablesArg): { G: number; nQ: number; nKV: number } {
  return { G: a.B * a.H, nQ: numBlocks(a.qLen, a.blockSize[0]), nKV: numBlocks(a.kvLen, a.blockSize[1]) };
}

/** Words of one part. */
export function partSize(a: BlockTablesArg, p: TablePart): number {
  const { G, nQ, nKV } = tableGrid(a);
  const rows = p.startsWith("kv") || p.startsWith("fullKv") ? G * nQ : G * nKV;
  return p.endsWith("Num") ? rows : G * nQ * nKV;
}

/** Word offset of each requested part in the node's value. */
export function partOffsets(a: BlockTablesArg): Map<TablePart, number> {
  const offs = new Map<TablePart, number>();
  let n = 0;
  for (const p of a.parts) { offs.set(p, n); n += partSize(a, p); }
  return offs;
}

/**
 * The lazy node; `states` is the maskBlocks node for source "states". Its shape is [words], or `shape` (of
 * the same size: a single part as the 3-D / 4-D table a BlockMask holds).
 */
export function blockTablesNode(arg: BlockTablesArg, states?: Tensor, shape?: readonly number[]): Tensor {
  const parts = PARTS.filter((p) => arg.parts.includes(p));
  const a = { ...arg, parts };
  const size = parts.reduce((n, p) => n + partSize(a, p), 0);
  if (shape && shape.reduce((x, y) => x * y, 1) !== size) throw new Error(`internal: blockTables shape [${shape}] for ${size} words`);
  return new Tensor("blockTables", states ? [states] : [], shape ? [...shape] : [size], "i32", a);
}

/** The noop grid's states (every block inside both lengths full, edge blocks partial), B = H = 1. */
export function noopStates(qLen: number, kvLen: number, [bq, bkv]: readonly [number, number]): Int32Array {
  const nQ = numBlocks(qLen, bq), nKV = numBlocks(kvLen, bkv);
  const s = new Int32Array(nQ * nKV);
  for (let i = 0; i < nQ; i++) {
    for (let j = 0; j < nKV; j++) s[i * nKV + j] = (i + 1) * bq <= qLen && (j + 1) * bkv <= kvLen ? BLOCK_FULL : BLOCK_PARTIAL;
  }
  return s;
}

/** CPU evaluation (the CPU executor's rule and the kernel tests' reference). */
export function blockTablesCpu(a: BlockTablesArg, states?: ArrayLike<number>): Int32Array {
  const { nQ, nKV } = tableGrid(a);
  let s: ArrayLike<number> = a.source === "noop" ? noopStates(a.qLen, a.kvLen, a.blockSize) : states!;
  if (!a.separateFull) s = Int32Array.from(s, (v) => (v === BLOCK_FULL ? BLOCK_PARTIAL : v));
  const t = tablesFromStates(s, a.B, a.H, nQ, nKV);
  const byPart: Record<TablePart, Int32Array> = {
    kvNum: t.kv.num, kvIdx: t.kv.idx, fullKvNum: t.fullKv!.num, fullKvIdx: t.fullKv!.idx,
    qNum: t.q.num, qIdx: t.q.idx, fullQNum: t.fullQ!.num, fullQIdx: t.fullQ!.idx,
  };
  const offs = partOffsets(a);
  const out = new Int32Array(a.parts.reduce((n, p) => n + partSize(a, p), 0));
  for (const p of a.parts) out.set(byPart[p], offs.get(p)!);
  return out;
}
