/**
 * One small typed wrapper around `child_process.spawn` for ffmpeg and ffprobe.
 *
 * No shell and no fluent-ffmpeg (archived and npm-deprecated in 2025; it only built command lines):
 * the argument lists are fixed in `probe.ts`, `decode.ts` and `encode.ts`. What this module adds:
 * - stdout as a plain `Readable` (callers pull from it, so backpressure reaches ffmpeg: when the
 *   consumer is slow the pipe fills and ffmpeg blocks in `write`);
 * - stdin writes that resolve when the chunk is flushed and reject (never hang) when ffmpeg has
 *   exited early, instead of an unhandled `EPIPE`;
 * - stderr kept as a bounded tail (last 64 KiB) and split into lines for log parsers;
 * - wall-clock and idle timeouts and an `AbortSignal`, each of which kills the process (SIGTERM,
 *   then SIGKILL after a grace period) and rejects with a typed error;
 * - `exited`, which settles only after the process is reaped (no zombies) and rejects with
 *   {@link FfmpegProcessError} on a non-zero exit, quoting the stderr tail.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { ConfigError } from '@diffmem/core';
import {
  FfmpegAbortError,
  FfmpegProcessError,
  FfmpegTimeoutError,
  type FfmpegError,
  type FfmpegProcessDetails,
} from './errors.js';

/** Default bound on the stderr kept for error messages. */
export const STDERR_TAIL_BYTES = 64 * 1024;

/** Options of {@link startFfmpeg}. */
export interface FfmpegRunOptions {
  /** Kill the process after this many ms in total (default: none). */
  timeoutMs?: number;
  /**
   * Kill the process when it produces nothing (stdout or stderr) for this many ms while the caller
   * is waiting for it (default: none). Time the caller spends holding data (backpressure, see
   * {@link FfmpegProcess.holdIdle}) does not count.
   */
  idleTimeoutMs?: number;
  /** Kill the process when this signal aborts. */
  signal?: AbortSignal;
  /** Delay between SIGTERM and SIGKILL when killing (default 1000 ms). */
  killGraceMs?: number;
  /** Give the process a writable stdin (default false: stdin is /dev/null). */
  stdin?: boolean;
  /** Give the process a readable stdout (default true). */
  stdout?: boolean;
  /** Bytes of stderr kept for errors (default {@link STDERR_TAIL_BYTES}). */
  stderrTailBytes?: number;
  /** Called with every complete stderr line (without the newline). */
  onStderrLine?: (line: string) => void;
  /** Short description used in error messages, e.g. `'decoding clip.mp4'`. */
  label?: string;
}

/** How a process ended successfully. */
export interface FfmpegExit {
  exitCode: 0;
  stderrTail: string;
}

/** Thrown by {@link FfmpegProcess.write} when stdin can no longer take data (ffmpeg has exited). */
export class StdinClosedError extends Error {
  constructor(cause?: unknown) {
    super('ffmpeg closed its stdin (it exited or stopped reading)');
    this.name = 'StdinClosedError';
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause;
  }
}

/** A running ffmpeg/ffprobe process. */
export interface FfmpegProcess {
  readonly binary: string;
  readonly args: readonly string[];
  /** Process id (undefined if spawning failed). */
  readonly pid: number | undefined;
  /** The process's stdout (throws if started with `stdout: false`). */
  readonly stdout: Readable;
  /**
   * Settles after the process has exited and been reaped: resolves on exit code 0; rejects with
   * {@link FfmpegProcessError} (non-zero exit, spawn failure), {@link FfmpegTimeoutError} or
   * {@link FfmpegAbortError}. Never rejects unhandled: a no-op handler is attached.
   */
  readonly exited: Promise<FfmpegExit>;
  /** True once the process has exited. */
  readonly hasExited: boolean;
  /** Writes to stdin; resolves when flushed, rejects with {@link StdinClosedError} if ffmpeg is gone. */
  write(chunk: Uint8Array): Promise<void>;
  /** Closes stdin (end of input); resolves when flushed or when the process is already gone. */
  endInput(): Promise<void>;
  /** Kills the process (SIGTERM, then SIGKILL after the grace period); `exited` rejects with an abort error. */
  kill(reason?: string): void;
  /** Notes progress for the idle timer (callers reading stdout call it per chunk). */
  touch(): void;
  /** Suspends (true) / resumes (false) the idle timer while the caller, not ffmpeg, is the slow side. */
  holdIdle(hold: boolean): void;
  /** Current stderr tail. */
  stderrTail(): string;
}

