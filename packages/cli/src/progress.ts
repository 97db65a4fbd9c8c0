/**
 * Progress bars for long work (training, sampling, audits) on stderr: redrawn in place on a
 * TTY, one line per ~10% otherwise (CI logs, pipes), silent under `--json`/`--quiet`.
 * @module
 */

/** Where and how to report. */
export interface ProgressOptions {
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  quiet?: boolean;
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** One progress bar. */
export class ProgressBar {
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  private readonly quiet: boolean;
  private readonly start = performance.now();
  private lastDecile = -1;
  private lastDraw = 0;

  constructor(
    readonly label: string,
    readonly total: number,
    o: ProgressOptions = {},
  ) {
    this.stream = o.stream ?? process.stderr;
    this.quiet = o.quiet ?? false;
  }

  /** Reports `done` of `total`, with an optional short status (e.g. `loss 0.031`). */
  update(done: number, status = ''): void {
    if (this.quiet) return;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const elapsed = (performance.now() - this.start) / 1000;
    const eta = frac > 0 ? (elapsed / frac) * (1 - frac) : Infinity;
    const tail = `${done}/${this.total} ${fmtSeconds(elapsed)} eta ${fmtSeconds(eta)}${status ? ` ${status}` : ''}`;
    if (this.stream.isTTY) {
      const now = performance.now();
      if (now - this.lastDraw < 80 && done < this.total) return;
      this.lastDraw = now;
      const width = Math.max(10, Math.min(30, (this.stream.columns ?? 80) - this.label.length - tail.length - 6));
      const fill = Math.round(frac * width);
      this.stream.write(`\r${this.label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${tail}\x1b[K`);
      if (done >= this.total) this.stream.write('\n');
    } else {
      const decile = Math.floor(frac * 10);
      if (decile > this.lastDecile || done >= this.total) {
        this.lastDecile = decile;
        this.stream.write(`${this.label}: ${Math.round(frac * 100)}% ${tail}\n`);
      }
    }
  }

  /** Ends the bar (prints a final line on a TTY if it was not complete). */
  done(status = ''): void {
    this.update(this.total, status);
  }
}
