/**
 * Functional reverse-mode autodiff over the lazy Tensor graph, JAX's convention:
 *
 *   const [y, back] = vjp(f, q, k, v);     back(dy) → [dq, dk, dv]
 *   grad(loss)(q, k, v)                    → [dq, dk, dv]            (loss returns a scalar, shape [])
 *   valueAndGrad(loss)(q, k, v)            → [value, [dq, dk, dv]]
 *
 * Everything returned is a lazy Tensor; nothing is mutated (no `.grad` fields). `f` may return a Tensor,
 * an array of Tensors or an object of Tensors (e.g. `{ out, lse }`); the cotangent has the same structure,
 * with null / undefined meaning zero. The primals are the differentiation variables: the sweep stops at
 * them (a primal computed from another primal outside `f` is treated as independent, as in JAX).
 */
import { full, Tensor, zeros } from "../tensor/tensor.ts";
import { DTypeError, GradError } from "../errors.ts";
import { accumulate, ruleFor, type VjpContext } from "./vjp_rules.ts";
import { runPasses } from "./pipeline.ts";

/**
 * What a differentiated function may return: a Tensor, an array of them, or a record of them.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, vjp } from "@flex/attention";
 * const q = randn([1, 1, 64, 16]);
 * // a record of outputs: back takes a record of cotangents
 * const [y, back] = vjp((q) => flexAttention(q, q, q, { returnLse: true }), q);
 * const [dq] = back({ out: randn(y.out.shape), lse: randn(y.lse.shape) });
 * ```
 */
export type Outputs = Tensor | readonly Tensor[] | { readonly [key: string]: Tensor };
/**
 * The cotangent `back` takes for outputs Y: the same structure, each entry a Tensor (null / undefined: zero).
 *
 * @example
 * ```ts
 * import { flexAttention, randn, vjp } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const [{ out, lse }, back] = vjp((q) => flexAttention(q, k, v, { returnLse: true }), q);
 * const [dq] = back({ out: randn(out.shape) }); // no cotangent for lse: zero
 * ```
 */
export type Cotangent<Y> = Y extends Tensor ? Tensor | null | undefined
  : Y extends readonly Tensor[] ? readonly (Tensor | null | undefined)[]
  : { readonly [K in keyof Y]?: Tensor | null };

/**
 * The function `vjp` returns: cotangent of the outputs → one gradient per input.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, vjp } from "@flex/attention";
 * const [q, k, v] = [randn([1, 1, 64, 16]), randn([1, 1, 64, 16]), randn([1, 1, 64, 16])];
 * const [out, back] = vjp((q, k, v) => flexAttention(q, k, v), q, k, v);
 * const [dq, dk, dv] = back(randn(out.shape));
 * ```
 */
export type Back<Y> = (cotangent: Cotangent<Y>) => Tensor[];

function flatten(y: Outputs): { leaves: Tensor[]; keys: (string | number)[] | null } {
  if (y instanceof Tensor) return { leaves: [y], keys: null };
  if (Array.isArray(y)) return { leaves: [...y], keys: y.map((_, i) => i) };
  if (y && typeof y === "object") {
    const keys = Object.keys(y);
    return { leaves: keys.map((k) => (y as Record<string, Tensor>)[k]), keys };
  }
  throw new GradError({ message: `vjp: f must return a Tensor, an array or an object of Tensors, got ${typeof y}` });
}

const isFloat = (t: Tensor) => t.dtype === "f32" || t.dtype === "f16";

