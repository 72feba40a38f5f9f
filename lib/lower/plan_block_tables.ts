/**
 * The plan of a `blockTables` node: kernels/block_tables.ts, one workgroup per table row (kv-major rows
 * first, then q-major rows; rows of an axis with no requested part are not launched).
 *
 * Bindings: 0 out (the node's packed parts), 1 params (uniform, BLOCK_TABLES_UNIFORMS), 2 states (input,
 * source "states" only). Lengths, block sizes and offsets are uniforms: two pipelines serve every mask.
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { Capabilities } from "./capabilities.ts";
import type { Binding, NodePlan } from "./plan.ts";
import { BLOCK_TABLES_UNIFORMS, blockTablesWgsl, NO_PART } from "../../kernels/block_tables.ts";
import { partOffsets, tableGrid, type TablePart } from "../blockmask/block_tables.ts";
import { NoConfigFits } from "../errors.ts";

export function planBlockTables(node: Tensor<"blockTables">, caps: Capabilities): NodePlan {
  const a = node.arg;
  const { G, nQ, nKV } = tableGrid(a);
  const offs = partOffsets(a);
  const off = (p: TablePart) => offs.get(p) ?? NO_PART;
  const wantKv = a.parts.some((p) => p.startsWith("kv") || p.startsWith("fullKv"));
  const wantQ = a.parts.some((p) => p.startsWith("q") || p.startsWith("fullQ"));
  // kv-major rows come first; when only q-major parts are asked for, the kv rows are skipped by
  // starting the q rows at 0 (rows_kv = 0 makes every row q-major)
  const rowsKv = wantKv ? G * nQ : 0;
  const rowsTotal = rowsKv + (wantQ ? G * nKV : 0);
  const maxGrid = caps.limits.maxComputeWorkgroupsPerDimension;
  if (nQ >= 65536 || nKV >= 65536) {
    throw new NoConfigFits({ message: `blockTables: ${nQ} × ${nKV} blocks; a row must have fewer than 65536 blocks (use a larger blockSize)` });
  }
  const gridX = Math.max(1, Math.min(rowsTotal, maxGrid));
  const gridY = Math.ceil(rowsTotal / gridX);
  if (gridY > maxGrid) throw new NoConfigFits({ message: `blockTables: ${rowsTotal} table rows exceed ${maxGrid}² workgroups` });
  const u: Record<(typeof BLOCK_TABLES_UNIFORMS)[number], number> = {
    nq: nQ, nkv: nKV, q_len: a.qLen, kv_len: a.kvLen, bq: a.blockSize[0], bkv: a.blockSize[1],
    rows_kv: rowsKv, rows_total: rowsTotal, grid_x: gridX, separate_full: a.separateFull ? 1 : 0,
    off_kv_num: off("kvNum"), off_kv_idx: off("kvIdx"), off_full_kv_num: off("fullKvNum"), off_full_kv_idx: off("fullKvIdx"),
    off_q_num: off("qNum"), off_q_idx: off("qIdx"), off_full_q_num: off("fullQNum"), off_full_q_idx: off("fullQIdx"),
    pad0: 0, pad1: 0,
  };
  const threads = Math.min(256, caps.limits.maxComputeInvocationsPerWorkgroup, caps.limits.maxComputeWorkgroupSizeX);
  const bindings: Binding[] = [
    { kind: "output", tensor: node },
    { kind: "uniform", data: Uint32Array.from(BLOCK_TABLES_UNIFORMS, (k) => u[k]) },
    ...(a.source === "states" ? [{ kind: "input", tensor: node.inputs[0] } as const] : []),
  ];
  return {
    launches: rowsTotal === 0 ? [] : [{
      label: `block_tables ${a.source}`,
      code: blockTablesWgsl({ threads: 1 << Math.floor(Math.log2(threads)), source: a.source }),
      entryPoint: "main",
      bindings,
      workgroups: [gridX, gridY, 1],
    }],
    defines: [node],
    checks: [],
  };
}
