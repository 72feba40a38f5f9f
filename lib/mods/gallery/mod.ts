/** The gallery of mods, one file each (attention-gym's layout), and the GALLERY table. */
export { causalMask } from "./causal.ts";
export { slidingWindow } from "./sliding_window.ts";
export { prefixLm } from "./prefix_lm.ts";
export { documentMask } from "./document_mask.ts";
export { docIdsFromOffsets, jaggedMask } from "./jagged.ts";
export { sasa } from "./sasa.ts";
export { natten } from "./natten.ts";
export { alibi, alibiSlopes } from "./alibi.ts";
export { softcap } from "./softcap.ts";
export { softcapApprox } from "./softcap_approx.ts";
export { tanhApprox, tanhApproxValue } from "./tanh_approx.ts";
export { checkerboard } from "./checkerboard.ts";
export { flamingo, flamingoIntervals } from "./flamingo.ts";
export { GALLERY, type GalleryEntry, galleryOffsets, imageShape } from "./table.ts";