function checkPrimals(xs: readonly unknown[], who: string): Tensor[] {
  return xs.map((x, i) => {
    if (!(x instanceof Tensor)) throw new GradError({ message: `${who}: argument ${i} is not a Tensor` });
    if (!isFloat(x)) {
      throw new DTypeError({
        message: `${who}: argument ${i} is ${x.dtype}; only f32 / f16 tensors have gradients (i32 tensors such as document ids ` +
          `or captured indices get none: close over them in f instead of passing them as arguments)`,
      });
    }
    return x;
  });
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Every node the outputs depend on, inputs before users (iterative: graphs may be deep). */
function topoOrder(roots: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  const stack: [Tensor, boolean][] = roots.map((r): [Tensor, boolean] => [r, false]).reverse();
  while (stack.length) {
    const [node, expanded] = stack.pop()!;
    if (expanded) { order.push(node); continue; }
    if (seen.has(node.id)) continue;
    seen.add(node.id);
    stack.push([node, true]);
    for (let i = node.inputs.length - 1; i >= 0; i--) if (!seen.has(node.inputs[i].id)) stack.push([node.inputs[i], false]);
  }
  return order;
}

const isFlexOutput = (t: Tensor) => t.op === "flexOut" || t.op === "flexLse";

/**
 * Reverse accumulation from `outputs` (with cotangents `cts`, undefined = zero) to the primals `xs`.
 *
 * @example
 * ```ts
 * import { backward, mul, randn } from "@flex/attention";
 * const x = randn([3]);
 * const y = mul(x, x);
 * const [dx] = backward([y], [randn([3])], [x]); // 2·x·dy
 * ```
 */
export function backward(given: readonly Tensor[], cts: readonly (Tensor | undefined)[], xs: readonly Tensor[]): Tensor[] {
  // fused before differentiating: the backward of a hand-written attention is the flex backward
  const outputs = runPasses(given);
  const primal = new Set(xs.map((x) => x.id));
  const order = topoOrder(outputs);
  // needs: the node is f32 and leads to a primal (gradients flow only along such nodes)
  const needs = new Map<number, boolean>();
  for (const n of order) {
    needs.set(n.id, isFloat(n) && (primal.has(n.id) || n.inputs.some((i) => needs.get(i.id))));
  }
  const ct = new Map<number, Tensor>();
  outputs.forEach((o, i) => { if (cts[i]) ct.set(o.id, accumulate(ct.get(o.id), cts[i]!)); });
  // both outputs of one flex call must have their full cotangents before its (shared) rule runs
  const pending = new Map<unknown, number>();
  for (const n of order) if (isFlexOutput(n) && needs.get(n.id)) pending.set(n.arg, (pending.get(n.arg) ?? 0) + 1);
  const membersOf = (call: unknown) => order.filter((n) => isFlexOutput(n) && n.arg === call);

  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k];
    if (primal.has(node.id) || !needs.get(node.id)) continue;
    let g = ct.get(node.id);
    if (isFlexOutput(node)) {
      const left = pending.get(node.arg)! - 1;
      pending.set(node.arg, left);
      if (left > 0) continue;
      g = membersOf(node.arg).map((m) => ct.get(m.id)).find((c) => c !== undefined);
    }
    if (!g) continue;
    const ctx: VjpContext = { needs: (i) => needs.get(node.inputs[i].id) === true, cotangentOf: (t) => ct.get(t.id) };
    const parts = ruleFor(node.op)(node, g, ctx);
    node.inputs.forEach((input, i) => {
      const part = parts[i];
      if (!part || !ctx.needs(i)) return;
      if (!sameShape(part.shape, input.shape)) {
        throw new GradError({
          message: `autodiff: the rule of "${node.op}" gave a cotangent of shape [${part.shape}] for an input of shape [${input.shape}]`,
        });
      }
      ct.set(input.id, accumulate(ct.get(input.id), part));
    });
  }
  return xs.map((x) => ct.get(x.id) ?? zeros(x.shape, { dtype: x.dtype }));
}

/**
 * `vjp(f, ...xs)` → `[f(...xs), back]`; `back(cotangent)` → one lazy cotangent per primal.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, vjp } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const [out, back] = vjp((q, k, v) => flexAttention(q, k, v), q, k, v);
 * const [dq, dk, dv] = back(randn(out.shape)); // lazy Tensors
 * ```
 */
