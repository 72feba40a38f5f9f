/** The (b, h) a picture shows: validated the same way by every visualizer. */
import { InvalidArgument } from "../errors.ts";

/** `value` (default 0) as an index into `size` slots, or InvalidArgument naming `fn` and the option. */
export function pictureSlot(fn: string, name: string, value: number | undefined, size: number): number {
  const v = value ?? 0;
  if (!Number.isInteger(v) || v < 0 || v >= size) {
    throw new InvalidArgument({ message: `${fn}: ${name} must be an integer in [0, ${size - 1}], got ${value}` });
  }
  return v;
}
