/**
 * The gallery's pictures: BlockMask pictures (PNG + SVG) of causal, sliding window, document and NATTEN, and
 * score pictures of alibi and softcap under a causal mask — small sizes (S = 256 masks in 16-token blocks, 64×64
 * scores), so it costs well under a second on any provider. `deno task demo` calls it; alone:
 *   deno run -A examples/pictures.ts [folder]     (default ./flex-pictures/)
 */
import { causalMask, createBlockMask, GALLERY, randn, visualizeBlockMask, visualizeScores } from "../mod.ts";

/** Writes the pictures into `dir` (created if missing); returns the file names written. */
export async function writeGalleryPictures(dir: string): Promise<string[]> {
  const { mkdir } = await import("node:fs/promises");
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const S = 256;
  for (const name of ["causal", "slidingWindow", "document", "natten"] as const) {
    const entry = GALLERY[name];
    if (entry.kind !== "mask") continue;
    const mask = await createBlockMask(entry.make(S), null, null, S, S, { blockSize: 16 });
    for (const ext of ["png", "svg"]) {
      await visualizeBlockMask(mask, { path: `${dir}/mask_${name}.${ext}`, title: name });
      written.push(`mask_${name}.${ext}`);
    }
  }
  const [H, Ss, D] = [4, 64, 16];
  const q = randn([1, H, Ss, D]), k = randn([1, H, Ss, D]);
  for (const name of ["alibi", "softcap"] as const) {
    const entry = GALLERY[name];
    if (entry.kind !== "score") continue;
    for (const ext of ["png", "svg"]) {
      // head 1: alibi's slope there is 1/4 (steep enough to see the fade away from the diagonal)
      await visualizeScores(q, k, { scoreMod: entry.make(Ss, H), maskMod: causalMask, h: 1, path: `${dir}/scores_${name}.${ext}`, title: `${name} causal` });
      written.push(`scores_${name}.${ext}`);
    }
  }
  return written;
}

if (import.meta.main) {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  const dir = (g.Deno ? g.Deno.args : g.process.argv.slice(2))[0] ?? "./flex-pictures";
  const files = await writeGalleryPictures(dir);
  console.log(`pictures: ${files.length} files in ${dir}/`);
}
