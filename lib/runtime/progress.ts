/**
 * A one-line progress bar on stderr for long steps (autotuning, the demo's sections, big mask builds):
 *   [flex autotune] forward f32 D64 ▕██████░░░░░░░░░░░░░░▏ 3/10
 * Drawn only when stderr is a terminal (Deno.stderr.isTerminal(), process.stderr.isTTY), so piped output and
 * CI logs stay clean; redrawn in place with a carriage return, ended with a newline at the last step.
 */

export interface Progress {
  /** Sets the count of finished steps (optionally a new label) and redraws. */
  update(done: number, label?: string): void;
  /** Marks one more step finished. */
  tick(label?: string): void;
  /** Erases the bar's line so other output can be printed; the next update draws it again. */
  clear(): void;
  /** Ends the bar (a newline) even if not every step was counted. */
  done(): void;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

/** Whether stderr is an interactive terminal (false where it cannot be known). */
export function stderrIsTerminal(): boolean {
  try {
    if (g.Deno?.stderr?.isTerminal) return g.Deno.stderr.isTerminal();
    return g.process?.stderr?.isTTY === true;
  } catch {
    return false;
  }
}

let writer: ((text: string) => void) | undefined;

/** Redirects the bar's output and forces it on (tests); undefined restores stderr-when-a-terminal. */
export function setProgressWriter(fn: ((text: string) => void) | undefined): void { writer = fn; }

function write(text: string): void {
  if (writer) return writer(text);
  if (g.Deno?.stderr?.writeSync) g.Deno.stderr.writeSync(new TextEncoder().encode(text));
  else g.process?.stderr?.write?.(text);
}

const SILENT: Progress = { update() {}, tick() {}, clear() {}, done() {} };

/** A bar of `total` steps under `title`; a no-op object when stderr is not a terminal. */
export function progress(title: string, total: number): Progress {
  if (!writer && !stderrIsTerminal()) return SILENT;
  let count = 0, current = "", ended = false;
  const width = 20;
  const draw = () => {
    const fill = total > 0 ? Math.min(width, Math.round((count / total) * width)) : width;
    const label = current ? ` ${current}` : "";
    // \x1b[K clears what a longer earlier label left on the line
    write(`\r[flex ${title}]${label} ▕${"█".repeat(fill)}${"░".repeat(width - fill)}▏ ${count}/${total}\x1b[K`);
  };
  const bar: Progress = {
    update(done, label) {
      if (ended) return;
      count = done;
      if (label !== undefined) current = label;
      draw();
      if (count >= total) bar.done();
    },
    tick(label) { bar.update(count + 1, label); },
    clear() { if (!ended) write("\r\x1b[K"); },
    done() {
      if (ended) return;
      ended = true;
      write("\n");
    },
  };
  draw();
  return bar;
}
