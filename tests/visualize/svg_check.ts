/** A strict-enough SVG check without a DOM: one <svg> root, tags balanced and nested, attributes quoted. */
import { expect } from "../harness.ts";

export function checkWellFormedSvg(svg: string): void {
  expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true);
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let m: RegExpExecArray | null, end = 0, roots = 0;
  while ((m = tag.exec(svg)) !== null) {
    // only text between tags (no stray '<' or '>')
    expect(/[<>]/.test(svg.slice(end, m.index))).toBe(false);
    end = m.index + m[0].length;
    const [, close, name, , self] = m;
    if (close) expect(stack.pop()).toBe(name);
    else if (!self) { if (stack.length === 0) roots++; stack.push(name); }
  }
  expect(svg.slice(end).trim()).toBe("");
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}
