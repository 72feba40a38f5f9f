/**
 * Where a picture goes: the format (explicit, else from the path's extension, else PNG) and writing the file
 * under Deno (Deno.writeFile) or Node/Bun (node:fs/promises), so the same call works in all three; in a
 * browser pass no path and use the returned bytes/string.
 */
import { InvalidArgument } from "../errors.ts";

/**
 * The file format of a picture: "png" (bytes) or "svg" (text).
 *
 * @example
 * ```ts
 * import type { PictureFormat } from "@flex/attention";
 * const format: PictureFormat = "svg";
 * ```
 */
export type PictureFormat = "png" | "svg";

export function pictureFormat(fn: string, format: PictureFormat | undefined, path: string | undefined): PictureFormat {
  if (format !== undefined && format !== "png" && format !== "svg") {
    throw new InvalidArgument({ message: `${fn}: format must be "png" or "svg", got ${JSON.stringify(format)}` });
  }
  if (format) return format;
  return path?.toLowerCase().endsWith(".svg") ? "svg" : "png";
}

export async function writePicture(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  if (deno?.writeFile) return await deno.writeFile(path, bytes);
  // deno-lint-ignore no-explicit-any
  if (!(globalThis as any).process?.versions?.node) {
    throw new InvalidArgument({ message: `cannot write ${path}: no file system here (a browser?); leave out path and use the returned picture` });
  }
  const fs = await import("node:fs/promises");
  await fs.writeFile(path, bytes);
}