function validateMs(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isFinite(v) && v > 0)) {
    throw new ConfigError(`${name} must be a positive number of milliseconds, got ${v}`, { [name]: v });
  }
}

/** Keeps the last `limit` characters of a growing string without quadratic copying. */
class TailBuffer {
  private parts: string[] = [];
  private length = 0;
  constructor(private readonly limit: number) {}
  push(s: string): void {
    this.parts.push(s);
    this.length += s.length;
    if (this.length > 2 * this.limit) this.compact();
  }
  private compact(): void {
    const all = this.parts.join('');
    const kept = all.slice(Math.max(0, all.length - this.limit));
    this.parts = [kept];
    this.length = kept.length;
  }
  toString(): string {
    this.compact();
    return this.parts[0] ?? '';
  }
}

/**
 * Spawns `binary args` directly (no shell) and returns a handle; see the module doc.
 * Throws {@link ConfigError} for invalid timeouts; a spawn failure (ENOENT, EACCES) surfaces as a
 * rejection of `exited` with code `FFMPEG_SPAWN`.
 */
export function startFfmpeg(binary: string, args: readonly string[], options: FfmpegRunOptions = {}): FfmpegProcess {
  validateMs('timeoutMs', options.timeoutMs);
  validateMs('idleTimeoutMs', options.idleTimeoutMs);
  const grace = options.killGraceMs ?? 1000;
  const label = options.label ?? `${binary} ${args.join(' ')}`.slice(0, 200);
  const wantStdout = options.stdout ?? true;
  const tail = new TailBuffer(options.stderrTailBytes ?? STDERR_TAIL_BYTES);

  let child: ChildProcess;
  let spawnError: Error | undefined;
  let exited = false;
  let killReason: { kind: 'timeout-total' | 'timeout-idle' | 'abort' | 'cancel'; detail?: unknown } | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let totalTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let idleHeld = false;
  let stdinError: unknown;

  const details = (code: number | null, signal: NodeJS.Signals | null): FfmpegProcessDetails => ({
    binary,
    args,
    pid: child?.pid,
    exitCode: code,
    signal,
    stderrTail: tail.toString(),
  });

  let resolveExit!: (e: FfmpegExit) => void;
  let rejectExit!: (e: FfmpegError) => void;
  const exitedPromise = new Promise<FfmpegExit>((res, rej) => {
    resolveExit = res;
    rejectExit = rej;
  });
  exitedPromise.catch(() => undefined);

  // Already aborted: do not start at all.
  if (options.signal?.aborted) {
    const err = abortedBeforeStart(label, options.signal);
    rejectExit(err);
    return deadHandle(binary, args, exitedPromise, err);
  }

  child = spawn(binary, [...args], {
    stdio: [options.stdin ? 'pipe' : 'ignore', wantStdout ? 'pipe' : 'ignore', 'pipe'],
    windowsHide: true,
  });

  const clearTimers = (): void => {
    if (totalTimer) clearTimeout(totalTimer);
    if (idleTimer) clearTimeout(idleTimer);
    if (killTimer) clearTimeout(killTimer);
    totalTimer = idleTimer = killTimer = undefined;
  };

  const terminate = (reason: NonNullable<typeof killReason>): void => {
    if (exited) return;
    killReason ??= reason;
    // Drop our ends of the pipes: ffmpeg blocked on a full stdout pipe then gets EPIPE and exits,
    // and 'close' can fire without anyone draining the data we no longer want.
    child.stdout?.destroy();
    child.stdin?.destroy();
    child.kill('SIGTERM');
    if (!killTimer) {
      killTimer = setTimeout(() => {
        if (!exited) child.kill('SIGKILL');
      }, grace);
    }
  };

  const armIdle = (): void => {
    if (!options.idleTimeoutMs || exited) return;
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = idleHeld
      ? undefined
      : setTimeout(() => terminate({ kind: 'timeout-idle' }), options.idleTimeoutMs);
  };

  if (options.timeoutMs) {
    totalTimer = setTimeout(() => terminate({ kind: 'timeout-total' }), options.timeoutMs);
  }
  armIdle();

  const onAbort = (): void => terminate({ kind: 'abort', detail: options.signal?.reason });
  options.signal?.addEventListener('abort', onAbort, { once: true });

  // stderr: bounded tail + line splitting. Flowing mode is fine here: we always want all of it.
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    tail.push(d);
    armIdle();
    if (!options.onStderrLine) return;
    // ffmpeg ends progress lines with \r; treat it as a line break too.
    const text = partial + d;
    const lines = text.split(/\r\n|\n|\r/);
    partial = lines.pop() ?? '';
    if (partial.length > 65536) partial = partial.slice(-65536);
    for (const line of lines) if (line) options.onStderrLine(line);
  });

  child.stdin?.on('error', (err) => {
    // EPIPE / ERR_STREAM_DESTROYED: ffmpeg exited before reading everything. The exit code and
    // stderr say why; the error itself is only remembered.
    stdinError = err;
  });
  child.stdout?.on('error', () => undefined);

  child.on('error', (err) => {
    // Spawn failure (ENOENT, EACCES). 'close' still follows in current Node versions.
    spawnError = err;
  });

  child.on('exit', () => {
    exited = true;
    if (idleTimer) clearTimeout(idleTimer);
    if (totalTimer) clearTimeout(totalTimer);
  });

  child.on('close', (code, signal) => {
    exited = true;
    clearTimers();
    options.signal?.removeEventListener('abort', onAbort);
    if (partial && options.onStderrLine) options.onStderrLine(partial);
    partial = '';
    const d = details(code, signal);
    if (killReason) {
      if (killReason.kind === 'timeout-total' || killReason.kind === 'timeout-idle') {
        const kind = killReason.kind === 'timeout-total' ? 'total' : 'idle';
        const ms = (kind === 'total' ? options.timeoutMs : options.idleTimeoutMs) ?? 0;
        rejectExit(
          new FfmpegTimeoutError(
            kind,
            ms,
            `${label}: ${kind === 'total' ? 'did not finish' : 'produced no output'} within ${ms} ms; process ${d.pid} was killed`,
            d,
          ),
        );
      } else {
        rejectExit(
          new FfmpegAbortError(
            `${label}: ${killReason.kind === 'abort' ? 'aborted by the caller' : 'cancelled'}; process ${d.pid} was killed`,
            d,
            killReason.detail,
          ),
        );
      }
      return;
    }
    if (spawnError) {
      rejectExit(
        new FfmpegProcessError('FFMPEG_SPAWN', `${label}: could not start ${binary}: ${spawnError.message}`, d),
      );
      return;
    }
    if (code === 0) {
      resolveExit({ exitCode: 0, stderrTail: d.stderrTail });
      return;
    }
    const lastLines = d.stderrTail.trim().split(/\r?\n/).slice(-5).join('\n');
    rejectExit(
      new FfmpegProcessError(
        'FFMPEG_EXIT',
        `${label}: ${binary} exited with ${code !== null ? `code ${code}` : `signal ${signal}`}` +
          (lastLines ? `:\n${lastLines}` : ' (no stderr output)'),
        d,
      ),
    );
  });

  const closed = exitedPromise.then(
    () => undefined,
    () => undefined,
  );

  const handle: FfmpegProcess = {
    binary,
    args,
    get pid() {
      return child.pid;
    },
    get stdout() {
      if (!child.stdout) throw new Error('startFfmpeg: process was started with stdout: false');
      return child.stdout;
    },
    exited: exitedPromise,
    get hasExited() {
      return exited;
    },
    write(chunk: Uint8Array): Promise<void> {
      const stdin = child.stdin;
      if (!stdin) return Promise.reject(new Error('startFfmpeg: process was started without stdin: true'));
      if (exited || stdin.destroyed || stdin.writableEnded || stdinError) {
        return Promise.reject(new StdinClosedError(stdinError));
      }
      return new Promise<void>((resolve, reject) => {
        let done = false;
        stdin.write(chunk, (err) => {
          if (done) return;
          done = true;
          if (err) reject(new StdinClosedError(err));
          else {
            armIdle();
            resolve();
          }
        });
        // The callback normally fires on flush or on destroy; this covers a process that dies
        // while the chunk is still queued.
        void closed.then(() => {
          if (done) return;
          done = true;
          reject(new StdinClosedError(stdinError));
        });
      });
    },
    endInput(): Promise<void> {
      const stdin = child.stdin;
      if (!stdin || exited || stdin.destroyed || stdin.writableEnded) return Promise.resolve();
      return new Promise<void>((resolve) => {
        let done = false;
        const finish = (): void => {
          if (!done) {
            done = true;
            resolve();
          }
        };
        stdin.end(finish);
        void closed.then(finish);
      });
    },
    kill(reason?: string): void {
      terminate({ kind: 'cancel', detail: reason });
    },
    touch(): void {
      armIdle();
    },
    holdIdle(hold: boolean): void {
      idleHeld = hold;
      if (hold) {
        if (idleTimer) clearTimeout(idleTimer);
        idleTimer = undefined;
      } else armIdle();
    },
    stderrTail(): string {
      return tail.toString();
    },
  };
  return handle;
}

