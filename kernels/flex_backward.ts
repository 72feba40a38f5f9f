/**
 * The fused FlexAttention backward kernels, portable family (f32 scalar FMA, any WebGPU adapter),
 * FlashAttention-2 style and deterministic for dQ / dK / dV (each element written once by one thread).
 *
 * One template, two modes, mirror images of each other:
 *   "dq"   a workgroup owns BLOCK_A query rows of one (q head, batch) and streams the kv columns its
 *          q block's kv tables list: dQ += dS'·K.  It also sums the captured-tensor gradients (below).
 *   "dkdv" a workgroup owns BLOCK_A key rows of one (kv head, batch), loops over the query heads of its
 *          GQA group and streams the q rows the q-major tables list: dV += Pᵀ·dO, dK += dS'ᵀ·Q.
 * Both recompute s = q·k·scale → score_mod → mask, P = exp(s' − lse) from the forward's lse, and
 * dS = P∘(dP − Δ) with dP = dO·Vᵀ, Δ = rowsum(dO∘O) − dLse (kernels/flex_bwd_aux.ts), dS' = dS·∂mod/∂score.
 *
 * Captured-tensor gradients (dq mode), `FlexBwdCapGrad`:
 *   every thread keeps one running (word, sum) per (read, owner row) and adds its elements to it in its own
 *   fixed order; when the word changes the old pair is "emitted".
 *   "partials" (deterministic, no float atomics): after each column step j of the elementwise loop (and once
 *     at the end), emitted pairs go to workgroup memory (`cg_emit_s[slot][thread]`); if any thread emitted
 *     (one workgroup flag), word w's owner thread (w % threads) adds the pairs of w in (slot, thread) order into
 *     the workgroup's private slice err[1 + wg·words + w] (plain load/store: one writer per word). A fixed-order
 *     pass (kernels/flex_bwd_aux.ts reduceWgsl) sums the slices. Bit-reproducible. When no index depends on kv
 *     or score (`capIndexFixed`: alibi's per-head slopes) a slot's word never changes, so the per-column rounds
 *     (two barriers each, and a column loop the compiler could not unroll) are left out: one round at the end,
 *     the elements only add to the row's sum and cap_index is asked once per owner row there.
 *   "atomic" (fallback for captures whose slices would not fit): pairs are added to err[1 + w] by
 *     compare-exchange loops, order-dependent (not bit-reproducible), slow under contention.
 *   On the dS' path (features.writeDs) no dq kernel forms dS, so the dkdv kernel sums them the same way from the dS
 *   it forms: slices by (flattened kv head, owner tile) over all chunks' launches, a slot's run flushed (one merge
 *   round) after each group head; per-column rounds unless `capIndexFixedDkdv` (no index reads q or score).
 */
import { backwardBlockWalk, backwardOwnerCoords } from "./block_walk.ts";
import { ERR_UNDEFINED_DERIVATIVE, ERROR_BITS_DECL, FLUSH_ERRORS } from "./error_bits.ts";
import { DROPOUT_PARAMS, DROPOUT_WGSL } from "./dropout_hash.ts";

/** Compile-time shape of one backward kernel (lengths, batch and head counts are uniforms). */
export interface FlexBwdConfig {
  readonly family: "portable";
  readonly D: number;
  readonly Dv: number;
  /** Owner rows per workgroup (q rows for dq, kv rows for dkdv). */
  readonly BA: number;
  /** Owner rows per thread (row vector width). */
  readonly TA: 1 | 2 | 4;
  /** Threads sharing a row group (they split the streamed columns and the output columns). */
  readonly G: number;
  /** Streamed columns per tile. */
  readonly BB: number;
  /** D / Dv chunk staged per step of the dot products S and dP. */
  readonly DK: number;
  /** Streamed rows staged per step of the accumulations. */
  readonly NV: number;
  /**
   * Register tiles as arrays walked by loops whose trip counts the shader compiler cannot see (software
   * adapters: the score mod is inlined once instead of once per column and row; on lavapipe a fuzz mod's dQ + dK/dV
   * compiled in ~10 s of CPU instead of ~37 s). Absent or false: the unrolled named variables (the form GPUs run).
   */
  readonly loops?: boolean;
  /**
   * TA = 4 only: the owner / streamed chunks of the products and the staged rows of the accumulations share one
   * workgroup array (never live at once: each loop opens with a barrier before its stores), so NV can grow
   * (fewer barriers per tile) within the same workgroup memory.
   */
  readonly shareStage?: boolean;
  /**
   * dkdv only: one tile array instead of two — P goes to ds_s for dV, each thread keeps its dS' in the score
   * registers (dead by then), then after a barrier dS' overwrites P for the dS' store and dK. Half the tile memory
   * (room for DK 32 on the 64 × 64 tile) for one barrier more a tile. A probe variant (bench/bwd_probe.ts onetile).
   */
  readonly oneTile?: boolean;
}

export type FlexBwdMode = "dq" | "dkdv";

