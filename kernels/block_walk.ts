/**
 * The forward kernels' walk over one query block's kv blocks (both families splice the same WGSL): first the
 * partial blocks (mask_mod applies), then the full ones, split-KV taking the `split`-th share of the list;
 * opens `for (blk …) {` and defines `partial`, `kb` and `col_limit` (the block's last key + 1, clipped to Skv).
 * Needs `tables`, `P` (FLEX_FORWARD_UNIFORMS), `trow` and `split` in scope; the caller closes the loop.
 */
export const BLOCK_WALK_OPEN = /* wgsl */ `  let n_partial = u32(tables[P.off_kv_num + trow]);
  var n_full = 0u;
  if (P.has_full != 0u) { n_full = u32(tables[P.off_full_num + trow]); }
  let n_blocks = n_partial + n_full;
  let per_split = (n_blocks + P.n_splits - 1u) / P.n_splits;
  let blk_end = min(n_blocks, (split + 1u) * per_split);
  for (var blk = split * per_split; blk < blk_end; blk++) {
    let partial = blk < n_partial;
    var kb: u32;
    if (partial) { kb = u32(tables[P.off_kv_idx + trow * P.n_kv_blocks + blk]); }
    else { kb = u32(tables[P.off_full_idx + trow * P.n_kv_blocks + (blk - n_partial)]); }
    let col_limit = min(kb * P.KB + P.KB, P.Skv);
`;

/**
 * The forward kernels' workgroup coordinates: batch and split-KV share (wid.z = b · n_splits + split), query
 * head and its kv head (GQA), the q block and this workgroup's first row, the rows' limit (block end or Sq).
 */
export function workgroupCoords(BM: number): string {
  return /* wgsl */ `  let b = wid.z / P.n_splits;
  let split = wid.z % P.n_splits;
  let h = wid.y;
  let hk = h / (P.Hq / P.Hkv);
  let qblk = wid.x / P.m_tiles;
  let row0 = qblk * P.QB + (wid.x % P.m_tiles) * ${BM}u;
  let row_limit = min(qblk * P.QB + P.QB, P.Sq);
  let rows_short = row0 + ${BM}u > row_limit;
`;
}

/**
 * BLOCK_WALK_OPEN with the counts and block indices read by invocation 0 and broadcast through
 * workgroupUniformLoad (loop bounds uniform by construction, not only by value). Needs `tid` in scope and
 * BLOCK_WALK_UNIFORM_DECL at module scope. A diagnostic variant (bench/tensor_variants.ts).
 */
export const BLOCK_WALK_UNIFORM_DECL = "var<workgroup> walk_np: u32;\nvar<workgroup> walk_nf: u32;\nvar<workgroup> walk_kb: u32;";
/** The uniform walk's counts (n_partial, n_full, n_blocks) and this split's range of list positions
 * [split · per_split, blk_end), broadcast through workgroupUniformLoad; BLOCK_WALK_UNIFORM_OPEN and the pipelined
 * tensor forward (which flattens the walk into one tile loop) open with it. */
export const BLOCK_WALK_UNIFORM_COUNTS = /* wgsl */ `  if (tid == 0u) {
    walk_np = u32(tables[P.off_kv_num + trow]);
    walk_nf = 0u;
    if (P.has_full != 0u) { walk_nf = u32(tables[P.off_full_num + trow]); }
  }
  let n_partial = workgroupUniformLoad(&walk_np);
  let n_full = workgroupUniformLoad(&walk_nf);
  let n_blocks = n_partial + n_full;
  let per_split = (n_blocks + P.n_splits - 1u) / P.n_splits;
  let blk_end = min(n_blocks, (split + 1u) * per_split);
`;

/** WGSL statement for invocation 0: the kv block at list position `blk` (partial blocks first, then full) into walk_kb;
 * `partial` names the test where the caller already has it. */
export const uniformWalkKvBlock = (blk: string, partial = `${blk} < n_partial`) =>
  `if (${partial}) { walk_kb = u32(tables[P.off_kv_idx + trow * P.n_kv_blocks + ${blk}]); } else { walk_kb = u32(tables[P.off_full_idx + trow * P.n_kv_blocks + (${blk} - n_partial)]); }`;

export const BLOCK_WALK_UNIFORM_OPEN = /* wgsl */ `${BLOCK_WALK_UNIFORM_COUNTS}  for (var blk = split * per_split; blk < blk_end; blk++) {
    let partial = blk < n_partial;
    if (tid == 0u) { ${uniformWalkKvBlock("blk", "partial")} }
    let kb = workgroupUniformLoad(&walk_kb);
    let col_limit = min(kb * P.KB + P.KB, P.Skv);
`;

/**
 * The backward kernels' owner coordinates (both families splice the same WGSL): dq — query head h, its kv head,
 * the q block, the workgroup's first owner row and the rows' limit, the owner and streamed row bases; dk/dv — kv
 * head `hk` (an expression: the grid's y unless the caller flattens heads), the GQA group size, the kv block and
 * the rows, the owner row base (the streamed base depends on the group's head, set by the caller's loop).
 * Needs `b`, `wid` and `P` (the backward uniforms) in scope.
 */
export function backwardOwnerCoords(dq: boolean, BA: number, hk = "wid.y"): string {
  return dq ? /* wgsl */ `
  let h = wid.y;
  let hk = h / (P.Hq / P.Hkv);
  let ablk = wid.x / P.a_tiles;
  let row0 = ablk * P.QB + (wid.x % P.a_tiles) * ${BA}u;
  let row_limit = min(ablk * P.QB + P.QB, P.Sq);
  let a_base = (b * P.Hq + h) * P.Sq;
  let b_base = (b * P.Hkv + hk) * P.Skv;` : /* wgsl */ `
  let hk = ${hk};
  let group = P.Hq / P.Hkv;
  let ablk = wid.x / P.a_tiles;
  let row0 = ablk * P.KB + (wid.x % P.a_tiles) * ${BA}u;
  let row_limit = min(ablk * P.KB + P.KB, P.Skv);
  let a_base = (b * P.Hkv + hk) * P.Skv;`;
}

/**
 * The backward kernels' walk (both families splice the same WGSL): over the owner block's partial then full
 * streamed blocks from the packed tables in `caps` (dq: kv blocks of a q block; dk/dv: q blocks of a kv block),
 * then over the block's tiles of BB streamed rows; `body` runs per tile with `partial`, `sb`, `col_limit`, `tile`.
 * Needs `caps`, `P` (the backward uniforms) and `trow` in scope.
 */
export function backwardBlockWalk(dq: boolean, BB: number, body: string): string {
  const blockLen = dq ? "P.KB" : "P.QB";
  return /* wgsl */ `
    let n_partial = caps[P.off_num + trow];
    var n_full = 0u;
    if (P.has_full != 0u) { n_full = caps[P.off_full_num + trow]; }
    for (var blk = 0u; blk < n_partial + n_full; blk++) {
      let partial = blk < n_partial;
      var sb: u32;
      if (partial) { sb = caps[P.off_idx + trow * P.row_width + blk]; }
      else { sb = caps[P.off_full_idx + trow * P.row_width + (blk - n_partial)]; }
      let col_limit = min(sb * ${blockLen} + ${blockLen}, ${dq ? "P.Skv" : "P.Sq"});
      for (var tile = sb * ${blockLen}; tile < col_limit; tile += ${BB}u) {${body}
      }
    }`;
}
