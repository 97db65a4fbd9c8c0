/**
 * Reading a video's geometry, rate and length with ffprobe.
 *
 * Command (ecosystem reference §5.1, plus the fields needed for audio and rotation):
 * `ffprobe -v error -show_entries stream=…:stream_disposition=attached_pic:stream_side_data=rotation:stream_tags=rotate:format=duration,format_name -of json IN`.
 * Rates come back as rational strings (`"2997/125"`) and are kept exact as {@link Rational}.
 * `nb_frames` is missing for some containers (Matroska, WebM, raw streams); the frame count is then
 * obtained by decoding (`-count_frames`, slower) and flagged `frameCountSource: 'counted'`.
 * @module
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, InputError } from '@diffmem/core';
import { resolveFfprobe, type BinaryOptions } from './binaries.js';
import { FfmpegProcessError } from './errors.js';
import { runFfmpeg } from './ffmpeg.js';

/** An exact rate `num / den` (frames per second). */
export interface Rational {
  num: number;
  den: number;
}

/** What {@link probeVideo} found about the first video stream. */
export interface VideoProbe {
  /** Absolute path probed. */
  path: string;
  /** Width of decoded frames (after the display rotation ffmpeg applies by default). */
  width: number;
  /** Height of decoded frames (after rotation). */
  height: number;
  /** Width as stored in the stream (before rotation). */
  storedWidth: number;
  /** Height as stored in the stream (before rotation). */
  storedHeight: number;
  /** Display rotation in degrees from the display matrix / `rotate` tag (0 when none). */
  rotation: number;
  /** Average frame rate (`avg_frame_rate`, falling back to `r_frame_rate`), exact. */
  frameRate: Rational;
  /** {@link frameRate} as a number (`num / den`). */
  fps: number;
  /** The stream's base rate `r_frame_rate` (what ffmpeg assumes for constant-rate output). */
  realFrameRate: Rational;
  /** Number of frames: from the container, counted by decoding, or estimated as duration × fps. */
  frameCount: number;
  /** Where {@link frameCount} came from. */
  frameCountSource: 'nb_frames' | 'counted' | 'estimated';
  /** Duration in seconds (stream, else container), undefined if unknown. */
  duration: number | undefined;
  /** Decoder name, e.g. `'mpeg4'`, `'h264'`. */
  codec: string;
  /** Stored pixel format, e.g. `'yuv420p'`. */
  pixelFormat: string;
  /** Whether the file has at least one audio stream. */
  hasAudio: boolean;
  /** Container format name(s), e.g. `'avi'`, `'mov,mp4,m4a,3gp,3g2,mj2'`. */
  formatName: string;
  /** Index of the probed stream in the file. */
  streamIndex: number;
}

/** Options of {@link probeVideo}. */
export interface ProbeOptions {
  /**
   * Count frames by decoding: `'auto'` (default) only when the container does not store a count,
   * `'always'`, or `'never'` (estimate from duration × fps instead).
   */
  countFrames?: 'auto' | 'always' | 'never';
  /**
   * Kill ffprobe after this many ms. Default: 60 000 for reading the headers; the counting pass
   * (which decodes the whole stream) has no default limit.
   */
  timeoutMs?: number;
  /** Abort probing. */
  signal?: AbortSignal;
  /** Where to find ffprobe. */
  binaries?: BinaryOptions;
}

interface ProbeStream {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  nb_frames?: string;
  nb_read_frames?: string;
  pix_fmt?: string;
  duration?: string;
  disposition?: { attached_pic?: number };
  tags?: { rotate?: string };
  side_data_list?: Array<{ rotation?: number | string }>;
}

interface ProbeJson {
  streams?: ProbeStream[];
  format?: { duration?: string; format_name?: string };
}

/** Parses an ffprobe rational (`"30000/1001"`, `"25"`); undefined for `0/0`, `N/A` or garbage. */
export function parseRational(s: string | undefined): Rational | undefined {
  if (!s) return undefined;
  const m = /^\s*(\d+)(?:\s*\/\s*(\d+))?\s*$/.exec(s);
  if (!m) return undefined;
  const num = Number(m[1]);
  const den = m[2] === undefined ? 1 : Number(m[2]);
  if (!(num > 0 && den > 0)) return undefined;
  return { num, den };
}

function parseNumber(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
}

/**
 * Checks that `file` is an existing, non-empty regular file; throws `InputError`
 * (`VIDEO_NOT_FOUND`, `VIDEO_NOT_A_FILE`, `VIDEO_EMPTY_FILE`) otherwise. Returns the absolute path.
 */
export async function assertReadableFile(file: string, what = 'video'): Promise<string> {
  if (typeof file !== 'string' || file === '') {
    throw new ConfigError(`${what} path must be a non-empty string, got ${JSON.stringify(file)}`);
  }
  const abs = path.resolve(file);
  let st;
  try {
    st = await fsp.stat(abs);
  } catch {
    throw new InputError('VIDEO_NOT_FOUND', `${what} file not found: ${abs}`, { path: abs });
  }
  if (!st.isFile()) throw new InputError('VIDEO_NOT_A_FILE', `${what} path is not a regular file: ${abs}`, { path: abs });
  if (st.size === 0) throw new InputError('VIDEO_EMPTY_FILE', `${what} file is empty (0 bytes): ${abs}`, { path: abs });
  return abs;
}