/** Per-call switches of the backward kernels (not part of the config shape). */
export interface FlexBwdFeatures {
  /** Dropout: P∘z regenerated from the forward's hash; dS = P∘(z∘dP − Δ), dV += (P∘z)ᵀ·dO. */
  readonly dropout?: boolean;
  /** kernelOptions.prescaleQk: q is multiplied by the scale where it is staged for S (else each score after). */
  readonly prescaleQk?: boolean;
  /** kernelOptions.rowsGuaranteedSafe: skip the per-entry lse = −∞ (fully masked row) test. */
  readonly rowsSafe?: boolean;
  /**
   * dkdv mode only: also store each visited tile's dS' into `dsg` (binding 9), laid out [q heads of a chunk][Sq][Skv],
   * for the dQ = scale·dS'·K kernel (kernels/flex_bwd_dq_from_ds.ts). The grid's y runs over the chunk's kv heads,
   * flattened over (batch, kv head) from the uniform `head0` (the `pad0` word); the grid's z is 1. The rows' stride
   * is Skv rounded up to 4 (dsRowStride: 16-byte aligned rows).
   */
  readonly writeDs?: boolean;
  /**
   * With writeDs and TA = 4: one vec4 store per 4 kv rows of a q row (ds_s holds them side by side) instead of 4
   * scalar stores. Needs KB % 4 = 0: a vec4 then never straddles two kv blocks (two workgroups' rows).
   */
  readonly dsVec4?: boolean;
  /**
   * With writeDs: the grid is (kv heads of the chunk, owner tiles) instead of (owner tiles, kv heads), so the
   * workgroups the hardware starts first are every head's first tiles (under a causal mask the longest: kv block 0
   * is visited by every q block) and a launch ends on short workgroups of all heads, not on the last head's long ones.
   */
  readonly dsHeadsFastest?: boolean;
  /**
   * With writeDs: the compact scratch (DS_COMPACT_PARAMS): only the blocks the walk visits, one QB × KB slot each
   * ([q rows of the block][KB]), slot = headBase[b·Hq + h] − ds_base + dsSlot[trow·row_width + blk] (host tables
   * in `caps`, lib/lower/plan_flex_grad_ds.ts); instead of the dense [q heads of a chunk][Sq][Skv rounded up to 4].
   */
  readonly dsCompact?: boolean;
}

/** The dS' scratch's row stride in floats (Skv rounded up to 4), as WGSL over the uniforms and on the host. */
export const DS_ROW_STRIDE_WGSL = "((P.Skv + 3u) & ~3u)";
export function dsRowStride(Skv: number): number {
  return (Skv + 3) & ~3;
}

/**
 * Uniform words of the compact dS' scratch (after the kernels' other uniforms): offsets in `caps` of the per
 * (mask head, q block) first slots, the per q-major table entry slots, the per flattened q head base slots, and the
 * chunk's first slot.
 */
export const DS_COMPACT_UNIFORMS = ["off_ds_start", "off_ds_slot", "off_ds_head", "ds_base"] as const;
export const DS_COMPACT_PARAMS = "off_ds_start: u32, off_ds_slot: u32, off_ds_head: u32, ds_base: u32,";

/** How the dq kernel sums captured-tensor gradients (see the file comment). */
export interface FlexBwdCapGrad {
  readonly mode: "partials" | "atomic";
  /** Accumulator words of one set (all f32 score captures, `capGradLayout(mod).words`). */
  readonly words: number;
}

/** The generated mod code spliced in (lib/lower/flex_bwd_hooks.ts). */
export interface FlexBwdHooks {
  readonly preamble: string;
  readonly scoreMod: string;
  readonly maskMod: string;
  /** `fn score_mod_grad(score, b, h, q, kv) -> f32`. */
  readonly scoreModGrad: string;
  /** The score mod is the identity: its derivative is 1, skip the hooks. */
  readonly identityScore: boolean;
  /**
   * Captured-tensor reads with a gradient (dq mode, or dkdv mode with writeDs: the dS' path): read r has `fn cap_index_r(b, h, q, kv) -> u32`
   * (`fn cap_index_r(score, b, h, q, kv) -> u32`: the word of `err` accumulating its gradient, 0xffffffff when out of range) and
   * `fn cap_grad_r(score, b, h, q, kv) -> f32` (∂mod/∂read).
   */
  readonly capReads: number;
  /** The functions of the reads (emitted by the lowering). */
  readonly capCode: string;
  /**
   * No read's index depends on kv or score (per-head slopes, per-query biases): in dq mode a thread's word of
   * each (read, row) slot never changes during the walk, so its run is emitted once at the end and the
   * per-column merge rounds (two barriers each) are skipped.
   */
  readonly capIndexFixed?: boolean;
  /**
   * The dK/dV twin of capIndexFixed: no read's index depends on q or score (per-head slopes, per-key tables), so a
   * dK/dV thread's word of a slot is fixed for one group head's walk: one merge round per group head, none per column.
   */
  readonly capIndexFixedDkdv?: boolean;
}

/** Uniform layout, u32 words (scale is f32 bits), then DROPOUT_UNIFORMS. Keep in sync with `struct Params` below. */
export const FLEX_BWD_UNIFORMS = [
  "B", "Hq", "Hkv", "Sq", "Skv", "QB", "KB", "a_tiles",
  "row_width", "tb_stride_b", "tb_stride_h", "off_num", "off_idx", "off_full_num", "off_full_idx", "has_full",
  "scale", "off_dk", "off_dv", "pad0",
] as const;

/** Workgroup memory of a config, in bytes (`capReads`: captured-tensor reads with a gradient the kernel sums: dq, or dkdv storing dS'). */
export function flexBwdSmemBytes(c: Omit<FlexBwdConfig, "family">, mode: FlexBwdMode, capReads = 0, capRowRounds = false): number {
  const stage = c.NV * Math.max(c.D, c.Dv);
  const tiles = (mode === "dkdv" && !c.oneTile ? 2 : 1) * c.BB * c.BA;
  const chunks = c.DK * (c.BA + c.BB);
  const floats = (c.shareStage && c.TA === 4 ? Math.max(chunks, stage) : chunks + stage) + tiles + (mode === "dkdv" ? 2 * c.BB : 0);
  // emitted (word, sum) pairs of the capture gradients: [reads·TA][threads] vec2<u32> (capRowRounds, the dK/dV
  // kernel with a fixed index: [reads][threads]), plus two flag words
  const emit = capReads > 0 ? 2 * capReads * (capRowRounds ? 1 : c.TA) * flexBwdThreads(c) + 2 : 0;
  return (floats + emit) * 4;
}

