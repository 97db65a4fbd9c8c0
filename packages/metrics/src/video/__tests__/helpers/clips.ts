// Test helpers for the video metrics: real clips (Megamind.avi frames, moving-object clips built
// from the real photographs) and the copy transforms (re-encode, resize, crop, frame-rate change).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Generator, readImageFile, type ImageBatch } from '@diffmem/core';
import { sharedDataDir, SHARED_DATA_MISSING } from '@diffmem/core/testing';
import { decodeVideo, encodeVideo } from '@diffmem/video';
import { resizeAntialiased } from '../../../embedders/preprocess.js';

/** The real media folder, or null (tests skip with {@link SHARED_DATA_MISSING}). */
export const DATA = sharedDataDir();
export { SHARED_DATA_MISSING };
if (!DATA) console.warn(`[video metrics tests] ${SHARED_DATA_MISSING}`);

/** Shot boundaries of Megamind.avi (first frame of each shot, from ffmpeg's scene detection). */
export const MEGAMIND_SHOTS: ReadonlyArray<[number, number]> = [
  [1, 98],
  [99, 154],
  [155, 200],
  [201, 269],
];

/** Shot index of a Megamind frame. */
export function shotOf(frame: number): number {
  return MEGAMIND_SHOTS.findIndex(([a, b]) => frame >= a && frame <= b);
}

/** Decodes Megamind.avi (RGB, display space) at the given size through @diffmem/video. */
export async function loadMegamind(width = 128, height = 96): Promise<{ video: tf.Tensor4D; fps: number }> {
  const d = await decodeVideo(path.join(DATA as string, 'Megamind.avi'), { width, height, scaleFlags: 'area' });
  return { video: d.video, fps: d.fps };
}

/** A real photograph as a display-space [H,W,3] tensor. */
export function loadPhoto(name: string): tf.Tensor3D {
  return readImageFile(path.join(DATA as string, name), 3);
}

function bilinear(src: Float32Array, w: number, h: number, x: number, y: number, c: number): number {
  const cx = Math.min(Math.max(x, 0), w - 1);
  const cy = Math.min(Math.max(y, 0), h - 1);
  const x0 = Math.min(Math.floor(cx), w - 2);
  const y0 = Math.min(Math.floor(cy), h - 2);
  const fx = cx - x0;
  const fy = cy - y0;
  const at = (xx: number, yy: number): number => src[(yy * w + xx) * 3 + c] as number;
  return (
    (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1))
  );
}

/** Options of {@link movingObjectClip}. */
export interface MovingObjectOptions {
  frames: number;
  width: number;
  height: number;
  seed: number;
  /** Object speed in pixels per frame (default 3). */
  speed?: number;
  /** Camera pan of the background in pixels per frame, [dx, dy] (default [0, 0]). */
  pan?: [number, number];
  /** Side of the moving square patch (default 32). */
  objectSize?: number;
  /** Whether the object moves at all (default true). */
  objectMoves?: boolean;
}

/**
 * A clip built from real photographs: a window of `background` (optionally panning) with a patch of
 * `sprite` moving along a seeded smooth curved trajectory (object motion the camera model cannot
 * explain). Sub-pixel positions are rendered with bilinear sampling.
 */
export function movingObjectClip(background: tf.Tensor3D, sprite: tf.Tensor3D, o: MovingObjectOptions): tf.Tensor4D {
  const g = new Generator(o.seed);
  const [bh, bw] = background.shape;
  const [sh, sw] = sprite.shape;
  const bg = background.dataSync() as Float32Array;
  const sp = sprite.dataSync() as Float32Array;
  const size = o.objectSize ?? 32;
  const speed = o.speed ?? 3;
  const pan = o.pan ?? [0, 0];
  const sx0 = g.random() * (sw - size - 1);
  const sy0 = g.random() * (sh - size - 1);
  const bx0 = g.random() * Math.max(1, bw - o.width - Math.abs(pan[0]) * o.frames - 1) + (pan[0] < 0 ? -pan[0] * o.frames : 0);
  const by0 = g.random() * Math.max(1, bh - o.height - Math.abs(pan[1]) * o.frames - 1) + (pan[1] < 0 ? -pan[1] * o.frames : 0);
  let px = size / 2 + g.random() * (o.width - 2 * size);
  let py = size / 2 + g.random() * (o.height - 2 * size);
  let heading = g.random() * 2 * Math.PI;
  const turn = (g.random() - 0.5) * 0.5; // radians per frame: a curved path, different per seed
  const out = new Float32Array(o.frames * o.height * o.width * 3);
  for (let t = 0; t < o.frames; t++) {
    const ox = bx0 + pan[0] * t;
    const oy = by0 + pan[1] * t;
    for (let y = 0; y < o.height; y++) {
      for (let x = 0; x < o.width; x++) {
        const inObj = x >= px && x < px + size && y >= py && y < py + size;
        for (let c = 0; c < 3; c++) {
          out[((t * o.height + y) * o.width + x) * 3 + c] = inObj
            ? bilinear(sp, sw, sh, sx0 + (x - px), sy0 + (y - py), c)
            : bilinear(bg, bw, bh, ox + x, oy + y, c);
        }
      }
    }
    if (o.objectMoves ?? true) {
      heading += turn;
      px += speed * Math.cos(heading);
      py += speed * Math.sin(heading);
      // bounce off the borders so the object stays in view
      if (px < 0 || px > o.width - size) {
        heading = Math.PI - heading;
        px = Math.min(Math.max(px, 0), o.width - size);
      }
      if (py < 0 || py > o.height - size) {
        heading = -heading;
        py = Math.min(Math.max(py, 0), o.height - size);
      }
    }
  }
  return tf.tensor4d(out, [o.frames, o.height, o.width, 3]);
}

