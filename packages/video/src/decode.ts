/**
 * Decoding video files to frames: raw 8-bit chunks, tensor chunks, or one `Video<'display'>`.
 *
 * Command (ecosystem reference §5.1, video-memorization reference §8):
 * `ffmpeg -nostdin [-ss S] [-t D] -i IN -map 0:<v> -an -sn -dn -vf "[fps=N/D,]scale=W:H:flags=F"
 *  -fps_mode passthrough [-frames:v K] -f rawvideo -pix_fmt rgb24|gray pipe:1`.
 * stdout is `W·H·C` bytes per frame, row-major, no padding; pipe chunks do not align with frames,
 * so they are copied into fixed-size chunk buffers of `chunkSize` frames. A scale filter is always
 * present so a mid-stream resolution change (damaged or spliced files) cannot break the framing.
 * `-fps_mode passthrough` (`-vsync passthrough` before ffmpeg 5.1) stops the rawvideo muxer from
 * duplicating or dropping frames; resampling, when asked for, is done by the `fps` filter, which
 * picks the nearest source frame for each output tick as ffmpeg's `-r` does.
 *
 * Streaming reads pull from stdout, so a slow consumer stalls ffmpeg instead of buffering the whole
 * clip: memory stays at about one chunk plus the pipe buffers.
 *
 * Damage: decoding goes on past bitstream errors (ffmpeg conceals them); every damaged frame or
 * packet ffmpeg reports, every decoder error line, and any shortfall of decoded frames against
 * the container's frame count end up in the {@link DecodeReport}. `strict: true` turns the first
 * sign of damage into a {@link VideoDamagedError} and kills ffmpeg.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { ConfigError, DiffmemError, InputError, type Video } from '@diffmem/core';
import { resolveFfmpeg, supportsFpsMode, type BinaryOptions } from './binaries.js';
import { FfmpegProcessError, VideoDamagedError } from './errors.js';
import { abortedBeforeStart, startFfmpeg, type FfmpegProcess } from './ffmpeg.js';
import { DamageCollector, type DamageLog } from './log.js';
import { probeVideo, type Rational, type VideoProbe } from './probe.js';

/** swscale interpolation used when resizing. */
export type ScaleFlags = 'bicubic' | 'bilinear' | 'area' | 'lanczos' | 'neighbor' | 'fast_bilinear' | 'gauss' | 'spline';

/** Options shared by every decoding function. */
export interface DecodeOptions {
  /** Resample to this frame rate (fps filter); default: keep every decoded frame. */
  fps?: number | Rational;
  /** Output width in pixels; if only one of width/height is given the other keeps the aspect ratio. */
  width?: number;
  /** Output height in pixels. */
  height?: number;
  /** Resize interpolation (default `'bicubic'`, ffmpeg's own default). */
  scaleFlags?: ScaleFlags;
  /** Start time in seconds (input seek; frame-accurate). */
  start?: number;
  /** Length in seconds to decode from `start`. */
  duration?: number;
  /** Stop after this many output frames. */
  maxFrames?: number;
  /** `'rgb'` (default, 3 channels) or `'gray'` (1 channel, the decoder's luma, full range). */
  color?: 'rgb' | 'gray';
  /** Throw {@link VideoDamagedError} at the first sign of damage instead of reporting it. */
  strict?: boolean;
  /** Kill ffmpeg (and reject) when the whole call takes longer than this (default: none). */
  timeoutMs?: number;
  /** Kill ffmpeg when it produces nothing for this long while we wait for it (default 60 000). */
  idleTimeoutMs?: number;
  /** Abort decoding (kills ffmpeg; rejects with `FfmpegAbortError`). */
  signal?: AbortSignal;
  /** SIGTERM → SIGKILL grace period when killing (default 1000 ms). */
  killGraceMs?: number;
  /** Where to find ffmpeg/ffprobe. */
  binaries?: BinaryOptions;
  /** A probe of this file from {@link probeVideo}, to skip probing again. */
  probe?: VideoProbe;
}