export function flexBwdThreads(c: Pick<FlexBwdConfig, "BA" | "TA" | "G">): number {
  return (c.BA / c.TA) * c.G;
}

/** `n` lines of `f(j)` for j = 0..n−1. */
function unroll(n: number, f: (j: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, j) => f(j)).join(sep);
}

export function flexBackwardWgsl(
  mode: FlexBwdMode,
  c: FlexBwdConfig,
  hooks: FlexBwdHooks,
  capGrad: FlexBwdCapGrad = { mode: "atomic", words: 0 },
  features: FlexBwdFeatures = {},
): string {
  const dq = mode === "dq";
  const one = !dq && c.oneTile === true;
  const RG = c.BA / c.TA; // row groups
  const NT = RG * c.G; // threads
  const CB = c.BB / c.G; // streamed columns per thread
  const RV = c.TA === 1 ? "f32" : `vec${c.TA}<f32>`;
  const at = (e: string, i: string) => (c.TA === 1 ? e : `${e}[${i}]`);
  const W = Math.max(c.D, c.Dv);
  const writeDs = !dq && features.writeDs === true;
  const headsFastest = writeDs && features.dsHeadsFastest === true;
  // capture gradients: the fused dq kernel sums them, or the dK/dV kernel that stores dS' (then no dq kernel forms dS)
  const nReads = dq || writeDs ? hooks.capReads : 0;
  const partials = nReads > 0 && capGrad.mode === "partials";
  const SLOTS = nReads * c.TA;
  const fixedIndex = (dq ? hooks.capIndexFixed : hooks.capIndexFixedDkdv) === true;
  // slots emitted per merge round: all of a thread's, or (dK/dV, fixed index) one owner row's per round, TA rounds
  // (a quarter of the emit memory at TA 4: the measured causal dK/dV tile then still fits 48 KiB)
  const rowRounds = !dq && fixedIndex;
  const ES = rowRounds ? nReads : SLOTS;
  // shareStage: a_s, b_s and st_s are ranges of one array (stage_s: a_s at 0, b_s after it, st_s at 0)
  const share = c.shareStage === true && c.TA === 4;
  const aS = (i: string) => (share ? `stage_s[${i}]` : `a_s[${i}]`);
  const bS = (i: string) => (share ? `stage_s[${c.DK * (c.BA / c.TA)}u + ${i}]` : `b_s[${i}]`);
  const stS = (i: string) => (share ? `stage_s[${i}]` : `st_s[${i}]`);

  // Owner side (A) and streamed side (B) of each product, as (global array, head base, width).
  // dq:   S = Q·Kᵀ (A = q, B = k), dP = dO·Vᵀ (A = dO, B = v), dQ += dS'·K
  // dkdv: S = K·Qᵀ (A = k, B = q), dP = V·dOᵀ (A = v, B = dO), dV += P·dO, dK += dS'·Q
  const ax = dq ? "qg" : "kg", bx = dq ? "kg" : "qg";
  const ay = dq ? "dog" : "vg", by = dq ? "vg" : "dog";
  const aBase = "a_base", bBase = "b_base";

  // The thread's register tiles are unrolled into named variables (s0.., dp0.., acc_k0..): indexed arrays in
  // loops may live in local memory (the forward measured this, kernels/flex_forward.ts).
  const comp = (j: number) => "xyzw"[j % 4];
  // The loop form (c.loops): the same tiles as arrays (s[j], acc_a[j], ...) and loops bounded by `n + zero`,
  // `zero` a uniform that is 0 (has_full is 0 or 1): with no constant trip count Mesa does not unroll them.
  const L = c.loops === true;
  const upTo = (n: number) => `${n}u${L ? " + zero" : ""}`;
  const reg = (name: string, j: number | string) => (L ? `${name}[${j}]` : `${name}${j}`);
  /** The tile `name` of n entries set to zero: n declarations, or one zeroing loop of the array declared in `main`. */
  const zeroTile = (name: string, n: number, indent: string) =>
    L ? `${indent}for (var j = 0u; j < ${upTo(n)}; j++) { ${name}[j] = RV(0.0); }` : unroll(n, (j) => `${indent}var ${name}${j} = RV(0.0);`);
  /** G·j4 as WGSL: folded for an unrolled index, a product for the loop's. */
  const step = (j4: number | string) => (typeof j4 === "number" ? `${c.G * j4}u` : `${c.G}u * ${j4}`);
  /** `acc(j) += x · v(j / 4)[j % 4]` for the n / 4 vec4 loads `v(j4) = load(j4)`: unrolled, or a loop over j4. */
  const fmaRow = (acc: string, x: string, v: string, n: number, load: (j4: number | string) => string, indent: string) =>
    L
      ? `${indent}for (var j4 = 0u; j4 < ${upTo(n / 4)}; j4++) {
${indent}  let ${v}4 = ${load("j4")};
${unroll(4, (t) => `${indent}  ${acc}[4u * j4 + ${t}u] += ${x} * ${v}4.${comp(t)};`)}
${indent}}`
      : `${unroll(n / 4, (j4) => `${indent}let ${v}${j4} = ${load(j4)};`)}
${unroll(n, (j) => `${indent}${acc}${j} += ${x} * ${v}${Math.floor(j / 4)}.${comp(j)};`)}`;
  // lane c owns the streamed columns 4c + 4G·(j / 4) + j % 4 of the tile (element j) and the same output columns
  const colOf = (j: number) => `${4 * c.G * Math.floor(j / 4) + (j % 4)}u + 4u * c`;

  // Global loads go through registers one chunk ahead (pa*, pb*, ps*: vec4 per thread), issued before the
  // current chunk's FMAs so their latency hides behind the math (as the forward does with K and V).
  const LA = Math.ceil((c.BA * c.DK) / 4 / NT), LB = Math.ceil((c.BB * c.DK) / 4 / NT);
  const stRows = (width: number) => Math.ceil((c.NV * width) / 4 / NT);
  const LS = stRows(W);
  /** `stmt` under "this thread has item u" when the items do not fill every thread's last slot. */
  const guard = (total: number, u: number, stmt: string) => ((u + 1) * NT <= total ? stmt : `if (tid + ${u * NT}u < ${total}u) { ${stmt} }`);
  const within = (total: number, u: number) => ((u + 1) * NT <= total ? "" : `idx < ${total}u && `);

  /**
   * Loads the owner chunk and the streamed chunk of a product at `d0` into pa*, pb*. The row index runs fastest
   * across lanes, so the transposing scalar stores below of neighbouring lanes hit distinct banks.
   */
  const loadChunks = (A: string, B: string, width: number, d0: string, scaleA: string, scaleB: string) => `${unroll(LA, (u) => `
        {
          let idx = tid + ${u * NT}u;
          let row = row0 + idx % ${c.BA}u;
          pa${u} = vec4<f32>(0.0);
          if (${within(c.BA * (c.DK / 4), u)}row < row_limit) { pa${u} = ${A}[(${aBase} + row) * ${width / 4}u + (${d0}) / 4u + idx / ${c.BA}u]${scaleA}; }
        }`, "")}${unroll(LB, (u) => `
        {
          let idx = tid + ${u * NT}u;
          let col = tile + idx % ${c.BB}u;
          pb${u} = vec4<f32>(0.0);
          if (${within(c.BB * (c.DK / 4), u)}col < col_limit) { pb${u} = ${B}[(${bBase} + col) * ${width / 4}u + (${d0}) / 4u + idx / ${c.BB}u]${scaleB}; }
        }`, "")}`;
  /** pa*, pb* → the owner chunk a_s [DK][RG] (RV) and the streamed chunk b_s [DK][BB/4] (transposed). */
  const storeChunks = `${unroll(LA, (u) => `
        {
          let idx = tid + ${u * NT}u;
          let r = idx % ${c.BA}u;
          let d4 = idx / ${c.BA}u;
          ${guard(c.BA * (c.DK / 4), u, `for (var t = 0u; t < 4u; t++) { ${at(aS(`(4u * d4 + t) * ${RG}u + r / ${c.TA}u`), `r % ${c.TA}u`)} = pa${u}[t]; }`)}
        }`, "")}${unroll(LB, (u) => `
        {
          let idx = tid + ${u * NT}u;
          let n = idx % ${c.BB}u;
          let d4 = idx / ${c.BB}u;
          ${guard(c.BB * (c.DK / 4), u, `for (var t = 0u; t < 4u; t++) { ${bS(`(4u * d4 + t) * ${c.BB / 4}u + n / 4u`)}[n % 4u] = pb${u}[t]; }`)}
        }`, "")}`;

  /** Declares acc0..acc(CB−1) and sums A·Bᵀ into them over `width` in chunks of DK. */
  const product = (acc: string, A: string, B: string, width: number, scaleA = "", scaleB = "") => `
${zeroTile(acc, CB, "      ")}${loadChunks(A, B, width, "0u", scaleA, scaleB)}
      for (var d0 = 0u; d0 < ${width}u; d0 += ${c.DK}u) {
        workgroupBarrier();${storeChunks}
        workgroupBarrier();
        if (d0 + ${c.DK}u < ${width}u) {${loadChunks(A, B, width, `d0 + ${c.DK}u`, scaleA, scaleB)}
        }
        for (var d = 0u; d < ${c.DK}u; d++) {
          let av = ${aS(`d * ${RG}u + rg`)};
${fmaRow(acc, "av", "b", CB, (j4) => bS(`d * ${c.BB / 4}u + c + ${step(j4)}`), "          ")}
        }
      }`;

  /** Loads NV streamed rows at n0 (width floats each) into ps*. */
  const loadRows = (B: string, width: number, n0: string) => unroll(stRows(width), (u) => `
        {
          let idx = tid + ${u * NT}u;
          let col = tile + (${n0}) + idx / ${width / 4}u;
          ps${u} = vec4<f32>(0.0);
          if (${within(c.NV * (width / 4), u)}col < col_limit) { ps${u} = ${B}[(${bBase} + col) * ${width / 4}u + idx % ${width / 4}u]; }
        }`, "");
  const storeRows = (width: number) => unroll(stRows(width), (u) => `
        {
          let idx = tid + ${u * NT}u;
          ${guard(c.NV * (width / 4), u, `${stS(`(idx / ${width / 4}u) * ${W / 4}u + idx % ${width / 4}u`)} = ps${u};`)}
        }`, "");

  /** acc(j) += Σ_n tile_s[n][rg] · B[n][cols], B staged NV rows at a time. */
  const accumulate = (acc: string, tileArr: string, B: string, width: number) => `${loadRows(B, width, "0u")}
      for (var n0 = 0u; n0 < ${c.BB}u; n0 += ${c.NV}u) {
        workgroupBarrier();${storeRows(width)}
        workgroupBarrier();
        if (n0 + ${c.NV}u < ${c.BB}u) {${loadRows(B, width, `n0 + ${c.NV}u`)}
        }
        for (var n = 0u; n < ${c.NV}u; n++) {
          let pv = ${tileArr}[(n0 + n) * ${RG}u + rg];
${fmaRow(acc, "pv", "v", width / c.G, (j4) => stS(`n * ${W / 4}u + c + ${step(j4)}`), "          ")}
        }
      }`;

  const declareAcc = (acc: string, width: number) =>
    L ? `  var ${acc}: array<RV, ${width / c.G}>;\n${zeroTile(acc, width / c.G, "  ")}` : zeroTile(acc, width / c.G, "  ");

  const store = (acc: string, off: string, width: number, factor: string) => `
  for (var i = 0u; i < ${c.TA}u; i++) {
    let row = row0 + rg * ${c.TA}u + i;
    if (row < row_limit) {
      let o = ${off} + (${aBase} + row) * ${width / 4}u;${L ? `
      for (var j4 = 0u; j4 < ${upTo(width / (4 * c.G))}; j4++) {
        grads[o + c + ${c.G}u * j4] = vec4<f32>(${unroll(4, (t) => at(`${acc}[4u * j4 + ${t}u]`, "i"), ", ")})${factor};
      }` : `
${unroll(width / (4 * c.G), (j4) => `      grads[o + c + ${c.G * j4}u] = vec4<f32>(${unroll(4, (t) => at(`${acc}${4 * j4 + t}`, "i"), ", ")})${factor};`)}`}
    }
  }`;

  // q and kv of an element (owner row, streamed column) in each mode
  const qi = dq ? "i32(row)" : "i32(col)";
  const ki = dq ? "i32(col)" : "i32(row)";
  const ldOf = dq ? `ld_row[i]` : `ld_s[col - tile]`;

  // a fixed index (dq: free of kv and score, capIndexFixed; dK/dV with partials: free of q and score): a slot's word
  // is known from its owner row alone, so the elements only add to cg_sum and the flush asks cap_index once per row
  // (no per-element index, word register or branch)
  const fixedRows = fixedIndex && (dq || partials);
  const capDecl = nReads === 0 ? "" : `${fixedRows ? "" : `
  var cg_idx: array<u32, ${nReads * c.TA}>;`}
  var cg_sum: array<f32, ${nReads * c.TA}>;
  for (var r = 0u; r < ${SLOTS}u; r++) { ${fixedRows ? "" : "cg_idx[r] = NO_INDEX; "}cg_sum[r] = 0.0; }${partials ? `
  for (var r = 0u; r < ${ES}u; r++) { cg_emit_s[r * ${NT}u + tid] = vec2<u32>(NO_INDEX, 0u); }
  // this workgroup's private slice of the capture-gradient partials${dq ? `
  let cg_slice = 1u + (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * ${capGrad.words}u;` : `
  // (dK/dV: slices of all chunks' launches, by flattened kv head then owner tile)
  let cg_slice = 1u + ((P.head0 + wid.y) * ${headsFastest ? "nwg.y" : "nwg.x"} + wid.x) * ${capGrad.words}u;`}` : ""}`;
  const capUpdate = Array.from({ length: nReads }, (_, r) => `
              {
                let gi = cap_grad_${r}(raw, ib, ih, ${qi}, ${ki});
                flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(gi));${fixedRows ? `
                cg_sum[${r * c.TA}u + i] += ds * gi; // the row's word: at the flush (capIndexFixed${dq ? "" : "Dkdv"})` : `
                let ix = cap_index_${r}(raw, ib, ih, ${qi}, ${ki});
                let slot = ${r * c.TA}u + i;${fixedIndex ? `
                cg_idx[slot] = ix; // the same word at every column of this row (capIndexFixedDkdv: of this group head)` : `
                if (ix != cg_idx[slot]) {
                  if (cg_idx[slot] != NO_INDEX) { ${partials ? "cg_emit(slot, tid, cg_idx[slot], cg_sum[slot]);" : "atomic_add_f32(1u + cg_idx[slot], cg_sum[slot]);"} }
                  cg_idx[slot] = ix;
                  cg_sum[slot] = 0.0;
                }`}
                if (ix != NO_INDEX) { cg_sum[slot] += ds * gi; }`}
              }`).join("");
  // dK/dV: a slot's run ends with its group head (h changes with hg): emit, merge and reset after each one
  const capFlushDkdv = nReads === 0 ? "" : fixedRows ? `
    for (var i = 0u; i < ${c.TA}u; i++) {
      let kv_row = i32(row0 + rg * ${c.TA}u + i);${Array.from({ length: nReads }, (_, r) => `
      {
        let ix = cap_index_${r}(0.0, i32(b), i32(h), 0, kv_row); // free of q and score: any q, any score
        if (ix != NO_INDEX) { cg_emit(${r}u, tid, ix, cg_sum[${r * c.TA}u + i]); }
        cg_sum[${r * c.TA}u + i] = 0.0;
      }`).join("")}
      cg_round(tid, cg_slice);
    }` : `
    for (var r = 0u; r < ${SLOTS}u; r++) {
      if (cg_idx[r] != NO_INDEX) { ${partials ? "cg_emit(r, tid, cg_idx[r], cg_sum[r]);" : "atomic_add_f32(1u + cg_idx[r], cg_sum[r]);"} }
      cg_idx[r] = NO_INDEX;
      cg_sum[r] = 0.0;
    }${partials ? `
    cg_round(tid, cg_slice);` : ""}`;
  // dq, fixed index: each in-range owner row's word once, free of kv and score (any kv, any score)
  const capFlushFixed = `
  for (var i = 0u; i < ${c.TA}u; i++) {
    let row = row0 + rg * ${c.TA}u + i;
    if (row < row_limit) {${Array.from({ length: nReads }, (_, r) => `
      {
        let ix = cap_index_${r}(0.0, i32(b), i32(h), i32(row), 0);
        if (ix != NO_INDEX) { ${partials ? `cg_emit(${r * c.TA}u + i, tid, ix, cg_sum[${r * c.TA}u + i]);` : `atomic_add_f32(1u + ix, cg_sum[${r * c.TA}u + i]);`} }
      }`).join("")}
    }
  }${partials ? `
  cg_round(tid, cg_slice);` : ""}`;
  const capFlush = nReads === 0 ? "" : fixedRows ? capFlushFixed : partials ? `
  for (var r = 0u; r < ${SLOTS}u; r++) {
    if (cg_idx[r] != NO_INDEX) { cg_emit(r, tid, cg_idx[r], cg_sum[r]); }
  }
  cg_round(tid, cg_slice);` : `
  for (var r = 0u; r < ${SLOTS}u; r++) {
    if (cg_idx[r] != NO_INDEX) { atomic_add_f32(1u + cg_idx[r], cg_sum[r]); }
  }`;

  // per element: mods, P, dS, dS' (and capture gradients), written to the tile arrays
  const element = (j: number | string) => `
      {
        let cl = ${typeof j === "number" ? colOf(j) : `${4 * c.G}u * (${j} / 4u) + ${j} % 4u + 4u * c`};
        let col = tile + cl;${features.dropout && !dq ? `
        let rk_col = drop_row_key(b, h, col); // the query row's dropout key, shared by the TA kv rows` : ""}
        for (var i = 0u; i < ${upTo(c.TA)}; i++) {
          let row = row0 + rg * ${c.TA}u + i;
          var p = 0.0;
          var dsm = 0.0;
          if (row < row_limit && col < col_limit) {
            let ld = ${ldOf};
            let ib = i32(b);
            let ih = i32(h);
            if (${features.rowsSafe ? "" : "ld.x != POS_INF && "}(!partial || mask_mod(ib, ih, ${qi}, ${ki}))) {
              let raw = ${at(reg("s", j), "i")}${features.prescaleQk ? "" : " * P.scale"};
              let sm = ${hooks.identityScore ? "raw" : `score_mod(raw, ib, ih, ${qi}, ${ki})`};
              if (bitcast<u32>(sm) != NEG_INF_BITS) {
                p = exp2(sm * LOG2E - ld.x);${features.dropout ? `
                let z = drop_factor(${dq ? "rk_row[i]" : "rk_col"}, ${dq ? "col" : "row"});
                let ds = p * (z * ${at(reg("dp", j), "i")} - ld.y);
                p = p * z; // dV takes the dropped P` : `
                let ds = p * (${at(reg("dp", j), "i")} - ld.y);`}
                ${hooks.identityScore ? "dsm = ds;" : `let g = score_mod_grad(raw, ib, ih, ${qi}, ${ki});
                flex_err = flex_err | select(0u, ERR_UNDEFINED, is_nan(g));
                dsm = ds * g;`}${capUpdate}
              }
            }
          }
          ${one ? `${at("ds_s[cl * " + RG + "u + rg]", "i")} = p; // oneTile: P first, dS' kept in the dead score register
          ${at(reg("s", j), "i")} = dsm;` : `${dq ? "" : `${at("p_s[cl * " + RG + "u + rg]", "i")} = p;`}
          ${at(`ds_s[cl * ${RG}u + rg]`, "i")} = dsm;`}
        }${partials && !fixedIndex ? `
        cg_round(tid, cg_slice);` : ""}
      }`;
  const elementwise = L ? `
      for (var j = 0u; j < ${upTo(CB)}; j++) {${element("j").replace(/\n/g, "\n  ")}
      }` : unroll(CB, element, "");

  const walk = (body: string) => backwardBlockWalk(dq, c.BB, body);

  // dS' of the tile → dsg[(q head in chunk · Sq + q) · stride + kv]: consecutive threads take consecutive kv rows
  // (owner rows), so the global stores coalesce; ds_s holds the tile after one barrier. dsVec4: a thread stores the
  // vec4 of its 4 kv rows (rows past row_limit hold 0 and land in the stride's padding)
  const dsVec4 = writeDs && features.dsVec4 === true && c.TA === 4;
  const compact = writeDs && features.dsCompact === true;
  // dS' of (q = tile + n, kv = row0 + r) in floats: the compact slot of this block, or the dense row
  const dsAt = (n: string, r: string) =>
    (compact ? `ds_slot * P.QB * P.KB + (tile + ${n} - sb * P.QB) * P.KB + row0 - ablk * P.KB` : `(ds_head + tile + ${n}) * ${DS_ROW_STRIDE_WGSL} + row0`) + (r ? ` + ${r}` : "");
  const dsStore = `
      workgroupBarrier();
      {
        ${compact ? "let ds_slot = caps[P.off_ds_head + b * P.Hq + h] - P.ds_base + caps[P.off_ds_slot + trow * P.row_width + blk];" : "let ds_head = ((b * P.Hq + h) - P.head0 * group) * P.Sq;"}${dsVec4 ? `
        for (var e = tid; e < ${c.BB * RG}u; e += ${NT}u) {
          let n = e / ${RG}u;
          let g = e % ${RG}u;
          if (tile + n < col_limit && row0 + 4u * g < row_limit) {
            dsg[(${dsAt("n", "")}) / 4u + g] = ds_s[n * ${RG}u + g];
          }
        }` : `
        for (var e = tid; e < ${c.BA * c.BB}u; e += ${NT}u) {
          let n = e / ${c.BA}u;
          let r = e % ${c.BA}u;
          if (tile + n < col_limit && row0 + r < row_limit) {
            dsg[${dsAt("n", "r")}] = ${at(`ds_s[n * ${RG}u + r / ${c.TA}u]`, `r % ${c.TA}u`)};
          }
        }`}
      }`;

  const tileBody = `${dq ? "" : `
      workgroupBarrier();
      for (var n = tid; n < ${c.BB}u; n += ${NT}u) {
        var x = vec2<f32>(POS_INF, 0.0);
        if (tile + n < col_limit) { x = ldg[b_base + tile + n]; }
        ld_s[n] = x;
      }`}
      // ---- S = A·Bᵀ and dP = A'·B'ᵀ (unscaled), in registers
