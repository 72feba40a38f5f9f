/**
 * Running Effects as Promises that reject with the library's tagged error itself (Effect's own
 * runPromise wraps failures), so `instanceof CaptureOutOfRange` and `.message` work for Promise users.
 */
import { Cause, Effect, Exit, Option } from "effect";

/** The expected error of a failed run (a tagged error), else the defect or interruption squashed to one value. */
export function failureOf<E>(cause: Cause.Cause<E>): unknown {
  const expected = Cause.findErrorOption(cause);
  return Option.isSome(expected) ? expected.value : Cause.squash(cause);
}

export function unwrapExit<A, E>(exit: Exit.Exit<A, E>): A {
  if (Exit.isSuccess(exit)) return exit.value;
  throw failureOf(exit.cause);
}

/** Effect.runPromise, rejecting with the failure itself. */
export async function runPromise<A, E>(effect: Effect.Effect<A, E>): Promise<A> {
  return unwrapExit(await Effect.runPromiseExit(effect));
}
