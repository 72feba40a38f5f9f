/**
 * The bad-input table: distinct bad inputs across the public API, each giving its typed error (its `_tag`)
 * with a message that says what to change — and the runtime still works after every one of them
 * (a realize on the same runtime right after each row).
 */
import { describe, expect, it } from "../harness.ts";
import { releaseGpuAfterAll } from "../gpu.ts";
import {
  andMasks, arange, BlockMask, cast, causalMask, createBlockMask, createMask, flexAttention, full, gather, matmul, notMask,
  orMasks, randn, reshape, softmax, sum, type Tensor, tensor, transpose, vjp, where, add, expand, repeatInterleave, grad,
} from "../../mod.ts";

const q4 = (S = 16, D = 16, H = 2, dtype: "f32" | "f16" = "f32") => randn([1, H, S, D], { dtype });
type Row = [name: string, run: () => unknown, tag: string, says: RegExp];

const ROWS: Row[] = [
  // shapes and dtypes
  ["q of rank 3", () => flexAttention(randn([2, 16, 16]), q4(), q4()), "ShapeError", /4-D/],
  ["q not a Tensor", () => flexAttention([1, 2] as never, q4(), q4()), "InvalidArgument", /must be a Tensor/],
  ["i32 q", () => flexAttention(tensor(new Int32Array(512), [1, 2, 16, 16]), q4(), q4()), "DTypeError", /f32 or f16/],
  ["mixed f16 / f32", () => flexAttention(q4(16, 16, 2, "f16"), q4(), q4()), "DTypeError", /cast\(/],
  ["batch sizes differ (k/v batch neither 1 nor q's)", () => flexAttention(randn([3, 2, 16, 16]), randn([2, 2, 16, 16]), randn([2, 2, 16, 16])), "ShapeError", /batch 1/],
  ["q/k head dims differ", () => flexAttention(q4(16, 32), q4(16, 16), q4(16, 16)), "ShapeError", /head dim/],
  ["k and v lengths differ", () => flexAttention(q4(), q4(16), q4(20)), "ShapeError", /agree/],
  ["head dim 12 (< 16)", () => flexAttention(q4(16, 12), q4(16, 12), q4(16, 12)), "HeadDimError", /16/],
  ["head dim 18 (not a multiple of 4)", () => flexAttention(q4(16, 18), q4(16, 18), q4(16, 18)), "HeadDimError", /multiple of 4/],
  ["head dim 512", () => flexAttention(q4(4, 512), q4(4, 512), q4(4, 512)), "HeadDimError", /256/],
  ["GQA without enableGqa", () => flexAttention(q4(16, 16, 4), q4(16, 16, 2), q4(16, 16, 2)), "HeadCountError", /enableGqa/],
  ["[B, S, H, D] layout passed for q, k, v", () => flexAttention(randn([1, 128, 4, 16]), randn([1, 64, 2, 16]), randn([1, 64, 2, 16])), "HeadCountError", /transpose\(t, 1, 2\)/],
  ["GQA heads not a multiple", () => flexAttention(q4(16, 16, 3), q4(16, 16, 2), q4(16, 16, 2), { enableGqa: true }), "HeadCountError", /multiple/],
  ["scale NaN", () => flexAttention(q4(), q4(), q4(), { scale: NaN }), "InvalidArgument", /finite/],
  ["options null", () => flexAttention(q4(), q4(), q4(), null as never), "InvalidArgument", /options must be an object/],
  ["blockMask not a BlockMask", () => flexAttention(q4(), q4(), q4(), { blockMask: {} as never }), "InvalidArgument", /createBlockMask/],
  ["unknown kernelOptions key", () => flexAttention(q4(), q4(), q4(), { kernelOptions: { tileSize: 4 } as never }), "InvalidArgument", /not an option/],
  ["kernelOptions.blockM 3", () => flexAttention(q4(), q4(), q4(), { kernelOptions: { blockM: 3 } }), "InvalidArgument", /divisor/],
  ["kernelOptions.splitKv 0", () => flexAttention(q4(), q4(), q4(), { kernelOptions: { splitKv: 0 } }), "InvalidArgument", /positive integer/],
  ["kernelOptions.family bogus", () => flexAttention(q4(), q4(), q4(), { kernelOptions: { family: "fast" as never } }), "InvalidArgument", /portable/],
  ["kernelOptions.autotune bogus", () => flexAttention(q4(), q4(), q4(), { kernelOptions: { autotune: "yes" as never } }), "InvalidArgument", /heuristic/],
  // lengths vs BlockMask
  ["BlockMask built for other lengths", async () => flexAttention(q4(32), q4(32), q4(32), { blockMask: await createBlockMask(causalMask, null, null, 16, 16) }), "BlockMaskMismatch", /adjust|createBlockMask/],
  ["BlockMask batch 3 for B 1", async () => flexAttention(q4(), q4(), q4(), { blockMask: await createBlockMask(causalMask, 3, null, 16, 16) }), "BlockMaskMismatch", /batch/],
  ["BlockMask heads 5 for H 2", async () => flexAttention(q4(), q4(), q4(), { blockMask: await createBlockMask(causalMask, null, 5, 16, 16) }), "BlockMaskMismatch", /heads/],
  // block sizes and lengths
  ["block size 0", () => createBlockMask(causalMask, null, null, 16, 16, { blockSize: 0 }), "InvalidArgument", /positive/],
  ["block size 65536", () => createBlockMask(causalMask, null, null, 8, 8, { blockSize: 65536 }), "InvalidArgument", /32768|2\^15|at most/],
  ["block size 1.5", () => createBlockMask(causalMask, null, null, 16, 16, { blockSize: 1.5 }), "InvalidArgument", /integer/],
  ["qLen 0", () => createBlockMask(causalMask, null, null, 0, 16), "InvalidArgument", /qLen/],
  ["createMask kvLen NaN", () => createMask(causalMask, null, null, 16, NaN), "InvalidArgument", /kvLen/],
  // mods
  ["mask mod with JS >=", () => createBlockMask((_b, _h, q, kv) => (q as never) >= (kv as never) as never, null, null, 16, 16), "ModOperatorError", /\.ge\(/],
  ["score mod with JS *", () => flexAttention(q4(), q4(), q4(), { scoreMod: (s) => (s as never as number) * 2 as never }), "ModOperatorError", /mul/],
  ["mask mod dropping a term with &&", () => createBlockMask((_b, _h, q, kv) => q.ge(kv) && q.sub(kv).le(4), null, null, 16, 16), "ModOperatorError", /and/],
  ["mask mod of 2 parameters", () => createBlockMask(((q: never, kv: { ge(x: never): never }) => kv.ge(q)) as never, null, null, 16, 16), "ModArityError", /\(b, h, q, kv\)/],
  ["score mod returning a bool", () => flexAttention(q4(), q4(), q4(), { scoreMod: (_s, _b, _h, q, kv) => q.ge(kv) }), "ModReturnTypeError", /mask/],
  ["mask mod returning a number", () => createBlockMask((_b, _h, q, kv) => q.sub(kv), null, null, 16, 16), "ModReturnTypeError", /bool/],
  ["mask mod returning undefined", () => createBlockMask((() => undefined) as never, null, null, 16, 16), "ModReturnTypeError", /must return/],
  ["and on floats in a mod", () => createBlockMask((_b, _h, q, kv) => q.toFloat().and(kv.ge(0)), null, null, 16, 16), "ModTypeError", /bool/],
  ["mask mod that throws", () => createBlockMask(() => { throw new RangeError("user bug"); }, null, null, 16, 16), "", /user bug/],
  ["andMasks with a number", () => andMasks(causalMask, 5 as never), "InvalidArgument", /function/],
  ["orMasks with null", () => orMasks(null as never), "InvalidArgument", /function/],
  ["notMask with a string", () => notMask("causal" as never), "InvalidArgument", /function/],
  // captured tensors
  ["captured tensor read out of range", async () => {
    const t = tensor([1, 2, 3], [3]);
    return await flexAttention(q4(), q4(), q4(), { scoreMod: (s, _b, _h, q) => s.add(t.at(q)) }).toArray();
  }, "CaptureOutOfRange", /index/],
  ["captured tensor read with too many indices", () => {
    const t = tensor([1, 2, 3], [3]);
    return flexAttention(q4(), q4(), q4(), { scoreMod: (s, _b, _h, q, kv) => s.add(t.at(q, kv)) });
  }, "ShapeError", /ind/],
  // tensors and ops
  ["tensor() data does not fill the shape", () => tensor([1, 2, 3], [2, 2]), "ShapeError", /fill/],
  ["i32 value out of range", () => tensor([3e9], [1], { dtype: "i32" }), "DTypeError", /i32/],
  ["i32 fill 1.5", () => full([2], 1.5, { dtype: "i32" }), "DTypeError", /integer/],
  ["unknown dtype", () => tensor([1], [1], { dtype: "f64" as never }), "DTypeError", /dtype/],
  ["randn of i32", () => randn([2], { dtype: "i32" as never }), "DTypeError", /floating|f32/],
  ["reshape to a different size", () => reshape(randn([2, 3]), [4, 2]), "ShapeError", /reshape/],
  ["add of non-broadcastable shapes", () => add(randn([2, 3]), randn([4, 3])), "ShapeError", /broadcast|shape/],
  ["matmul inner dims differ", () => matmul(randn([2, 3]), randn([4, 5])), "ShapeError", /matmul/],
  ["transpose dim out of range", () => transpose(randn([2, 3]), 0, 5), "InvalidArgument", /dim/],
  ["softmax of an i32 tensor", () => softmax(arange(4), 0), "DTypeError", /f32/],
  ["gather with an f32 index", () => gather(randn([2, 3]), 1, randn([2, 3])), "DTypeError", /i32/],
  ["where with a non-bool condition", () => where(randn([2]), randn([2]), randn([2])), "DTypeError", /bool/],
  ["expand to an incompatible shape", () => expand(randn([2, 3]), [4, 4]), "ShapeError", /expand/],
  ["repeatInterleave by 1.5", () => repeatInterleave(randn([2, 3]), 1.5, 1), "InvalidArgument", /repeat|integer/],
  ["cast f32 → i32", () => cast(randn([2]), "i32"), "DTypeError", /cast/],
  // autodiff
  ["grad of a non-scalar", () => grad((x: Tensor) => x)(randn([3])), "GradError", /scalar/],
  ["vjp of an i32 primal", () => vjp((x: Tensor) => x, arange(3)), "DTypeError", /gradients/],
  ["vjp bare Tensor cotangent for { out, lse }", () => {
    const [, back] = vjp((q: Tensor) => flexAttention(q, q, q, { returnLse: true }), q4());
    return back(q4() as never);
  }, "GradError", /structure/],
  ["vjp cotangent of the wrong shape", () => vjp((x: Tensor) => sum(x), randn([3]))[1](randn([2])), "GradError", /shape/],
  // BlockMask constructors
  ["fromKvBlocks with a float table", () => BlockMask.fromKvBlocks(randn([1, 1, 2]), tensor(new Int32Array(4), [1, 1, 2, 2])), "DTypeError|InvalidArgument|ShapeError", /i32|int/],
];

describe("bad inputs give typed errors that say what to change, and the runtime keeps working", () => {
  it(`the table has at least 40 distinct cases (${ROWS.length})`, () => {
    expect(new Set(ROWS.map((r) => r[0])).size).toBe(ROWS.length);
    expect(ROWS.length).toBeGreaterThanOrEqual(40);
  });
  for (const [name, run, tag, says] of ROWS) {
    it(name, async () => {
      let err: unknown;
      try { await run(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(Error);
      const got = (err as { _tag?: string })._tag ?? "";
      expect({ name, tag: tag.split("|").includes(got) ? tag : got }).toEqual({ name, tag });
      expect({ name, message: says.test((err as Error).message) ? "says what to change" : (err as Error).message }).toEqual({ name, message: "says what to change" });
      // the same runtime still realizes a real call
      const ok = await flexAttention(q4(8, 16, 1), q4(8, 16, 1), q4(8, 16, 1)).toArray();
      expect(ok.every(Number.isFinite)).toBe(true);
    });
  }
});

releaseGpuAfterAll();