${product("s", ax, bx, c.D, features.prescaleQk && dq ? " * P.scale" : "", features.prescaleQk && !dq ? " * P.scale" : "")}
${product("dp", ay, by, c.Dv)}
      // ---- mods, P and dS per element
${elementwise}${one ? `
      // ---- dV from P (in ds_s), then dS' from the score registers over it
${accumulate("acc_v", "ds_s", "dog", c.Dv)}
      workgroupBarrier();
${L ? `      for (var j = 0u; j < ${upTo(CB)}; j++) { ds_s[(${4 * c.G}u * (j / 4u) + j % 4u + 4u * c) * ${RG}u + rg] = s[j]; }` : unroll(CB, (j) => `      ds_s[(${colOf(j)}) * ${RG}u + rg] = s${j};`)}${writeDs ? dsStore : ""}
${accumulate("acc_k", "ds_s", "qg", c.D)}` : `${writeDs ? dsStore : ""}
      // ---- accumulate over the tile's streamed rows
${dq ? accumulate("acc_a", "ds_s", "kg", c.D) : `${accumulate("acc_v", "p_s", "dog", c.Dv)}
${accumulate("acc_k", "ds_s", "qg", c.D)}`}`}`;

  const main = dq
    ? `${backwardOwnerCoords(true, c.BA)}
  var ld_row: array<vec2<f32>, ${c.TA}>;
  for (var i = 0u; i < ${c.TA}u; i++) {
    let row = row0 + rg * ${c.TA}u + i;
    ld_row[i] = vec2<f32>(POS_INF, 0.0);
    if (row < row_limit) { ld_row[i] = ldg[a_base + row]; }
  }${features.dropout ? `
  var rk_row: array<u32, ${c.TA}>;
  for (var i = 0u; i < ${c.TA}u; i++) { rk_row[i] = drop_row_key(b, h, row0 + rg * ${c.TA}u + i); }` : ""}
