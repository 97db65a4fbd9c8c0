/**
 * Encoding frames to video files.
 *
 * Two presets (ecosystem reference §5.1):
 * - `'lossless'` (default): `-c:v libx264rgb -qp 0` into Matroska. H.264 in RGB with quantiser 0
 *   is mathematically lossless, so decoding the file gives back the exact 8-bit frames (verified:
 *   zero error). Use it for anything a memorization metric will read again: a lossy codec would
 *   add its own error to the distances being measured.
 * - `'h264'`: `-c:v libx264 -pix_fmt yuv420p -crf 18 -movflags +faststart`, for viewing in
 *   browsers/players. 4:2:0 chroma needs even width and height: odd sizes are padded (default),
 *   cropped, or rejected. Colour is tagged BT.601 (`smpte170m`), the matrix swscale converts with.
 *
 * Frames go to ffmpeg's stdin as `rgb24`/`gray` raw video: `-f rawvideo -pix_fmt rgb24 -s WxH
 * -framerate FPS -i pipe:0`. Float frames are quantised as `round(255·x)` clipped to [0, 255]
 * (core's `toUint8`). Writes wait for ffmpeg to take each chunk, so a long iterable source is
 * never buffered whole; if ffmpeg dies early the write fails cleanly and its stderr is reported.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, DTypeError, InputError, NonFiniteError, ShapeError, type ImageBatch, type Image, type Video } from '@diffmem/core';
import { resolveFfmpeg, type BinaryOptions, type ResolvedBinary } from './binaries.js';
import { FfmpegProcessError } from './errors.js';
import { StdinClosedError, abortedBeforeStart, startFfmpeg, type FfmpegProcess } from './ffmpeg.js';
import { DamageCollector } from './log.js';
import type { Rational } from './probe.js';
import { toRational } from './decode.js';

/** 8-bit interleaved frames: `data.length = count·height·width·channels`. */
export interface RawFrames {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * One item of a frame source: a display-space image `[H,W,C]`, clip/batch `[T,H,W,C]`, raw frames,
 * or a decoder chunk (`{ frames }` from `decodeFrames`; raw chunks from `decodeRawFrames` are
 * already {@link RawFrames}), so decoders can be piped straight into writers.
 */
export type FrameInput =
  | Image<'display'>
  | Video<'display'>
  | ImageBatch<'display'>
  | tf.Tensor
  | RawFrames
  | { frames: tf.Tensor };

/** Anything {@link encodeVideo} and `writeImageSequence` accept. */
export type FrameSource = FrameInput | Iterable<FrameInput> | AsyncIterable<FrameInput>;

/** Presets of {@link encodeVideo}. */
export type EncodePreset = 'lossless' | 'h264';

/** Options shared by the frame writers. */
export interface FrameWriterOptions {
  /** Frame rate written into the file (default 24). */
  fps?: number | Rational;
  /** Replace an existing output (default true); false → `InputError('OUTPUT_EXISTS')`. */
  overwrite?: boolean;
  /**
   * Dispose each tensor an (async) iterable source yields once it is written (default false: the
   * caller owns them). A single tensor passed as the source is never disposed.
   */
  disposeInputs?: boolean;
  /** Kill ffmpeg when the whole call takes longer than this. */
  timeoutMs?: number;
  /** Kill ffmpeg when it takes no data and prints nothing for this long (default 60 000). */
  idleTimeoutMs?: number;
  /** Abort (kills ffmpeg, removes the partial output). */
  signal?: AbortSignal;
  /** SIGTERM → SIGKILL grace period (default 1000 ms). */
  killGraceMs?: number;
  /** Where to find ffmpeg. */
  binaries?: BinaryOptions;
}

/** Options of {@link encodeVideo}. */
export interface EncodeOptions extends FrameWriterOptions {
  /** `'lossless'` (default; `.mkv` only) or `'h264'` (`.mp4`, `.mov` or `.mkv`). */
  preset?: EncodePreset;
  /** x264 constant rate factor for `'h264'` (default 18, visually lossless; 0–51). */
  crf?: number;
  /** x264 speed/size preset (default `'medium'`; in lossless mode it only trades speed for size). */
  x264Preset?: 'ultrafast' | 'superfast' | 'veryfast' | 'faster' | 'fast' | 'medium' | 'slow' | 'slower' | 'veryslow';
  /** What `'h264'` does with odd sizes: `'pad'` (default; black right/bottom), `'crop'`, or `'error'`. */
  evenSize?: 'pad' | 'crop' | 'error';
}

/** What {@link encodeVideo} wrote. */
export interface EncodeResult {
  path: string;
  preset: EncodePreset;
  frameCount: number;
  /** Input frame size and channels. */
  width: number;
  height: number;
  channels: 1 | 3;
  /** Frame size in the file (differs from the input only when `'h264'` padded/cropped). */
  outputWidth: number;
  outputHeight: number;
  frameRate: Rational;
  /** File size in bytes. */
  bytes: number;
  /** Warnings ffmpeg printed. */
  warnings: string[];
}

/** Geometry of the frames being written. @internal */
export interface FrameGeometry {
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Largest raw write handed to ffmpeg at once (bounded memory when slicing big clips). */
const WRITE_BYTES = 8 * 1024 * 1024;

function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === 'object' && Symbol.asyncIterator in x;
}
function isIterable(x: unknown): x is Iterable<unknown> {
  return x !== null && typeof x === 'object' && Symbol.iterator in x && !(x instanceof Uint8Array);
}
function isRawFrames(x: unknown): x is RawFrames {
  return x !== null && typeof x === 'object' && (x as RawFrames).data instanceof Uint8Array && !(x instanceof tf.Tensor);
}

/** Quantises display-space floats to 8 bits: `round(255·x)` clipped (core's `toUint8`), NaN → error. */
export function unitFloatToUint8(v: Float32Array | tf.TypedArray, name = 'frames'): Uint8Array {
  const out = new Uint8Array(v.length);
  // No globals (Math, Infinity) in this loop: inside vm contexts (jest) each global lookup is slow.
  for (let i = 0; i < v.length; i++) {
    const p = (v[i] as number) * 255 + 0.5; // round half up = Math.round
    if (p - p !== 0) {
      throw new NonFiniteError(`${name} contain a non-finite value at flat index ${i}`, { index: i });
    }
    out[i] = p < 1 ? 0 : p >= 255 ? 255 : p; // assignment truncates = floor for p ≥ 0
  }
  return out;
}

/** Splits one input item into raw pieces of at most {@link WRITE_BYTES}. */
/** The tensor of a tensor item or of a `{ frames }` chunk. */
function itemTensor(item: FrameInput): tf.Tensor | undefined {
  if (item instanceof tf.Tensor) return item;
  const f = (item as { frames?: unknown }).frames;
  return f instanceof tf.Tensor ? f : undefined;
}

function* itemToRaw(item: FrameInput, index: number): Generator<RawFrames & { count: number }> {
  if (isRawFrames(item)) {
    const { width, height, channels, data } = item;
    if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
      throw new ShapeError(`raw frames ${index}: width/height must be positive integers, got ${width}x${height}`);
    }
    if (channels !== 1 && channels !== 3) throw new ShapeError(`raw frames ${index}: channels must be 1 or 3, got ${channels}`);
    const fb = width * height * channels;
    if (data.length === 0 || data.length % fb !== 0) {
      throw new ShapeError(
        `raw frames ${index}: ${data.length} bytes is not a whole number of ${width}x${height}x${channels} frames (${fb} bytes each)`,
      );
    }
    yield { ...item, count: data.length / fb };
    return;
  }
  const t = itemTensor(item);
  if (!t) {
    throw new ShapeError(
      `frame source item ${index} must be a tf.Tensor, {frames: tf.Tensor} or {data, width, height, channels}, got ${typeof item}`,
    );
  }
  if (t.dtype !== 'float32') throw new DTypeError(`frames ${index} must be float32 in [0, 1], got ${t.dtype}`);
  if (t.rank !== 3 && t.rank !== 4) {
    throw new ShapeError(`frames ${index} must be [H,W,C] or [T,H,W,C], got shape [${t.shape.join(',')}]`);
  }
  const [count, height, width, channels] = (t.rank === 3 ? [1, ...t.shape] : t.shape) as [number, number, number, number];
  if (channels !== 1 && channels !== 3) {
    throw new ShapeError(`frames ${index} must have 1 or 3 channels, got ${channels} (shape [${t.shape.join(',')}])`);
  }
  if (count === 0 || height === 0 || width === 0) throw new ShapeError(`frames ${index} are empty: [${t.shape.join(',')}]`);
  const fb = width * height * channels;
  const per = Math.max(1, Math.floor(WRITE_BYTES / fb));
  const as4d = t.rank === 3 ? null : (t as tf.Tensor4D);
  for (let s = 0; s < count; s += per) {
    const k = Math.min(per, count - s);
    let values: tf.TypedArray;
    if (!as4d) values = t.dataSync();
    else if (k === count) values = as4d.dataSync();
    else {
      const part = tf.slice(as4d, [s, 0, 0, 0], [k, height, width, channels]);
      values = part.dataSync();
      part.dispose();
    }
    yield { data: unitFloatToUint8(values, `frames ${index}`), width, height, channels: channels as 1 | 3, count: k };
  }
}