export function vjp<X extends Tensor[], Y extends Outputs>(f: (...xs: X) => Y, ...xs: X): [Y, Back<Y>] {
  const primals = checkPrimals(xs, "vjp");
  if (typeof f !== "function") throw new GradError({ message: "vjp: the first argument must be a function of Tensors" });
  const y = f(...xs);
  const { leaves, keys } = flatten(y);
  leaves.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw new GradError({ message: `vjp: output ${keys ? keys[i] : 0} of f is not a Tensor` });
  });
  const back: Back<Y> = (cotangent) => {
    const given: unknown[] = keys === null ? [cotangent]
      : keys.map((key) => (cotangent as Record<string | number, unknown> | null | undefined)?.[key]);
    if (keys !== null && (cotangent === null || typeof cotangent !== "object" || cotangent instanceof Tensor)) {
      throw new GradError({
        message: `vjp: f returned ${Array.isArray(keys) && typeof keys[0] === "number" ? "an array" : `an object { ${keys.join(", ")} }`} of Tensors, so the ` +
          `cotangent must have that structure (e.g. { out: dOut } or [dOut]; leave out or pass null for outputs without a cotangent), got ` +
          `${cotangent instanceof Tensor ? "a bare Tensor" : String(cotangent)}`,
      });
    }
    const cts = given.map((c, i) => {
      if (c === null || c === undefined) return undefined;
      const out = leaves[i];
      const name = keys ? `output ${keys[i]}` : "the output";
      if (!(c instanceof Tensor)) throw new GradError({ message: `vjp: the cotangent of ${name} is not a Tensor` });
      if (c.dtype !== out.dtype && isFloat(out)) {
        throw new DTypeError({ message: `vjp: the cotangent of ${name} must have its dtype ${out.dtype}, got ${c.dtype} (convert with cast(c, "${out.dtype}"))` });
      }
      if (!sameShape(c.shape, out.shape)) {
        throw new GradError({ message: `vjp: the cotangent of ${name} has shape [${c.shape}], expected [${out.shape}]` });
      }
      if (!isFloat(out)) throw new GradError({ message: `vjp: ${name} is ${out.dtype}, which has no gradient` });
      return c;
    });
    return backward(leaves, cts, primals);
  };
  return [y, back];
}

function scalarValue(y: unknown, who: string): Tensor {
  if (!(y instanceof Tensor)) throw new GradError({ message: `${who}: f must return a scalar Tensor (shape []), got ${typeof y}` });
  if (y.rank !== 0) {
    throw new GradError({
      message: `${who}: f must return a scalar (shape []), got shape [${y.shape}]; reduce it first (e.g. sum(...)) or use vjp with a cotangent`,
    });
  }
  if (!isFloat(y)) throw new GradError({ message: `${who}: f returned an ${y.dtype} scalar, which has no gradient` });
  return y;
}

const ONE = (dtype: Tensor["dtype"] = "f32") => full([], 1, { dtype });

/**
 * `valueAndGrad(f)(...xs)` → `[f(...xs), [df/dx...]]` for a scalar-valued f.
 *
 * @example
 * ```ts
 * import { flexAttention, randn, sum, type Tensor, valueAndGrad } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const [loss, [dq]] = valueAndGrad((q: Tensor) => sum(flexAttention(q, k, v)))(q);
 * ```
 */
export function valueAndGrad<X extends Tensor[]>(f: (...xs: X) => Tensor): (...xs: X) => [Tensor, Tensor[]] {
  return (...xs) => {
    const [y, back] = vjp(f, ...xs);
    const value = scalarValue(y, "valueAndGrad");
    return [value, back(ONE(value.dtype))];
  };
}

/**
 * `grad(f)(...xs)` → `[df/dx...]` for a scalar-valued f.
 *
 * @example
 * ```ts
 * import { flexAttention, grad, randn, sum, type Tensor } from "@flex/attention";
 * const [q, k, v] = [0, 1, 2].map(() => randn([1, 2, 128, 32]));
 * const [dq, dk, dv] = grad((q: Tensor, k: Tensor, v: Tensor) => sum(flexAttention(q, k, v)))(q, k, v);
 * ```
 */
export function grad<X extends Tensor[]>(f: (...xs: X) => Tensor): (...xs: X) => Tensor[] {
  return (...xs) => {
    const [y, back] = vjp(f, ...xs);
    const value = scalarValue(y, "grad");
    return back(ONE(value.dtype));
  };
}
