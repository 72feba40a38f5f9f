// Type-checked by tests/package/npm_smoke.sh with the TypeScript compiler against the INSTALLED package's .d.ts
// (skipLibCheck off, so the declarations themselves are checked too): the exports resolve, the types are real
// (a misspelt option is an error, not `any`), and the Effect entry is typed.
import { causalMask, createBlockMask, flexAttention, randn, ShapeError, type Tensor, type TypedData } from "@flex/attention";
import { cpuLayer, Gpu, runPromise } from "@flex/attention/effect";
import { Effect } from "effect";

const q: Tensor = randn([1, 2, 64, 16]);
const mask = await createBlockMask(causalMask, null, null, 64, 64);
const out: Tensor = flexAttention(q, q, q, { blockMask: mask });
const { lse }: { lse: Tensor } = flexAttention(q, q, q, { returnLse: true });
const values: TypedData = await out.toArray();
const tag: "ShapeError" = new ShapeError({ message: "x" })._tag;
// @ts-expect-error a misspelt option must be a type error
flexAttention(q, q, q, { blockmask: mask });
// @ts-expect-error v is missing
flexAttention(q, q);
const realized: TypedData[] = await runPromise(
  Effect.gen(function* () { return yield* (yield* Gpu).executor.realize([out]); }).pipe(Effect.provide(cpuLayer)),
);
export const used = [values.length, lse.shape, tag, realized.length];
