/** andMasks / orMasks / notMask given something that is not a function: an InvalidArgument at once, not a TypeError later. */
import { describe, expect, it } from "../harness.ts";
import { andMasks, causalMask, InvalidArgument, notMask, orMasks } from "../../mod.ts";

describe("hardening: mask algebra arguments", () => {
  it("andMasks(causalMask, 5) is an InvalidArgument naming the argument", () => {
    let err: unknown;
    try { andMasks(causalMask, 5 as never); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(InvalidArgument);
    expect((err as Error).message).toContain("andMasks: argument 1 is number");
  });

  it("orMasks / notMask / a single non-function argument too", () => {
    expect(() => orMasks(causalMask, null as never)).toThrow(InvalidArgument);
    expect(() => notMask("causal" as never)).toThrow(InvalidArgument);
    expect(() => andMasks(undefined as never)).toThrow(InvalidArgument);
    expect(() => orMasks({} as never)).toThrow(InvalidArgument);
  });

  it("functions are still combined", () => {
    expect(andMasks(causalMask, causalMask).name).toBe("and(causal, causal)");
    expect(notMask(causalMask).name).toBe("not(causal)");
  });
});