/** Options of the streaming decoders. */
export interface StreamDecodeOptions extends DecodeOptions {
  /** Frames per chunk (default 16). The last chunk may be shorter. */
  chunkSize?: number;
}

/** A chunk of 8-bit frames, `count·height·width·channels` bytes, interleaved HWC per frame. */
export interface RawFrameChunk {
  data: Uint8Array;
  /** Index of the first frame of the chunk in the output sequence. */
  start: number;
  count: number;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** A chunk of frames as a display-space clip `[count, H, W, C]`; the caller owns (disposes) it. */
export interface FrameChunk {
  frames: Video<'display'>;
  start: number;
  count: number;
}

/** What a decode produced and what went wrong on the way. */
export interface DecodeReport extends DamageLog {
  /** Frames delivered. */
  frameCount: number;
  /**
   * Frames the container says there are, for whole-file decodes without resampling (capped by
   * `maxFrames`); undefined when a time range or fps resampling makes the count inexact.
   */
  expectedFrames: number | undefined;
  /** `expectedFrames − frameCount` when positive (frames lost to damage or truncation), else 0. */
  missingFrames: number;
  /** Bytes left over after the last whole frame (a truncated final frame; dropped). */
  trailingBytes: number;
  /** Any sign of damage: corrupt frames/packets, decoder errors, missing frames, trailing bytes. */
  damaged: boolean;
  /** Frame size and channels delivered. */
  width: number;
  height: number;
  channels: 1 | 3;
  /** Frame rate of the delivered frames: the `fps` option, else the file's average rate. */
  fps: number;
  /** The source probe. */
  probe: VideoProbe;
  /** True when the consumer stopped early (the process was killed on purpose). */
  cancelled: boolean;
}

/** An async iterator of chunks, with the final report. */
export interface FrameStream<T> extends AsyncIterableIterator<T> {
  /**
   * Settles when decoding ends: the report (with `cancelled: true` if the consumer stopped early),
   * or the error that ended it. Safe to ignore: it never causes an unhandled rejection.
   */
  readonly summary: Promise<DecodeReport>;
  /** ffmpeg's pid once started. */
  readonly pid: number | undefined;
}

/** A decoded clip with its report. */
export interface DecodedVideo extends DecodeReport {
  /** `[T, H, W, C]` float32 in [0, 1]; the caller owns (disposes) it. */
  video: Video<'display'>;
}

/** What `decode.ts` needs to run ffmpeg, prepared by a planner (file or image sequence). @internal */
export interface DecodePlan {
  args: string[];
  width: number;
  height: number;
  channels: 1 | 3;
  fps: number;
  expectedFrames: number | undefined;
  probe: VideoProbe;
  ffmpeg: string;
  label: string;
  /** Removes temporary files (image sequences). */
  cleanup?: () => Promise<void>;
}

const DEFAULT_IDLE_MS = 60_000;

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
    throw new ConfigError(`${name} must be a positive integer, got ${v}`, { [name]: v });
  }
}

