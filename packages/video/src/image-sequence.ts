/**
 * Image sequences (a folder of numbered frames) in and out, through ffmpeg.
 *
 * Reading: the files are listed and sorted in natural order (`frame2` before `frame10`), linked
 * into a temporary folder as `00000000.ext, 00000001.ext, …`, and decoded by ffmpeg's image2
 * demuxer in a single process (`-f image2 -framerate 1 -start_number 0 -i tmp/%08d.ext`), with the
 * same raw-output path as video files (so resizing, gray, maxFrames, damage reports and timeouts
 * behave identically). Frames are scaled to one size (the first image's, or width/height), so a
 * sequence with mixed sizes still decodes. VSC 2022 extracts frames the other way round with
 * `ffmpeg -i IN -start_number 0 -vf fps=F OUT/%07d.png` (video-memorization reference §7).
 *
 * Writing: 8-bit frames are piped to ffmpeg's PNG encoder (`-c:v png -f image2 OUT/frame_%06d.png`),
 * which stores `rgb24`/`gray` exactly: reading the sequence back gives the same bytes.
 * @module
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, InputError } from '@diffmem/core';
import { resolveFfmpeg, supportsFpsMode } from './binaries.js';
import {
  LOG_ARGS,
  decodeVideoFromPlan,
  openRawStream,
  outputSize,
  rawOutputArgs,
  tensorStream,
  type DecodePlan,
  type DecodeVideoOptions,
  type DecodedVideo,
  type FrameChunk,
  type FrameStream,
  type StreamDecodeOptions,
} from './decode.js';
import { checkOutputPath, pipeFrames, type FrameSource, type FrameWriterOptions } from './encode.js';
import { assertReadableFile, probeVideo, type VideoProbe } from './probe.js';

/** File extensions read as images, mapped to one canonical extension per format. */
const IMAGE_EXT: Record<string, string> = {
  '.png': '.png',
  '.jpg': '.jpg',
  '.jpeg': '.jpg',
  '.bmp': '.bmp',
  '.tif': '.tiff',
  '.tiff': '.tiff',
  '.webp': '.webp',
  '.ppm': '.ppm',
  '.pgm': '.pgm',
  '.pnm': '.pnm',
  '.exr': '.exr',
  '.dpx': '.dpx',
  '.tga': '.tga',
};

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** Turns a printf (`%06d`, `%d`) or glob (`*`, `?`) file-name pattern into a RegExp. */
function patternToRegExp(name: string): RegExp {
  let re = '';
  for (let i = 0; i < name.length; i++) {
    const ch = name[i] as string;
    const printf = /^%0?(\d*)d/.exec(name.slice(i));
    if (printf) {
      const width = printf[1] ? Number(printf[1]) : 0;
      re += width > 0 ? `\\d{${width},}` : '\\d+';
      i += printf[0].length - 1;
    } else if (ch === '%' && name[i + 1] === '%') {
      re += '%';
      i++;
    } else if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Lists the frames of a sequence in natural order. `source` is a folder (every image file in it),
 * a printf pattern (`out/frame_%06d.png`), a glob on the file name (`out/*.png`), or an explicit
 * list of files (kept in the given order). Throws `InputError('IMAGE_SEQUENCE_EMPTY')` when
 * nothing matches.
 */
export async function listImageSequence(source: string | readonly string[]): Promise<string[]> {
  if (Array.isArray(source)) {
    if (source.length === 0) throw new InputError('IMAGE_SEQUENCE_EMPTY', 'image sequence: the file list is empty');
    return source.map((f) => path.resolve(f));
  }
  if (typeof source !== 'string' || source === '') {
    throw new ConfigError('image sequence source must be a folder, a pattern, or a list of files');
  }
  const abs = path.resolve(source);
  const st = await fsp.stat(abs).catch(() => undefined);
  let dir: string;
  let match: (f: string) => boolean;
  if (st?.isDirectory()) {
    dir = abs;
    match = (f) => path.extname(f).toLowerCase() in IMAGE_EXT;
  } else {
    dir = path.dirname(abs);
    const re = patternToRegExp(path.basename(abs));
    match = (f) => re.test(f);
    const dst = await fsp.stat(dir).catch(() => undefined);
    if (!dst?.isDirectory()) {
      throw new InputError('VIDEO_NOT_FOUND', `image sequence folder not found: ${dir}`, { path: dir });
    }
  }
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  const files = entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && match(e.name))
    .map((e) => e.name)
    .sort(collator.compare)
    .map((n) => path.join(dir, n));
  if (files.length === 0) {
    throw new InputError('IMAGE_SEQUENCE_EMPTY', `image sequence: no image files match ${abs}`, { path: abs });
  }
  return files;
}

/** Links (or copies, where links are not allowed) `files` into a fresh temp folder as `%08d.ext`. */
async function stageSequence(files: readonly string[]): Promise<{ dir: string; pattern: string }> {
  const exts = new Set(files.map((f) => IMAGE_EXT[path.extname(f).toLowerCase()] ?? path.extname(f).toLowerCase()));
  if (exts.size !== 1) {
    throw new InputError(
      'IMAGE_SEQUENCE_MIXED_FORMATS',
      `image sequence mixes formats (${[...exts].join(', ')}); ffmpeg's image2 reader decodes one format per sequence`,
      { formats: [...exts] },
    );
  }
  const ext = [...exts][0] || '.png';
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'diffmem-seq-'));
  try {
    await Promise.all(
      files.map(async (f, i) => {
        const dst = path.join(dir, `${String(i).padStart(8, '0')}${ext}`);
        try {
          await fsp.symlink(f, dst);
        } catch {
          await fsp.copyFile(f, dst);
        }
      }),
    );
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, pattern: path.join(dir, `%08d${ext}`) };
}

