/**
 * Timing helpers of `diffmem bench` and `npm run bench`: every figure is wall time and process CPU
 * time (all threads), since other jobs on a shared machine stretch wall time but not CPU time.
 * @module
 */

/** One measured operation: medians (or minima, see {@link bestOf}) over the timed repeats. */
export interface Timing {
  /** Wall-clock milliseconds. */
  wallMs: number;
  /** Process CPU milliseconds (user + system, every thread). */
  cpuMs: number;
  /** Timed repeats (after the warm-up). */
  reps: number;
}

/** Milliseconds of a `process.cpuUsage()` reading. */
export function cpuMsOf(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1000;
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function measure(fn: () => unknown, reps: number, warmup: number): Promise<{ walls: number[]; cpus: number[] }> {
  if (!Number.isInteger(reps) || reps < 1) throw new RangeError(`reps must be a positive integer, got ${reps}`);
  for (let i = 0; i < warmup; i++) await fn();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c = process.cpuUsage();
    const w = performance.now();
    await fn();
    walls.push(performance.now() - w);
    cpus.push(cpuMsOf(process.cpuUsage(c)));
  }
  return { walls, cpus };
}

/** Runs `fn` `warmup` + `reps` times; the median wall and CPU time of the timed runs. */
export async function timed(fn: () => unknown, reps: number, warmup = 1): Promise<Timing> {
  const { walls, cpus } = await measure(fn, reps, warmup);
  return { wallMs: median(walls), cpuMs: median(cpus), reps };
}

/**
 * Runs `fn` `warmup` + `reps` times; the minimum wall and CPU time (the least disturbed estimate
 * for micro-benchmarks whose runs last milliseconds).
 */
export async function bestOf(fn: () => unknown, reps: number, warmup = 2): Promise<Timing> {
  const { walls, cpus } = await measure(fn, reps, warmup);
  return { wallMs: Math.min(...walls), cpuMs: Math.min(...cpus), reps };
}

/** `12.3 ms`, `4.1 s`, or `—` for a missing figure. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === undefined || ms === null || !Number.isFinite(ms)) return '—';
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}