${declareAcc("acc_a", c.D)}${capDecl}
  {
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;${walk(tileBody)}
  }${capFlush}
${store("acc_a", "0u", c.D, " * P.scale")}`
    : `${backwardOwnerCoords(false, c.BA, writeDs ? "(P.head0 + wid.y) % P.Hkv" : "wid.y")}
${declareAcc("acc_k", c.D)}
${declareAcc("acc_v", c.Dv)}${capDecl}
  for (var hg = 0u; hg < group; hg++) {
    let h = hk * group + hg;
    let b_base = (b * P.Hq + h) * P.Sq;
    let trow = b * P.tb_stride_b + h * P.tb_stride_h + ablk;${walk(tileBody)}${capFlushDkdv}
  }
${store("acc_k", "P.off_dk", c.D, " * P.scale")}
${store("acc_v", "P.off_dv", c.Dv, "")}`;

  return /* wgsl */ `
// FlexAttention backward (${dq ? "dQ" : "dK/dV"}), portable family (f32). Generated by kernels/flex_backward.ts.
//
// Glossary
//   owner rows (A)  ${dq ? "query rows of head h" : "key rows of kv head hk (GQA: the group's query heads are looped)"}; BLOCK_A = ${c.BA} per
//                   workgroup, never straddling a mask block (a_tiles workgroups per block)
//   streamed (B)    ${dq ? "key columns listed by the q block's kv tables" : "query rows listed by the kv block's q-major tables"}, BLOCK_B = ${c.BB} per tile;
//                   partial blocks apply mask_mod, full blocks skip it
//   TA = ${c.TA}, G = ${c.G}  rows per thread, threads per row group (RG = ${RG} groups, ${NT} threads); lane c owns
//                   streamed columns 4c + 4G·j + {0..3} and output columns of the same pattern
//   DK = ${c.DK}, NV = ${c.NV}  D chunk of the dot products, streamed rows staged per accumulation step
//   ld = (lse·log2 e, Δ) per query row (kernels/flex_bwd_aux.ts); lse = −∞ rows hold +∞ and contribute 0
//   P = exp2(s'·log2 e − lse·log2 e), dS = P∘(dP − Δ), dS' = dS · ∂score_mod/∂score (0 where masked)
//   dropout = ${!!features.dropout}: z = 0 or 1/(1 − p) per entry (the forward's hash), dS = P∘(z∘dP − Δ), dV from P∘z
//   prescaleQk = ${!!features.prescaleQk}: q is scaled where staged for S; rowsSafe = ${!!features.rowsSafe}: no lse = −∞ test
//   err[0] bit 0: a captured tensor indexed out of range; bit 1: a NaN derivative at an attended entry.
//   ${!dq || nReads === 0 ? "" : partials
    ? `err[1 + wg·${capGrad.words} + w]: workgroup wg's partial sums of the captured-tensor gradients (plain stores, one owner per word)`
    : "err[1 + w]: captured-tensor gradient accumulators (u32-packed f32, compare-exchange adds)"}