function nonNegative(name: string, v: number | undefined, allowZero: boolean): void {
  if (v !== undefined && !(Number.isFinite(v) && (allowZero ? v >= 0 : v > 0))) {
    throw new ConfigError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of seconds, got ${v}`, {
      [name]: v,
    });
  }
}

/** Normalises an fps option to a rational, validating it. */
export function toRational(fps: number | Rational, name = 'fps'): Rational {
  if (typeof fps === 'number') {
    if (!(Number.isFinite(fps) && fps > 0)) throw new ConfigError(`${name} must be a positive number, got ${fps}`);
    if (Number.isInteger(fps)) return { num: fps, den: 1 };
    // Keep common NTSC rates exact (23.976 → 24000/1001), else 1/1000 precision.
    for (const base of [24, 30, 48, 60, 120]) {
      if (Math.abs(fps - (base * 1000) / 1001) < 5e-4) return { num: base * 1000, den: 1001 };
    }
    return { num: Math.round(fps * 1000), den: 1000 };
  }
  if (!fps || !(Number.isInteger(fps.num) && fps.num > 0 && Number.isInteger(fps.den) && fps.den > 0)) {
    throw new ConfigError(`${name} must be a positive number or {num, den} of positive integers`, { [name]: fps });
  }
  return { num: fps.num, den: fps.den };
}

/** Validates the options every decoder shares (synchronously, before anything is spawned). */
export function validateDecodeOptions(o: StreamDecodeOptions): void {
  positiveInt('width', o.width);
  positiveInt('height', o.height);
  positiveInt('maxFrames', o.maxFrames);
  positiveInt('chunkSize', o.chunkSize);
  nonNegative('start', o.start, true);
  nonNegative('duration', o.duration, false);
  if (o.fps !== undefined) toRational(o.fps);
  if (o.color !== undefined && o.color !== 'rgb' && o.color !== 'gray') {
    throw new ConfigError(`color must be 'rgb' or 'gray', got ${JSON.stringify(o.color)}`);
  }
  const flags = ['bicubic', 'bilinear', 'area', 'lanczos', 'neighbor', 'fast_bilinear', 'gauss', 'spline'];
  if (o.scaleFlags !== undefined && !flags.includes(o.scaleFlags)) {
    throw new ConfigError(`scaleFlags must be one of ${flags.join(', ')}, got ${JSON.stringify(o.scaleFlags)}`);
  }
  for (const k of ['timeoutMs', 'idleTimeoutMs', 'killGraceMs'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ConfigError(`${k} must be a positive number, got ${v}`);
  }
}

/** Output size for a source of `w×h` given optional targets (aspect kept when one is missing). */
export function outputSize(w: number, h: number, width?: number, height?: number): { width: number; height: number } {
  if (width !== undefined && height !== undefined) return { width, height };
  if (width !== undefined) return { width, height: Math.max(1, Math.round((h * width) / w)) };
  if (height !== undefined) return { width: Math.max(1, Math.round((w * height) / h)), height };
  return { width: w, height: h };
}

/** Seconds formatted for ffmpeg without exponent notation. */
function seconds(s: number): string {
  return s.toFixed(6);
}

/** The output half of every decode command: filters, frame-rate mode, cap, raw format. */
export function rawOutputArgs(
  o: DecodeOptions,
  width: number,
  height: number,
  channels: 1 | 3,
  fpsModeFlag: string,
): string[] {
  const filters: string[] = [];
  if (o.fps !== undefined) {
    const r = toRational(o.fps);
    filters.push(`fps=${r.num}/${r.den}`);
  }
  filters.push(`scale=${width}:${height}:flags=${o.scaleFlags ?? 'bicubic'}`);
  const args = ['-vf', filters.join(','), fpsModeFlag, 'passthrough'];
  if (o.maxFrames !== undefined) args.push('-frames:v', String(o.maxFrames));
  args.push('-f', 'rawvideo', '-pix_fmt', channels === 3 ? 'rgb24' : 'gray', 'pipe:1');
  return args;
}

/** Common leading arguments of decode commands. */
export const LOG_ARGS = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'repeat+level+warning'];

async function planFileDecode(file: string, o: StreamDecodeOptions, deadline: () => number | undefined): Promise<DecodePlan> {
  const remaining = deadline();
  const probe =
    o.probe ??
    (await probeVideo(file, {
      // Counting frames would decode the whole file twice; the container's count (or none) suffices.
      countFrames: 'never',
      ...(remaining !== undefined ? { timeoutMs: remaining } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.binaries ? { binaries: o.binaries } : {}),
    }));
  const ffmpeg = await resolveFfmpeg(o.binaries);
  const { width, height } = outputSize(probe.width, probe.height, o.width, o.height);
  const channels: 1 | 3 = o.color === 'gray' ? 1 : 3;
  const args = [...LOG_ARGS];
  if (o.start !== undefined && o.start > 0) args.push('-ss', seconds(o.start));
  if (o.duration !== undefined) args.push('-t', seconds(o.duration));
  args.push('-i', probe.path, '-map', `0:${probe.streamIndex}`, '-an', '-sn', '-dn');
  args.push(...rawOutputArgs(o, width, height, channels, supportsFpsMode(ffmpeg) ? '-fps_mode' : '-vsync'));
  const whole = o.fps === undefined && !(o.start && o.start > 0) && o.duration === undefined;
  let expectedFrames: number | undefined;
  if (whole && probe.frameCountSource !== 'estimated') {
    expectedFrames = o.maxFrames !== undefined ? Math.min(o.maxFrames, probe.frameCount) : probe.frameCount;
  }
  return {
    args,
    width,
    height,
    channels,
    fps: o.fps !== undefined ? (typeof o.fps === 'number' ? o.fps : o.fps.num / o.fps.den) : probe.fps,
    expectedFrames,
    probe,
    ffmpeg: ffmpeg.path,
    label: `decoding ${path.basename(probe.path)}`,
  };
}

/**
 * Runs a decode plan and yields raw chunks. Shared by files and image sequences.
 * @internal
 */
export function openRawStream(
  makePlan: (deadline: () => number | undefined) => Promise<DecodePlan>,
  o: StreamDecodeOptions,
): FrameStream<RawFrameChunk> {
  validateDecodeOptions(o);
  const chunkSize = o.chunkSize ?? 16;
  const startedAt = Date.now();
  const deadline = (): number | undefined =>
    o.timeoutMs === undefined ? undefined : Math.max(1, o.timeoutMs - (Date.now() - startedAt));
  let proc: FfmpegProcess | undefined;

  let resolveSummary!: (r: DecodeReport) => void;
  let rejectSummary!: (e: unknown) => void;
  const summary = new Promise<DecodeReport>((res, rej) => {
    resolveSummary = res;
    rejectSummary = rej;
  });
  summary.catch(() => undefined);

  let started = false;
  async function* run(): AsyncGenerator<RawFrameChunk, void, undefined> {
    let plan: DecodePlan | undefined;
    let settled = false;
    let produced = 0;
    let fill = 0;
    let collector: DamageCollector | undefined;
    let strictHit: string | undefined;
    let exitNote: string | undefined;
    const report = (cancelled: boolean, p: DecodePlan, trailingBytes: number): DecodeReport => {
      const log = collector!.log;
      const missingFrames = p.expectedFrames !== undefined ? Math.max(0, p.expectedFrames - produced) : 0;
      const damaged =
        log.corruptFrames > 0 || log.corruptPackets > 0 || log.decodeErrors > 0 || missingFrames > 0 || trailingBytes > 0;
      return {
        ...log,
        errorMessages: [...log.errorMessages],
        warnings: [...log.warnings],
        frameCount: produced,
        expectedFrames: p.expectedFrames,
        missingFrames,
        trailingBytes,
        damaged,
        width: p.width,
        height: p.height,
        channels: p.channels,
        fps: p.fps,
        probe: p.probe,
        cancelled,
      };
    };
    const damagedError = (r: DecodeReport, why: string): VideoDamagedError =>
      new VideoDamagedError(`${plan!.label}: input is damaged (strict mode): ${why}`, { damage: r, path: r.probe.path });

    try {
      started = true;
      if (o.signal?.aborted) throw abortedBeforeStart('decoding', o.signal);
      plan = await makePlan(deadline);
      const p = plan;
      collector = new DamageCollector(
        o.strict
          ? (line) => {
              strictHit ??= line;
              proc?.kill('strict: damage');
            }
          : undefined,
      );
      const remaining = deadline();
      proc = startFfmpeg(p.ffmpeg, p.args, {
        ...(remaining !== undefined ? { timeoutMs: remaining } : {}),
        idleTimeoutMs: o.idleTimeoutMs ?? DEFAULT_IDLE_MS,
        ...(o.signal ? { signal: o.signal } : {}),
        ...(o.killGraceMs !== undefined ? { killGraceMs: o.killGraceMs } : {}),
        onStderrLine: collector.push,
        label: p.label,
      });
      const frameBytes = p.width * p.height * p.channels;
      const chunkBytes = frameBytes * chunkSize;
      // Uninitialised memory is fine: a chunk is yielded only once completely overwritten (the
      // last, partial one as a subarray of the written part). Zero-filling would cost ~15% at full size.
      const alloc = (): Uint8Array => new Uint8Array(Buffer.allocUnsafeSlow(chunkBytes).buffer, 0, chunkBytes);
      let buf = alloc();
      let streamError: unknown;
      try {
        for await (const data of proc.stdout as AsyncIterable<Buffer>) {
          proc.touch();
          let off = 0;
          while (off < data.length) {
            const n = Math.min(chunkBytes - fill, data.length - off);
            buf.set(data.subarray(off, off + n), fill);
            fill += n;
            off += n;
            if (fill === chunkBytes) {
              // The consumer, not ffmpeg, is the slow side while we wait here.
              proc.holdIdle(true);
              yield { data: buf, start: produced, count: chunkSize, width: p.width, height: p.height, channels: p.channels };
              proc.holdIdle(false);
              produced += chunkSize;
              buf = alloc();
              fill = 0;
            }
          }
        }
      } catch (err) {
        streamError = err;
      }
      try {
        await proc.exited;
      } catch (err) {
        if (strictHit !== undefined) throw damagedError(report(false, p, 0), strictHit);
        const framesSoFar = produced + Math.floor(fill / frameBytes);
        // A non-zero exit after some frames is damage, not failure: keep what was decoded.
        if (err instanceof FfmpegProcessError && err.code === 'FFMPEG_EXIT' && framesSoFar > 0) {
          exitNote = `ffmpeg exited with code ${err.exitCode} after ${framesSoFar} frames`;
          collector.log.decodeErrors++;
          collector.log.errorMessages.push(exitNote);
        } else if (err instanceof FfmpegProcessError && err.code === 'FFMPEG_EXIT') {
          // ffprobe (possibly a different build) understood the file but this ffmpeg cannot decode it.
          const m = /Decoder \(codec ([\w-]+)\) not found|Unknown decoder '([\w-]+)'|Decoding requested, but no decoder found for: ([\w-]+)/i.exec(
            err.stderrTail,
          );
          if (m) {
            const codec = m[1] ?? m[2] ?? m[3];
            throw new InputError(
              'VIDEO_UNSUPPORTED_CODEC',
              `${p.label}: this ffmpeg (${p.ffmpeg}) has no decoder for ${codec}; use a fuller build (FFMPEG_PATH)`,
              { codec, path: p.probe.path, stderrTail: err.stderrTail },
            );
          }
          throw err;
        } else {
          throw err;
        }
      }
      if (streamError && !exitNote) throw streamError;
      const whole = Math.floor(fill / frameBytes);
      const trailingBytes = fill - whole * frameBytes;
      if (whole > 0) {
        yield {
          data: buf.subarray(0, whole * frameBytes),
          start: produced,
          count: whole,
          width: p.width,
          height: p.height,
          channels: p.channels,
        };
        produced += whole;
      }
      const r = report(false, p, trailingBytes);
      if (o.strict && r.damaged) {
        const why =
          r.missingFrames > 0
            ? `decoded ${r.frameCount} of ${r.expectedFrames} frames`
            : (exitNote ?? `${trailingBytes} bytes of a truncated final frame`);
        throw damagedError(r, why);
      }
      if (produced === 0) {
        throw new InputError(
          'VIDEO_NO_FRAMES',
          `${p.label}: no frames decoded` +
            (o.start !== undefined ? ` (start ${o.start} s may be past the end, duration ${p.probe.duration} s)` : '') +
            (r.errorMessages.length ? `; ffmpeg said: ${r.errorMessages.slice(0, 3).join('; ')}` : ''),
          { report: r },
        );
      }
      settled = true;
      resolveSummary(r);
    } catch (err) {
      settled = true;
      rejectSummary(err);
      throw err;
    } finally {
      if (proc && !proc.hasExited) proc.kill('consumer stopped');
      if (proc) await proc.exited.catch(() => undefined);
      if (plan?.cleanup) await plan.cleanup().catch(() => undefined);
      if (!settled) {
        // The consumer left early (break / return()): report what was delivered.
        if (plan && collector) resolveSummary(report(true, plan, 0));
        else rejectSummary(new DiffmemError('DECODE_CANCELLED', 'decoding was stopped before it started'));
      }
    }
  }

  const gen = run();
  const genReturn = gen.return.bind(gen);
  // return() before the first next() never enters the body: settle the summary here.
  gen.return = async (value?: void | PromiseLike<void>) => {
    const r = await genReturn(value);
    if (!started) rejectSummary(new DiffmemError('DECODE_CANCELLED', 'decoding was stopped before it started'));
    return r;
  };
  return Object.assign(gen, {
    summary,
    get pid(): number | undefined {
      return proc?.pid;
    },
  }) as FrameStream<RawFrameChunk>;
}

/**
 * Decodes `file` to 8-bit chunks of `chunkSize` frames (see {@link DecodeOptions}). Memory stays
 * bounded by one chunk: ffmpeg is stalled by backpressure until the consumer asks for more.
 * Breaking out of the loop kills ffmpeg. Option errors throw synchronously ({@link ConfigError}).
 */
export function decodeRawFrames(file: string, options: StreamDecodeOptions = {}): FrameStream<RawFrameChunk> {
  return openRawStream((deadline) => planFileDecode(file, options, deadline), options);
}

/** 8-bit value → [0, 1] float, the same `v / 255` core's `imageFromUint8` computes. */
const TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) t[i] = i / 255;
  return t;
})();

/** Converts 8-bit pixels to float32 in [0, 1] (into `out` at `offset`). */
export function uint8ToUnitFloat(src: Uint8Array, out?: Float32Array, offset = 0): Float32Array {
  const dst = out ?? new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) dst[offset + i] = TO_UNIT[src[i] as number] as number;
  return dst;
}

/** A raw chunk as a display-space `Video` tensor `[count, H, W, C]`. */
export function rawChunkToVideo(c: RawFrameChunk): Video<'display'> {
  return tf.tensor4d(uint8ToUnitFloat(c.data), [c.count, c.height, c.width, c.channels], 'float32') as Video<'display'>;
}

/**
 * Decodes `file` to chunks of display-space frames `[k, H, W, C]` (float32 in [0, 1]). Each chunk's
 * tensor belongs to the caller, who must dispose it. Memory is bounded by one chunk (backpressure).
 */
export function decodeFrames(file: string, options: StreamDecodeOptions = {}): FrameStream<FrameChunk> {
  const raw = decodeRawFrames(file, options);
  return tensorStream(raw);
}

/** Wraps a raw stream as a tensor stream. @internal */
export function tensorStream(raw: FrameStream<RawFrameChunk>): FrameStream<FrameChunk> {
  async function* run(): AsyncGenerator<FrameChunk, void, undefined> {
    for await (const c of raw) yield { frames: rawChunkToVideo(c), start: c.start, count: c.count };
  }
  const gen = run();
  const genReturn = gen.return.bind(gen);
  // Forward an early return() (even before the first next()) to the raw stream, which kills ffmpeg.
  gen.return = async (value?: void | PromiseLike<void>) => {
    const r = await genReturn(value);
    await raw.return?.();
    return r;
  };
  return Object.assign(gen, {
    summary: raw.summary,
    get pid(): number | undefined {
      return raw.pid;
    },
  }) as FrameStream<FrameChunk>;
}

/** Options of {@link decodeVideo}. */
export interface DecodeVideoOptions extends DecodeOptions {
  /**
   * Refuse (ConfigError, before decoding when the frame count is known) to build a float32 clip
   * larger than this many bytes (default 2 GiB). Use `maxFrames`, a smaller size, or
   * {@link decodeFrames} for long videos.
   */
  maxBytes?: number;
}

/**
 * Decodes a whole clip (or the requested range) into one `Video<'display'>` tensor `[T, H, W, C]`,
 * float32 in [0, 1], plus the {@link DecodeReport}. The caller owns (disposes) `video`.
 * Throws `InputError` for unreadable files, `VIDEO_NO_FRAMES` when nothing decodes,
 * {@link VideoDamagedError} in strict mode, and the ffmpeg errors on timeout/abort.
 */
export async function decodeVideo(file: string, options: DecodeVideoOptions = {}): Promise<DecodedVideo> {
  return decodeVideoFromPlan((deadline) => planFileDecode(file, options, deadline), options);
}

/** Runs a decode plan to completion into one tensor (with the `maxBytes` guard). @internal */
export async function decodeVideoFromPlan(
  makePlan: (deadline: () => number | undefined) => Promise<DecodePlan>,
  options: DecodeVideoOptions,
): Promise<DecodedVideo> {
  const maxBytes = options.maxBytes ?? 2 * 1024 ** 3;
  if (!(maxBytes > 0)) throw new ConfigError(`maxBytes must be positive, got ${maxBytes}`);
  const chunks: RawFrameChunk[] = [];
  let frames = 0;
  let frameBytes = 0;
  const stream = openRawStream(
    async (deadline) => {
      const plan = await makePlan(deadline);
      frameBytes = plan.width * plan.height * plan.channels;
      const estimate = plan.expectedFrames ?? estimateFrames(plan.probe, options);
      if (estimate * frameBytes * 4 > maxBytes) {
        await plan.cleanup?.();
        throw new ConfigError(
          `${plan.label} would need about ${Math.ceil((estimate * frameBytes * 4) / 2 ** 20)} MiB ` +
            `of float32 (${estimate} frames of ${plan.width}x${plan.height}x${plan.channels}), over maxBytes = ${maxBytes}; ` +
            `pass width/height, maxFrames or fps, or stream with decodeFrames`,
          { estimate, maxBytes },
        );
      }
      return plan;
    },
    { ...options, chunkSize: 32 },
  );
  for await (const c of stream) {
    chunks.push(c);
    frames += c.count;
    if (frames * frameBytes * 4 > maxBytes) {
      await stream.return?.();
      throw new ConfigError(`decoded clip exceeds maxBytes = ${maxBytes} after ${frames} frames; pass maxFrames or a smaller size`, {
        maxBytes,
      });
    }
  }
  const report = await stream.summary;
  const out = new Float32Array(frames * frameBytes);
  let off = 0;
  for (const c of chunks) {
    uint8ToUnitFloat(c.data, out, off);
    off += c.data.length;
  }
  const video = tf.tensor4d(out, [frames, report.height, report.width, report.channels], 'float32') as Video<'display'>;
  return { ...report, video };
}

function estimateFrames(p: VideoProbe, o: DecodeOptions): number {
  const fps = o.fps !== undefined ? (typeof o.fps === 'number' ? o.fps : o.fps.num / o.fps.den) : p.fps;
  const total = p.duration ?? p.frameCount / p.fps;
  const span = Math.max(0, Math.min(o.duration ?? Infinity, total - (o.start ?? 0)));
  const n = Math.ceil(span * fps) + 1;
  return o.maxFrames !== undefined ? Math.min(o.maxFrames, n) : n;
}