async function* sourceItems(source: FrameSource): AsyncGenerator<FrameInput> {
  if (source instanceof tf.Tensor || isRawFrames(source) || itemTensor(source as FrameInput)) {
    yield source as FrameInput;
  } else if (isAsyncIterable(source)) {
    yield* source as AsyncIterable<FrameInput>;
  } else if (isIterable(source)) {
    yield* source as Iterable<FrameInput>;
  } else {
    throw new ShapeError('frame source must be a tensor, raw frames, or an (async) iterable of them');
  }
}

/** Checks the output's folder exists and the overwrite policy. */
async function checkOutput(out: string, overwrite: boolean, createDir = false): Promise<string> {
  if (typeof out !== 'string' || out === '') throw new ConfigError(`output path must be a non-empty string`);
  const abs = path.resolve(out);
  const dir = createDir ? abs : path.dirname(abs);
  if (createDir) await fsp.mkdir(dir, { recursive: true });
  try {
    const st = await fsp.stat(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
  } catch {
    throw new InputError('OUTPUT_DIR_NOT_FOUND', `output folder does not exist: ${dir}`, { path: dir });
  }
  if (!createDir && !overwrite) {
    const exists = await fsp.stat(abs).then(
      () => true,
      () => false,
    );
    if (exists) throw new InputError('OUTPUT_EXISTS', `output exists and overwrite is false: ${abs}`, { path: abs });
  }
  return abs;
}

/**
 * Streams a frame source into ffmpeg's stdin; `buildArgs` gets the geometry of the first frame.
 * Returns the frame count and ffmpeg's warnings. On failure the process is killed and `onFail` runs.
 * @internal
 */
export async function pipeFrames(
  source: FrameSource,
  options: FrameWriterOptions,
  label: string,
  buildArgs: (g: FrameGeometry, ffmpeg: ResolvedBinary) => string[],
  onFail: () => Promise<void>,
): Promise<{ frameCount: number; geometry: FrameGeometry; warnings: string[] }> {
  for (const k of ['timeoutMs', 'idleTimeoutMs', 'killGraceMs'] as const) {
    const v = options[k];
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ConfigError(`${k} must be a positive number, got ${v}`);
  }
  if (options.signal?.aborted) throw abortedBeforeStart(label, options.signal);
  const startedAt = Date.now();
  const ffmpeg = await resolveFfmpeg(options.binaries);
  const collector = new DamageCollector();
  let proc: FfmpegProcess | undefined;
  let geometry: FrameGeometry | undefined;
  let frameCount = 0;
  let index = 0;
  const fromIterable = !(source instanceof tf.Tensor) && !isRawFrames(source) && !itemTensor(source as FrameInput);
  try {
    for await (const item of sourceItems(source)) {
      for (const raw of itemToRaw(item, index)) {
        if (!geometry) {
          geometry = { width: raw.width, height: raw.height, channels: raw.channels };
          const remaining =
            options.timeoutMs !== undefined ? Math.max(1, options.timeoutMs - (Date.now() - startedAt)) : undefined;
          proc = startFfmpeg(ffmpeg.path, buildArgs(geometry, ffmpeg), {
            stdin: true,
            stdout: false,
            ...(remaining !== undefined ? { timeoutMs: remaining } : {}),
            idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
            ...(options.signal ? { signal: options.signal } : {}),
            ...(options.killGraceMs !== undefined ? { killGraceMs: options.killGraceMs } : {}),
            onStderrLine: collector.push,
            label,
          });
        } else if (
          raw.width !== geometry.width ||
          raw.height !== geometry.height ||
          raw.channels !== geometry.channels
        ) {
          throw new ShapeError(
            `frames ${index} are ${raw.width}x${raw.height}x${raw.channels} but the first frames were ` +
              `${geometry.width}x${geometry.height}x${geometry.channels}: every frame of a video must have one size`,
            { index },
          );
        }
        // Producer waits for the consumer (the source is only pulled after ffmpeg took this chunk).
        proc!.holdIdle(false);
        await proc!.write(raw.data);
        frameCount += raw.count;
      }
      if (options.disposeInputs && fromIterable) itemTensor(item)?.dispose();
      index++;
      // Time spent in the caller's generator is not ffmpeg being idle.
      proc?.holdIdle(true);
    }
    if (!proc || !geometry || frameCount === 0) {
      throw new InputError('VIDEO_NO_FRAMES', `${label}: the frame source yielded no frames`);
    }
    proc.holdIdle(false);
    await proc.endInput();
    await proc.exited;
    return { frameCount, geometry, warnings: [...collector.log.warnings, ...collector.log.errorMessages] };
  } catch (caught) {
    let err = caught;
    if (proc) {
      // After a failed write ffmpeg has exited or is exiting: its status says why. Otherwise the
      // failure is ours (bad frame, abort) and ffmpeg must be stopped.
      if (!(err instanceof StdinClosedError) && !proc.hasExited) proc.kill('input error');
      try {
        await proc.exited;
      } catch (e) {
        if (err instanceof StdinClosedError) err = e;
      }
    }
    if (err instanceof StdinClosedError) {
      err = new FfmpegProcessError('FFMPEG_EXIT', `${label}: ffmpeg stopped reading input after ${frameCount} frames`, {
        binary: ffmpeg.path,
        args: proc?.args ?? [],
        pid: proc?.pid,
        exitCode: 0,
        signal: null,
        stderrTail: proc?.stderrTail() ?? '',
      });
    }
    await onFail().catch(() => undefined);
    throw err;
  }
}

const H264_EXT = new Set(['.mp4', '.mov', '.mkv', '.m4v']);

/**
 * Encodes frames to `outPath` with the `'lossless'` (default) or `'h264'` preset (see the module
 * doc). `source` is a `Video<'display'>`/image batch tensor `[T,H,W,C]` (C = 1 or 3), raw 8-bit
 * frames, or a (async) iterable of images `[H,W,C]`, clips or raw frames — streamed, so the whole
 * video need not be in memory. Tensors are never disposed unless `disposeInputs` is set.
 * Partial output is removed on failure.
 */
export async function encodeVideo(source: FrameSource, outPath: string, options: EncodeOptions = {}): Promise<EncodeResult> {
  const preset = options.preset ?? 'lossless';
  if (preset !== 'lossless' && preset !== 'h264') {
    throw new ConfigError(`preset must be 'lossless' or 'h264', got ${JSON.stringify(preset)}`);
  }
  const crf = options.crf ?? 18;
  if (!(Number.isFinite(crf) && crf >= 0 && crf <= 51)) throw new ConfigError(`crf must be in [0, 51], got ${crf}`);
  const evenSize = options.evenSize ?? 'pad';
  if (!['pad', 'crop', 'error'].includes(evenSize)) throw new ConfigError(`evenSize must be 'pad', 'crop' or 'error'`);
  const x264Preset = options.x264Preset ?? 'medium';
  const rate = toRational(options.fps ?? 24);
  const abs = await checkOutput(outPath, options.overwrite ?? true);
  const ext = path.extname(abs).toLowerCase();
  if (preset === 'lossless' && ext !== '.mkv') {
    throw new ConfigError(`the lossless preset writes Matroska: use a .mkv output path, got "${path.basename(abs)}"`);
  }
  if (preset === 'h264' && !H264_EXT.has(ext)) {
    throw new ConfigError(`the h264 preset writes .mp4, .mov, .m4v or .mkv, got "${path.basename(abs)}"`);
  }
  let outW = 0;
  let outH = 0;
  const { frameCount, geometry, warnings } = await pipeFrames(
    source,
    options,
    `encoding ${path.basename(abs)}`,
    (g) => {
      outW = g.width;
      outH = g.height;
      const args = [
        '-hide_banner',
        '-nostdin',
        '-nostats',
        '-loglevel',
        'repeat+level+warning',
        options.overwrite === false ? '-n' : '-y',
        '-f',
        'rawvideo',
        '-pix_fmt',
        g.channels === 3 ? 'rgb24' : 'gray',
        '-s',
        `${g.width}x${g.height}`,
        '-framerate',
        `${rate.num}/${rate.den}`,
        '-i',
        'pipe:0',
      ];
      if (preset === 'lossless') {
        // gray input is expanded to R=G=B exactly; decoding as gray gives it back exactly.
        args.push('-c:v', 'libx264rgb', '-qp', '0', '-preset', x264Preset, '-pix_fmt', 'rgb24');
      } else {
        const odd = g.width % 2 === 1 || g.height % 2 === 1;
        if (odd) {
          if (evenSize === 'error') {
            throw new ShapeError(`h264 (yuv420p) needs even width and height, got ${g.width}x${g.height}; use evenSize 'pad' or 'crop'`);
          }
          if (evenSize === 'pad') {
            outW = g.width + (g.width % 2);
            outH = g.height + (g.height % 2);
            args.push('-vf', `pad=${outW}:${outH}:0:0:black`);
          } else {
            outW = g.width - (g.width % 2);
            outH = g.height - (g.height % 2);
            if (outW === 0 || outH === 0) throw new ShapeError(`cannot crop ${g.width}x${g.height} to an even size`);
            args.push('-vf', `crop=${outW}:${outH}:0:0`);
          }
        }
        args.push(
          '-c:v',
          'libx264',
          '-pix_fmt',
          'yuv420p',
          '-crf',
          String(crf),
          '-preset',
          x264Preset,
          '-colorspace',
          'smpte170m',
          '-color_primaries',
          'smpte170m',
          '-color_trc',
          'smpte170m',
        );
        if (ext !== '.mkv') args.push('-movflags', '+faststart');
      }
      args.push(abs);
      return args;
    },
    () => fsp.rm(abs, { force: true }),
  );
  const st = await fsp.stat(abs);
  return {
    path: abs,
    preset,
    frameCount,
    width: geometry.width,
    height: geometry.height,
    channels: geometry.channels,
    outputWidth: outW,
    outputHeight: outH,
    frameRate: rate,
    bytes: st.size,
    warnings,
  };
}

export { checkOutput as checkOutputPath };