async function planSequence(
  source: string | readonly string[],
  o: StreamDecodeOptions,
  deadline: () => number | undefined,
): Promise<DecodePlan> {
  let files = await listImageSequence(source);
  if (o.maxFrames !== undefined) files = files.slice(0, o.maxFrames);
  await Promise.all(files.map((f) => assertReadableFile(f, 'image')));
  const remaining = deadline();
  const first: VideoProbe = await probeVideo(files[0] as string, {
    countFrames: 'never',
    ...(remaining !== undefined ? { timeoutMs: remaining } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.binaries ? { binaries: o.binaries } : {}),
  });
  const ffmpeg = await resolveFfmpeg(o.binaries);
  const { width, height } = outputSize(first.width, first.height, o.width, o.height);
  const channels: 1 | 3 = o.color === 'gray' ? 1 : 3;
  const staged = await stageSequence(files);
  const args = [...LOG_ARGS, '-f', 'image2', '-framerate', '1', '-start_number', '0', '-i', staged.pattern, '-map', '0:0'];
  args.push(...rawOutputArgs({ ...o, fps: undefined }, width, height, channels, supportsFpsMode(ffmpeg) ? '-fps_mode' : '-vsync'));
  const probe: VideoProbe = { ...first, frameCount: files.length, frameCountSource: 'counted', duration: undefined };
  return {
    args,
    width,
    height,
    channels,
    fps: first.fps,
    expectedFrames: files.length,
    probe,
    ffmpeg: ffmpeg.path,
    label: `reading image sequence ${Array.isArray(source) ? `(${files.length} files)` : path.basename(String(source))}`,
    cleanup: () => fsp.rm(staged.dir, { recursive: true, force: true }),
  };
}

function checkSequenceOptions(o: StreamDecodeOptions): void {
  if (o.fps !== undefined || o.start !== undefined || o.duration !== undefined) {
    throw new ConfigError('image sequences have no timeline: fps, start and duration do not apply (use maxFrames)');
  }
}

/**
 * Reads an image sequence (see {@link listImageSequence} for `source`) into one
 * `Video<'display'>` `[T, H, W, C]` plus the decode report; unreadable images show up as damage
 * (`missingFrames`, `errorMessages`), or as {@link VideoDamagedError} with `strict`.
 */
