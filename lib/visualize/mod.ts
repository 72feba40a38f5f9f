/** Pictures of BlockMasks and attention scores (PNG and SVG). */
export { BLOCK_COLORS, blockMaskPng, visualizeBlockMask, type VisualizeBlockMaskOptions } from "./block_mask_picture.ts";
export { MASKED_COLOR, scoresPng, scoresSvg, visualizeScores, type VisualizeScoresOptions } from "./scores_picture.ts";
export { type ScoreMatrix, scoreMatrix, type ScoreMatrixOptions } from "./score_matrix.ts";
export type { PictureFormat } from "./output.ts";