/** A camera-only clip: a window panning (and slowly zooming) across a photograph. */
export function panningClip(photo: tf.Tensor3D, o: { frames: number; width: number; height: number; seed: number; pan: [number, number]; zoom?: number }): tf.Tensor4D {
  const g = new Generator(o.seed);
  const [ph, pw] = photo.shape;
  const src = photo.dataSync() as Float32Array;
  const zoom = o.zoom ?? 1;
  const x0 = 20 + g.random() * Math.max(1, pw - o.width * 1.3 - Math.abs(o.pan[0]) * o.frames - 40);
  const y0 = 20 + g.random() * Math.max(1, ph - o.height * 1.3 - Math.abs(o.pan[1]) * o.frames - 40);
  const out = new Float32Array(o.frames * o.height * o.width * 3);
  for (let t = 0; t < o.frames; t++) {
    const s = Math.pow(zoom, -t); // zooming in: the window shrinks
    for (let y = 0; y < o.height; y++) {
      for (let x = 0; x < o.width; x++) {
        const sx = x0 + o.pan[0] * t + (x - o.width / 2) * s + o.width / 2;
        const sy = y0 + o.pan[1] * t + (y - o.height / 2) * s + o.height / 2;
        for (let c = 0; c < 3; c++) out[((t * o.height + y) * o.width + x) * 3 + c] = bilinear(src, pw, ph, sx, sy, c);
      }
    }
  }
  return tf.tensor4d(out, [o.frames, o.height, o.width, 3]);
}

let tmpDir: string | null = null;
let tmpCount = 0;

/** Re-encodes a clip with H.264 at `crf` through @diffmem/video and decodes it back. */
export async function reencode(clip: tf.Tensor4D, fps: number, crf = 30): Promise<tf.Tensor4D> {
  tmpDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-video-metrics-'));
  const file = path.join(tmpDir, `clip${tmpCount++}.mp4`);
  await encodeVideo(clip, file, { preset: 'h264', crf, fps, x264Preset: 'veryfast' });
  try {
    const d = await decodeVideo(file, {});
    return d.video;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** Removes the temporary folder of {@link reencode}. */
export function cleanupTemp(): void {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = null;
}

/** Resizes every frame (antialiased) to height × width. */
export function resizeClip(clip: tf.Tensor4D, height: number, width: number): tf.Tensor4D {
  return tf.tidy(() => tf.clipByValue(resizeAntialiased(clip, height, width), 0, 1) as tf.Tensor4D);
}

/** Central crop keeping `fraction` of each side (the copy keeps the cropped size). */
export function cropClip(clip: tf.Tensor4D, fraction: number): tf.Tensor4D {
  const [t, h, w, c] = clip.shape;
  const ch = Math.round(h * fraction);
  const cw = Math.round(w * fraction);
  return tf.slice(clip, [0, Math.floor((h - ch) / 2), Math.floor((w - cw) / 2), 0], [t, ch, cw, c]);
}

/** Keeps every `factor`-th frame starting at `offset` (a frame-rate change by 1/factor). */
export function dropFrames(clip: tf.Tensor4D, factor: number, offset = 1): tf.Tensor4D {
  const idx: number[] = [];
  for (let i = offset; i < clip.shape[0]; i += factor) idx.push(i);
  return tf.gather(clip, tf.tensor1d(idx, 'int32')) as tf.Tensor4D;
}

/** Frames [start, start+count) of a decoded video. */
export function segment(video: tf.Tensor4D, start: number, count: number): tf.Tensor4D {
  return tf.slice(video, [start, 0, 0, 0], [count, -1, -1, -1]);
}

/** Grayscale [N,H,W,1] of a [N,H,W,3] batch. */
export function gray(x: tf.Tensor4D): ImageBatch<'display'> {
  return tf.tidy(() => tf.sum(tf.mul(x, tf.tensor1d([0.299, 0.587, 0.114])), 3, true)) as ImageBatch<'display'>;
}

/** Prints a labelled table of numbers (the evidence the tests report). */
export function report(title: string, rows: Record<string, unknown>): void {
  const body = Object.entries(rows)
    .map(([k, v]) => `  ${k}: ${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(4)) : JSON.stringify(v)}`)
    .join('\n');
  console.log(`${title}\n${body}`);
}
