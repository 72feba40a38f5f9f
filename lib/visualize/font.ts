/**
 * A 3×5 pixel font for the labels of the PNG pictures (legend, colour bar, title). PNG has no text, and a
 * font file would be a heavier dependency than these few glyphs; SVG pictures use real text instead.
 * Upper case only: text is upper-cased before drawing; an unknown character draws as a blank.
 */
const GLYPHS: Record<string, string> = {
  "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
  "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
  "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
  "+": "000010111010000", "=": "000111000111000", ",": "000000000010100", ":": "000010000010000",
  "(": "001010010010001", ")": "100010010010100", "%": "101001010100101", "/": "001001010100100",
  "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
  "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
  "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
  "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
  "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
  "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
  "Y": "101101010010010", "Z": "111001010100111",
};

/** Glyph width and height in font pixels (plus one column of spacing between glyphs). */
export const GLYPH_W = 3, GLYPH_H = 5;

/** Calls `dot(x, y)` for every lit font pixel of `text`, x/y in font pixels from the text's top left. */
export function glyphDots(text: string, dot: (x: number, y: number) => void): void {
  const chars = [...text.toUpperCase()];
  chars.forEach((ch, i) => {
    const g = GLYPHS[ch];
    if (!g) return;
    for (let p = 0; p < 15; p++) if (g[p] === "1") dot(i * (GLYPH_W + 1) + (p % 3), Math.floor(p / 3));
  });
}

/** Width in font pixels of `text`. */
export function textWidth(text: string): number {
  const n = [...text].length;
  return n === 0 ? 0 : n * (GLYPH_W + 1) - 1;
}