struct Params {
  B: u32, Hq: u32, Hkv: u32, Sq: u32, Skv: u32, QB: u32, KB: u32, a_tiles: u32,
  row_width: u32, tb_stride_b: u32, tb_stride_h: u32, off_num: u32, off_idx: u32, off_full_num: u32,
  off_full_idx: u32, has_full: u32, scale: f32, off_dk: u32, off_dv: u32, ${writeDs ? "head0" : "pad0"}: u32,
  ${DROPOUT_PARAMS}${compact ? `
  ${DS_COMPACT_PARAMS}` : ""}
}

@group(0) @binding(0) var<storage, read> qg: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kg: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> vg: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dog: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> ldg: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> caps: array<u32>;
@group(0) @binding(6) var<storage, read_write> err: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> grads: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> P: Params;${writeDs ? `
@group(0) @binding(9) var<storage, read_write> dsg: array<${dsVec4 ? "vec4<f32>" : "f32"}>; // [q heads of the chunk][Sq][stride] dS'` : ""}

alias RV = ${RV};
const LOG2E: f32 = 1.4426950408889634;
const NEG_INF_BITS: u32 = 0xff800000u;
const NO_INDEX: u32 = 0xffffffffu;
const ERR_UNDEFINED: u32 = ${ERR_UNDEFINED_DERIVATIVE}u;
${ERROR_BITS_DECL}
${features.dropout ? DROPOUT_WGSL : ""}

