import { describe, expect, it, relL2 } from "./harness.ts";
describe("harness", () => {
  it("adds", () => { expect(1 + 1).toBe(2); });
  it("relL2", () => { expect(relL2([1, 2], [1, 2])).toBe(0); expect(relL2([NaN], [1])).toBe(Infinity); });
});