const ENTRIES =
  'stream=index,codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,nb_frames,nb_read_frames,pix_fmt,duration' +
  ':stream_disposition=attached_pic:stream_tags=rotate:stream_side_data=rotation:format=duration,format_name';

async function runProbe(bin: string, abs: string, extra: string[], opts: ProbeOptions, defaultTimeout?: number): Promise<ProbeJson> {
  const timeoutMs = opts.timeoutMs ?? defaultTimeout;
  try {
    const out = await runFfmpeg(bin, ['-v', 'error', '-hide_banner', ...extra, '-show_entries', ENTRIES, '-of', 'json', abs], {
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      label: `probing ${path.basename(abs)}`,
    });
    return JSON.parse(out.stdout.toString('utf8')) as ProbeJson;
  } catch (err) {
    if (err instanceof FfmpegProcessError && err.code === 'FFMPEG_EXIT') {
      const why = err.stderrTail.trim().split(/\r?\n/).slice(-3).join('; ') || `ffprobe exit code ${err.exitCode}`;
      throw new InputError('VIDEO_UNREADABLE', `cannot read ${abs} as a video: ${why}`, {
        path: abs,
        stderrTail: err.stderrTail,
      });
    }
    if (err instanceof SyntaxError) {
      throw new InputError('VIDEO_UNREADABLE', `ffprobe printed invalid JSON for ${abs}: ${err.message}`, { path: abs });
    }
    throw err;
  }
}

/**
 * Probes the first video stream of `file` (cover-art streams are skipped).
 * Throws `InputError` with `VIDEO_NOT_FOUND`, `VIDEO_NOT_A_FILE`, `VIDEO_EMPTY_FILE`,
 * `VIDEO_UNREADABLE` (ffprobe cannot parse it) or `VIDEO_NO_VIDEO_STREAM`.
 */
export async function probeVideo(file: string, options: ProbeOptions = {}): Promise<VideoProbe> {
  const mode = options.countFrames ?? 'auto';
  if (!['auto', 'always', 'never'].includes(mode)) {
    throw new ConfigError(`countFrames must be 'auto', 'always' or 'never', got ${JSON.stringify(mode)}`);
  }
  const abs = await assertReadableFile(file);
  const ffprobe = await resolveFfprobe(options.binaries);
  const json = await runProbe(ffprobe.path, abs, [], options, 60_000);
  const streams = json.streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (!video || !video.width || !video.height) {
    throw new InputError('VIDEO_NO_VIDEO_STREAM', `${abs} has no video stream`, {
      path: abs,
      streams: streams.map((s) => s.codec_type),
    });
  }
  const realFrameRate = parseRational(video.r_frame_rate);
  const frameRate = parseRational(video.avg_frame_rate) ?? realFrameRate;
  if (!frameRate || !realFrameRate) {
    throw new InputError('VIDEO_UNREADABLE', `${abs}: video stream has no frame rate (r_frame_rate=${video.r_frame_rate})`, {
      path: abs,
    });
  }
  const fps = frameRate.num / frameRate.den;
  const duration = parseNumber(video.duration) ?? parseNumber(json.format?.duration);

  const sideRotation = video.side_data_list?.find((d) => d.rotation !== undefined)?.rotation;
  const rotation = Number(sideRotation ?? video.tags?.rotate ?? 0) || 0;
  const quarterTurn = Math.abs(Math.round(rotation / 90)) % 2 === 1;

  let frameCount: number | undefined = parseNumber(video.nb_frames);
  let frameCountSource: VideoProbe['frameCountSource'] = 'nb_frames';
  if (frameCount !== undefined && frameCount <= 0) frameCount = undefined;
  if (mode === 'always' || (mode === 'auto' && frameCount === undefined)) {
    const idx = String(video.index ?? 0);
    const counted = await runProbe(ffprobe.path, abs, ['-count_frames', '-select_streams', idx], options);
    const n = parseNumber(counted.streams?.[0]?.nb_read_frames);
    if (n !== undefined) {
      frameCount = n;
      frameCountSource = 'counted';
    }
  }
  if (frameCount === undefined) {
    frameCount = duration !== undefined ? Math.round(duration * fps) : 0;
    frameCountSource = 'estimated';
  }

  return {
    path: abs,
    width: quarterTurn ? video.height : video.width,
    height: quarterTurn ? video.width : video.height,
    storedWidth: video.width,
    storedHeight: video.height,
    rotation,
    frameRate,
    fps,
    realFrameRate,
    frameCount,
    frameCountSource,
    duration,
    codec: video.codec_name ?? 'unknown',
    pixelFormat: video.pix_fmt ?? 'unknown',
    hasAudio: streams.some((s) => s.codec_type === 'audio'),
    formatName: json.format?.format_name ?? 'unknown',
    streamIndex: video.index ?? 0,
  };
}
