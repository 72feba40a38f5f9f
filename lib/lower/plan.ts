/**
 * The contract between lowering and the GPU executor: a node becomes a NodePlan, a list of kernel
 * launches over named bindings. The executor allocates and uploads the buffers, caches pipelines by
 * `code`, records every launch of a realize into one command encoder (one submit), and reads back.
 */
import type { Tensor } from "../tensor/tensor.ts";

export type Binding =
  /** A read-only storage buffer holding an already realized (or uploaded const) tensor. */
  | { readonly kind: "input"; readonly tensor: Tensor }
  /** A read_write storage buffer of `tensor.size` elements of its dtype (f16: packed pairs in u32 words) that becomes `tensor`'s value. */
  | { readonly kind: "output"; readonly tensor: Tensor }
  /** Data uploaded for this launch (packed block tables, packed captures), read-only storage. */
  | {
    readonly kind: "data";
    readonly data: Uint32Array | Int32Array | Float32Array;
    /**
     * The plan reuses this same array object across calls (packed block tables, packed captures): the
     * executor may keep its upload for as long as the array lives instead of uploading it every realize.
     */
    readonly persistent?: boolean;
  }
  /** Zero-initialized read_write storage shared by name across the plan's launches (error flags, partials);
   * `readOnly`: this launch reads what an earlier launch of the plan wrote (bound as read-only storage). */
  | { readonly kind: "scratch"; readonly name: string; readonly bytes: number; readonly readOnly?: boolean }
  /** A uniform buffer (sizes, strides, scale): lengths travel here so no kernel is rebuilt for a new length. */
  | { readonly kind: "uniform"; readonly data: Uint32Array };

export interface KernelLaunch {
  readonly label: string;
  /** Complete WGSL module; bindings are `@group(0) @binding(i)` in the order of `bindings`. */
  readonly code: string;
  readonly entryPoint: string;
  readonly bindings: readonly Binding[];
  readonly workgroups: readonly [number, number, number];
}

export interface NodePlan {
  readonly launches: readonly KernelLaunch[];
  /** Every node this plan defines (e.g. both `out` and `lse` of one fused call). */
  readonly defines: readonly Tensor[];
  /**
   * u32 scratch words the executor must read back after the submit; a non-zero value fails the realize
   * with the error `fail(value)` builds (e.g. a captured tensor indexed out of range).
   */
  readonly checks: readonly { readonly scratch: string; readonly fail: (value: number) => Error }[];
  /**
   * Tiered compilation (lib/runtime/tiered_compile.ts): a plan defining the same nodes with kernels that compile
   * fast. The executor may answer from it while this plan's pipelines compile in the background (Dawn's async
   * compile), then from this plan. The two may differ in the last bits.
   */
  readonly quick?: () => NodePlan;
}