export async function readImageSequence(
  source: string | readonly string[],
  options: DecodeVideoOptions = {},
): Promise<DecodedVideo> {
  checkSequenceOptions(options);
  return decodeVideoFromPlan((deadline) => planSequence(source, options, deadline), options);
}

/** Streams an image sequence as chunks of display-space frames (bounded memory). */
export function readImageSequenceFrames(
  source: string | readonly string[],
  options: StreamDecodeOptions = {},
): FrameStream<FrameChunk> {
  checkSequenceOptions(options);
  return tensorStream(openRawStream((deadline) => planSequence(source, options, deadline), options));
}

/** Options of {@link writeImageSequence}. */
export interface WriteImageSequenceOptions extends Omit<FrameWriterOptions, 'fps'> {
  /** File-name prefix (default `'frame_'`). */
  prefix?: string;
  /** Zero-padded digits of the frame number (default 6). */
  digits?: number;
  /** Number of the first file (default 0, as VSC's extraction). */
  startNumber?: number;
}

/** What {@link writeImageSequence} wrote. */
export interface ImageSequenceResult {
  /** Folder written to. */
  dir: string;
  /** Files written, in frame order. */
  files: string[];
  frameCount: number;
  width: number;
  height: number;
  channels: 1 | 3;
  /** The printf pattern of the files (readable back with {@link readImageSequence}). */
  pattern: string;
}

/**
 * Writes frames (same sources as `encodeVideo`) as lossless PNG files `dir/prefix%0Nd.png`,
 * creating `dir` if needed. 8-bit values are stored exactly (`round(255·x)`).
 */
export async function writeImageSequence(
  source: FrameSource,
  dir: string,
  options: WriteImageSequenceOptions = {},
): Promise<ImageSequenceResult> {
  const prefix = options.prefix ?? 'frame_';
  const digits = options.digits ?? 6;
  const startNumber = options.startNumber ?? 0;
  if (!(Number.isInteger(digits) && digits >= 1 && digits <= 12)) throw new ConfigError(`digits must be in 1..12, got ${digits}`);
  if (!(Number.isInteger(startNumber) && startNumber >= 0)) throw new ConfigError(`startNumber must be a non-negative integer`);
  if (/[/\\%]/.test(prefix)) throw new ConfigError(`prefix must not contain path separators or %, got ${JSON.stringify(prefix)}`);
  const absDir = await checkOutputPath(dir, true, true);
  const pattern = path.join(absDir, `${prefix}%0${digits}d.png`);
  const name = (i: number): string => path.join(absDir, `${prefix}${String(startNumber + i).padStart(digits, '0')}.png`);
  if (options.overwrite === false) {
    const exists = await fsp.stat(name(0)).then(
      () => true,
      () => false,
    );
    if (exists) throw new InputError('OUTPUT_EXISTS', `output exists and overwrite is false: ${name(0)}`, { path: name(0) });
  }
  const { frameCount, geometry } = await pipeFrames(
    source,
    options,
    `writing PNG frames to ${absDir}`,
    (g) => [
      ...LOG_ARGS,
      options.overwrite === false ? '-n' : '-y',
      '-f',
      'rawvideo',
      '-pix_fmt',
      g.channels === 3 ? 'rgb24' : 'gray',
      '-s',
      `${g.width}x${g.height}`,
      '-framerate',
      '1',
      '-i',
      'pipe:0',
      '-c:v',
      'png',
      '-pix_fmt',
      g.channels === 3 ? 'rgb24' : 'gray',
      '-start_number',
      String(startNumber),
      '-f',
      'image2',
      pattern,
    ],
    async () => {
      // Remove the frames a failed write left behind (they are numbered consecutively).
      for (let i = 0; ; i++) {
        const removed = await fsp.rm(name(i)).then(
          () => true,
          () => false,
        );
        if (!removed) break;
      }
    },
  );
  const files = Array.from({ length: frameCount }, (_, i) => name(i));
  return { dir: absDir, files, frameCount, width: geometry.width, height: geometry.height, channels: geometry.channels, pattern };
}
