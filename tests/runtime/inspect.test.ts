/**
 * `console.log(tensor)` shows dtype, shape and realized-or-lazy (Deno.customInspect and Node's / Bun's
 * util.inspect.custom), not the node's fields (id, inputs, arg).
 */
import { inspect } from "node:util";
import { describe, expect, it, runtime } from "../harness.ts";
import { describeTensor, tensor } from "../../lib/tensor/tensor.ts";
import { add } from "../../lib/tensor/ops.ts";

describe("tensor inspect", () => {
  const c = tensor([[0.1, 2], [3, -4.25]]);
  const big = tensor(Int32Array.from({ length: 10 }, (_, i) => i * 3), [2, 5], { dtype: "i32" });
  const lazy = add(c, c);

  it("describes constants with their first values and lazy nodes with their op", () => {
    expect(describeTensor(c)).toBe("Tensor(f32 [2, 2], realized) [0.1, 2, 3, -4.25]");
    expect(describeTensor(big)).toBe("Tensor(i32 [2, 5], realized) [0, 3, 6, 9, 12, 15, … 4 more]");
    expect(describeTensor(lazy)).toBe("Tensor(f32 [2, 2], lazy: add)");
  });

  it("util.inspect (Node, Bun, Deno's node:util) uses it, also nested in objects", () => {
    expect(inspect(lazy)).toBe("Tensor(f32 [2, 2], lazy: add)");
    const nested = inspect({ out: c });
    expect(nested).toContain("out: Tensor(f32 [2, 2], realized) [0.1, 2, 3, -4.25]");
    expect(nested).not.toContain("inputs");
  });

  it.skipIf(runtime !== "deno" && "Deno.inspect is Deno's")("Deno.inspect (console.log under Deno) uses it", () => {
    // deno-lint-ignore no-explicit-any
    const D = (globalThis as any).Deno;
    expect(D.inspect(lazy)).toBe("Tensor(f32 [2, 2], lazy: add)");
    expect(D.inspect([c])).toContain("Tensor(f32 [2, 2], realized)");
  });
});