${share ? `var<workgroup> stage_s: array<vec4<f32>, ${Math.max(c.DK * RG + (c.DK * c.BB) / 4, (c.NV * W) / 4)}>; // a_s [DK][RG] ‖ b_s [DK][BLOCK_B / 4], or st_s [NV][max(D, Dv) / 4]` : `var<workgroup> a_s: array<RV, ${c.DK * RG}>;               // [DK][RG] owner chunk
var<workgroup> b_s: array<vec4<f32>, ${(c.DK * c.BB) / 4}>;   // [DK][BLOCK_B / 4] streamed chunk (transposed)`}
var<workgroup> ds_s: array<RV, ${c.BB * RG}>;              // [BLOCK_B][RG] dS' of the tile${one ? " (P first: oneTile)" : ""}
${dq ? "" : `${one ? "" : `var<workgroup> p_s: array<RV, ${c.BB * RG}>;               // [BLOCK_B][RG] P of the tile
`}var<workgroup> ld_s: array<vec2<f32>, ${c.BB}>;          // (lse·log2 e, Δ) of the tile's query rows`}
${share ? "" : `var<workgroup> st_s: array<vec4<f32>, ${(c.NV * W) / 4}>;   // [NV][max(D, Dv) / 4] streamed rows
`}${partials ? `var<workgroup> cg_emit_s: array<vec2<u32>, ${ES * NT}>; // [reads${rowRounds ? " (one owner row a round)" : "·TA"}][threads] emitted (word, f32 bits)
var<workgroup> cg_any: atomic<u32>;                         // some thread emitted in this step
var<workgroup> cg_flag: u32;
var<private> cg_emitted: bool;` : ""}
fn pos_inf() -> f32 { var bits = 0x7f800000u; return bitcast<f32>(bits); }
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
${partials ? `
fn cg_emit(slot: u32, tid: u32, w: u32, x: f32) {
  cg_emit_s[slot * ${NT}u + tid] = vec2<u32>(w, bitcast<u32>(x));
  cg_emitted = true;
}

fn cg_add(wi: u32, x: f32) {
  atomicStore(&err[wi], bitcast<u32>(bitcast<f32>(atomicLoad(&err[wi])) + x));
}

// One merge step (workgroup-uniform): the owner of word w (thread w % ${NT}) adds the emitted pairs of w, in
// (slot, thread) order, to the workgroup's slice; a fixed order, so the sums are bit-reproducible. Consecutive
// pairs of one word are summed in a register first (one global read-modify-write per run, not per pair: all
// ${ES * NT} pairs of a per-head capture are one word).
fn cg_round(tid: u32, slice: u32) {
  if (cg_emitted) { atomicOr(&cg_any, 1u); }
  workgroupBarrier();
  if (tid == 0u) { cg_flag = atomicExchange(&cg_any, 0u); }
  if (workgroupUniformLoad(&cg_flag) != 0u) {
    var run_w = NO_INDEX;
    var run = 0.0;
    for (var e = 0u; e < ${ES * NT}u; e++) {
      let p = cg_emit_s[e];
      if (p.x != NO_INDEX && p.x % ${NT}u == tid) {
        if (p.x != run_w) {
          if (run_w != NO_INDEX) { cg_add(slice + run_w, run); }
          run_w = p.x;
          run = 0.0;
        }
        run += bitcast<f32>(p.y);
      }
    }
    if (run_w != NO_INDEX) { cg_add(slice + run_w, run); }
    workgroupBarrier();
    if (cg_emitted) {
      for (var r = 0u; r < ${ES}u; r++) { cg_emit_s[r * ${NT}u + tid] = vec2<u32>(NO_INDEX, 0u); }
      cg_emitted = false;
    }
  }
}` : nReads === 0 ? "" : `
// Race-free float add on a u32 word (compare-exchange loop).
fn atomic_add_f32(i: u32, x: f32) {
  var old = atomicLoad(&err[i]);
  loop {
    let r = atomicCompareExchangeWeak(&err[i], old, bitcast<u32>(bitcast<f32>(old) + x));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`}

${hooks.preamble}

${hooks.scoreMod}

${hooks.maskMod}

${hooks.identityScore ? "" : hooks.scoreModGrad}

${nReads === 0 ? "" : hooks.capCode}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) ${headsFastest ? "wid_grid" : "wid"}: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {${headsFastest ? `
  let wid = vec3<u32>(wid_grid.y, wid_grid.x, wid_grid.z); // the grid runs the heads fastest (dsHeadsFastest)` : ""}
  let POS_INF = pos_inf();
  let b = ${writeDs ? "(P.head0 + wid.y) / P.Hkv" : "wid.z"};
  let rg = tid / ${c.G}u;
  let c = tid % ${c.G}u;${L ? `
  let zero = P.has_full & 2u; // 0: hides the loops' trip counts from the shader compiler (has_full is 0 or 1)
  var s: array<RV, ${CB}>;
  var dp: array<RV, ${CB}>;` : ""}
${unroll(LA, (u) => `  var pa${u}: vec4<f32>;`)}
${unroll(LB, (u) => `  var pb${u}: vec4<f32>;`)}
${unroll(LS, (u) => `  var ps${u}: vec4<f32>;`)}
${main}
  ${FLUSH_ERRORS}
}
`;
}