/** The typed error for work whose `AbortSignal` had already fired before any process started. */
export function abortedBeforeStart(label: string, signal: AbortSignal): FfmpegAbortError {
  return new FfmpegAbortError(
    `${label}: aborted before start`,
    { binary: '', args: [], pid: undefined, exitCode: null, signal: null, stderrTail: '' },
    signal.reason,
  );
}

function deadHandle(binary: string, args: readonly string[], exited: Promise<FfmpegExit>, err: Error): FfmpegProcess {
  return {
    binary,
    args,
    pid: undefined,
    get stdout(): Readable {
      throw err;
    },
    exited,
    hasExited: true,
    write: () => Promise.reject(new StdinClosedError(err)),
    endInput: () => Promise.resolve(),
    kill: () => undefined,
    touch: () => undefined,
    holdIdle: () => undefined,
    stderrTail: () => '',
  };
}

/** Result of {@link runFfmpeg}. */
export interface FfmpegOutput {
  stdout: Buffer;
  stderrTail: string;
}

/**
 * Runs a process to completion and collects stdout (at most `maxStdoutBytes`, default 64 MiB; more
 * kills the process and rejects). For short commands (ffprobe, `-version`); stream big outputs with
 * {@link startFfmpeg} instead.
 */
export async function runFfmpeg(
  binary: string,
  args: readonly string[],
  options: FfmpegRunOptions & { maxStdoutBytes?: number } = {},
): Promise<FfmpegOutput> {
  const proc = startFfmpeg(binary, args, { ...options, stdin: false, stdout: true });
  if (proc.hasExited && proc.pid === undefined) {
    await proc.exited;
  }
  const max = options.maxStdoutBytes ?? 64 * 1024 * 1024;
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  try {
    for await (const c of proc.stdout as AsyncIterable<Buffer>) {
      proc.touch();
      size += c.length;
      if (size > max) {
        overflow = true;
        proc.kill('stdout limit');
        break;
      }
      chunks.push(c);
    }
  } catch {
    // A destroyed stdout (kill, timeout): `exited` carries the typed reason.
  }
  if (overflow) {
    await proc.exited.catch(() => undefined);
    throw new ConfigError(`${options.label ?? binary}: output exceeded ${max} bytes`, { maxStdoutBytes: max });
  }
  const exit = await proc.exited;
  return { stdout: Buffer.concat(chunks), stderrTail: exit.stderrTail };
}
