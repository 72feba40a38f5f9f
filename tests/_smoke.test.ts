import { describe, expect, it, relL2 } from "./harness.ts";
describe("smoke", () => {
  it("adds", () => { expect(1 + 1).toBe(2); });
  it("relL2", () => { expect(relL2([1, 2], [1, 2])).toBe(0); expect(relL2([NaN], [1])).toBe(Infinity); });
  it.skipIf("no reason to run")("skipped one", () => { throw new Error("x"); });
});
