import { Effect } from "effect";
import { describe, expect, it } from "../harness.ts";
import { SelfTestFailed } from "../../lib/errors.ts";
import { selfTest, selfTestMismatch } from "../../lib/runtime/self_test.ts";
import { miscompilingSource, workingSource, layerFailure, withGpu, WRITES_NOTHING_WGSL, WRONG_ANSWER_WGSL } from "./fakes.ts";
import { runPromise } from "../../lib/runtime/run.ts";

const real = await workingSource();
const noAdapter = real ? false : "no WebGPU adapter from Dawn or navigator.gpu here";

describe("runtime self-test", () => {
  it("selfTestMismatch accepts 3i+1 and names the first wrong or unwritten element", () => {
    const good = Uint32Array.from({ length: 1000 }, (_, i) => 3 * i + 1);
    expect(selfTestMismatch(good)).toBeUndefined();
    const wrong = good.slice(); wrong[17] = 5;
    expect(selfTestMismatch(wrong)).toContain("y[17] = 5");
    const unwritten = good.slice(); unwritten[999] = 0xffffffff;
    expect(selfTestMismatch(unwritten)).toContain("unwritten");
    expect(selfTestMismatch(good.subarray(0, 10))).toContain("expected 1000");
  });

  it.skipIf(noAdapter)("a real adapter passes the self-test (again, on its open device)", async () => {
    await withGpu({ provider: real!.name }, (g) => runPromise(selfTest(g.device!, g.executor.info.adapter)));
  });

  it.skipIf(noAdapter)("an adapter whose kernel gives a wrong answer is refused with SelfTestFailed", async () => {
    const e = await layerFailure({ provider: real!.name, sources: { [real!.name]: miscompilingSource(real!, WRONG_ANSWER_WGSL) } });
    expect(e).toBeInstanceOf(SelfTestFailed);
    expect((e as Error).message).toContain("y[500] = 7");
    expect((e as SelfTestFailed).adapter.length).toBeGreaterThan(0);
  });

  it.skipIf(noAdapter)("an adapter whose kernel writes nothing is refused (poisoned output)", async () => {
    const e = await layerFailure({ provider: real!.name, sources: { [real!.name]: miscompilingSource(real!, WRITES_NOTHING_WGSL) } });
    expect(e).toBeInstanceOf(SelfTestFailed);
    expect((e as Error).message).toContain("unwritten");
  });

  it.skipIf(noAdapter)("auto mode passes over a refused adapter to the next provider", async () => {
    const bad = miscompilingSource(real!, WRONG_ANSWER_WGSL);
    const g = await withGpu({ provider: "auto", sources: { dawn: bad, native: bad } }, (g) => g);
    expect(g.executor.info.provider).toBe("cpu");
    expect(g.skipped[0]).toContain("self-test");
  });

  it("an Effect failure of the self-test is typed (catchTag)", async () => {
    const tag = await runPromise(Effect.fail(new SelfTestFailed({ adapter: "x", message: "m" })).pipe(
      Effect.catchTag("SelfTestFailed", (e) => Effect.succeed(e._tag)),
    ));
    expect(tag).toBe("SelfTestFailed");
  });
});
