/**
 * Typed errors of the video package. All extend core's {@link DiffmemError}, so callers can branch
 * on `code` without parsing messages.
 *
 * | class | code | when |
 * |---|---|---|
 * | {@link FfmpegNotFoundError} | `FFMPEG_NOT_FOUND` / `FFPROBE_NOT_FOUND` | no usable binary in any place searched |
 * | {@link FfmpegProcessError} | `FFMPEG_EXIT`, `FFMPEG_SPAWN` | the process exited non-zero / could not be started |
 * | {@link FfmpegTimeoutError} | `FFMPEG_TIMEOUT` | wall-clock or idle timeout: the process was killed |
 * | {@link FfmpegAbortError} | `FFMPEG_ABORTED` | the caller's `AbortSignal` fired: the process was killed |
 * | {@link VideoDamagedError} | `VIDEO_DAMAGED` | `strict: true` and the decoder reported damage |
 *
 * Bad files are reported with core's `InputError` and the codes `VIDEO_NOT_FOUND`,
 * `VIDEO_NOT_A_FILE`, `VIDEO_EMPTY_FILE`, `VIDEO_UNREADABLE`, `VIDEO_NO_VIDEO_STREAM`,
 * `VIDEO_NO_FRAMES`, `VIDEO_UNSUPPORTED_CODEC`, `IMAGE_SEQUENCE_EMPTY`, `IMAGE_SEQUENCE_MIXED_FORMATS`,
 * `OUTPUT_DIR_NOT_FOUND`, `OUTPUT_EXISTS`; bad options with `ConfigError`.
 * @module
 */
import { DiffmemError, InputError } from '@diffmem/core';

/** One place the binary resolver looked, and what it found there. */
export interface BinaryAttempt {
  /** Where the candidate came from: `'option'`, `'env'`, `'sibling'`, a package name, or `'path'`. */
  source: string;
  /** The candidate file (undefined when the source gave no path, e.g. a package not installed). */
  path: string | undefined;
  /** `'ok'` for the winner, else why it was passed over. */
  reason: string;
}

/** No usable ffmpeg/ffprobe binary was found; `details.tried` lists every place searched. */
export class FfmpegNotFoundError extends DiffmemError {
  /** Every place searched, in order. */
  readonly tried: readonly BinaryAttempt[];

  constructor(binary: 'ffmpeg' | 'ffprobe', message: string, tried: readonly BinaryAttempt[]) {
    super(binary === 'ffmpeg' ? 'FFMPEG_NOT_FOUND' : 'FFPROBE_NOT_FOUND', message, { binary, tried });
    this.tried = tried;
  }
}

/** Facts about a finished (or killed) ffmpeg/ffprobe process, attached to every process error. */
export interface FfmpegProcessDetails {
  /** The executable that ran. */
  binary: string;
  /** Its argument list (no shell involved). */
  args: readonly string[];
  /** Process id (undefined if it never started). */
  pid: number | undefined;
  /** Exit code, or null when killed by a signal. */
  exitCode: number | null;
  /** Terminating signal, or null. */
  signal: NodeJS.Signals | null;
  /** The last ≤ 64 KiB of stderr (where ffmpeg says what went wrong). */
  stderrTail: string;
}

/** Base class of errors raised by a running ffmpeg/ffprobe process. */
export class FfmpegError extends DiffmemError {
  /** Exit code, or null when killed by a signal or never started. */
  readonly exitCode: number | null;
  /** The last ≤ 64 KiB of the process's stderr. */
  readonly stderrTail: string;
  /** Process id (undefined if it never started). */
  readonly pid: number | undefined;

  constructor(code: string, message: string, details: FfmpegProcessDetails) {
    super(code, message, { ...details });
    this.exitCode = details.exitCode;
    this.stderrTail = details.stderrTail;
    this.pid = details.pid;
  }
}

/** The process exited with a non-zero code (`FFMPEG_EXIT`) or could not be spawned (`FFMPEG_SPAWN`). */
export class FfmpegProcessError extends FfmpegError {
  constructor(code: 'FFMPEG_EXIT' | 'FFMPEG_SPAWN', message: string, details: FfmpegProcessDetails) {
    super(code, message, details);
  }
}

/** A wall-clock (`timeoutMs`) or idle (`idleTimeoutMs`) limit expired; the process was killed. */
export class FfmpegTimeoutError extends FfmpegError {
  /** Which limit fired. */
  readonly kind: 'total' | 'idle';
  /** The limit in milliseconds. */
  readonly timeoutMs: number;

  constructor(kind: 'total' | 'idle', timeoutMs: number, message: string, details: FfmpegProcessDetails) {
    super('FFMPEG_TIMEOUT', message, details);
    this.kind = kind;
    this.timeoutMs = timeoutMs;
  }
}

/** The caller's `AbortSignal` fired (or the consumer stopped early); the process was killed. */
export class FfmpegAbortError extends FfmpegError {
  /** `signal.reason` of the AbortSignal, if any. */
  readonly reason: unknown;

  constructor(message: string, details: FfmpegProcessDetails, reason?: unknown) {
    super('FFMPEG_ABORTED', message, details);
    this.reason = reason;
  }
}

/** `strict: true` was set and the input is damaged; `details.damage` holds the report so far. */
export class VideoDamagedError extends InputError {
  constructor(message: string, details: Record<string, unknown>) {
    super('VIDEO_DAMAGED', message, details);
  }
}
