import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, InputError, NonFiniteError, ShapeError, type Image, type Video } from '@diffmem/core';
import {
  FfmpegProcessError,
  decodeFrames,
  decodeRawFrames,
  decodeVideo,
  encodeVideo,
  probeVideo,
  uint8ToUnitFloat,
  unitFloatToUint8,
} from '../index.js';
import { MEGAMIND, describeWithData, isAlive, maxAbsDiff, meanAbsDiff, tempDir, useWasm } from './helpers.js';

/** A deterministic synthetic clip with sharp edges and gradients (worst case for lossy codecs). */
function syntheticClip(t: number, h: number, w: number, c: 1 | 3): Video<'display'> {
  const data = new Float32Array(t * h * w * c);
  let i = 0;
  for (let f = 0; f < t; f++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) data[i++] = (((x * 7 + y * 3 + f * 11 + k * 50) % 256) / 255) * ((x + y) % 5 === 0 ? 0.5 : 1);
  return tf.tensor4d(data, [t, h, w, c]) as Video<'display'>;
}

describe('encodeVideo (synthetic frames)', () => {
  let dir: string;
  beforeAll(async () => {
    await useWasm();
    dir = await tempDir('enc');
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('quantisation is round(255·x) clipped, half up (as core toUint8); non-finite values throw', () => {
    const q = unitFloatToUint8(new Float32Array([0, 1, 0.5, 127.5 / 255, -0.2, 1.7, 1 / 510, 254.49 / 255]));
    expect(Array.from(q)).toEqual([0, 255, 128, 128, 0, 255, 1, 254]);
    expect(() => unitFloatToUint8(new Float32Array([0, Number.NaN]))).toThrow(NonFiniteError);
    expect(() => unitFloatToUint8(new Float32Array([Number.POSITIVE_INFINITY]))).toThrow(NonFiniteError);
    const u = new Uint8Array(256).map((_, i) => i);
    expect(Array.from(unitFloatToUint8(uint8ToUnitFloat(u)))).toEqual(Array.from(u)); // 8-bit → float → 8-bit is exact
  });

  test('lossless: exact round trip for RGB, gray and odd sizes', async () => {
    for (const [h, w, c] of [
      [24, 32, 3],
      [21, 33, 1],
      [17, 9, 3],
    ] as const) {
      const clip = syntheticClip(6, h, w, c);
      // Quantise the reference the way the encoder does (8-bit, round half up), then compare exactly.
      const ref = tf.tensor4d(uint8ToUnitFloat(unitFloatToUint8(clip.dataSync())), clip.shape);
      const before = tf.memory().numTensors;
      const out = path.join(dir, `ll-${w}x${h}x${c}.mkv`);
      const r = await encodeVideo(clip, out, { fps: 12 });
      expect(tf.memory().numTensors).toBe(before);
      expect(r).toMatchObject({ preset: 'lossless', frameCount: 6, width: w, height: h, channels: c, outputWidth: w, outputHeight: h });
      expect(r.bytes).toBeGreaterThan(0);
      const back = await decodeVideo(out, { color: c === 1 ? 'gray' : 'rgb' });
      expect(back.video.shape).toEqual([6, h, w, c]);
      expect(back.damaged).toBe(false);
      expect(maxAbsDiff(back.video, ref)).toBe(0);
      tf.dispose([clip, ref, back.video]);
    }
  });

  test('h264: even sizes padded (default), cropped, or refused; faststart mp4', async () => {
    const clip = syntheticClip(8, 21, 33, 3);
    const padded = await encodeVideo(clip, path.join(dir, 'pad.mp4'), { preset: 'h264', fps: 8 });
    expect([padded.outputWidth, padded.outputHeight]).toEqual([34, 22]);
    const p = await probeVideo(padded.path);
    expect(p).toMatchObject({ codec: 'h264', pixelFormat: 'yuv420p', width: 34, height: 22, frameCount: 8, fps: 8 });
    const bytes = await fsp.readFile(padded.path);
    expect(bytes.indexOf('moov')).toBeLessThan(bytes.indexOf('mdat')); // +faststart
    const cropped = await encodeVideo(clip, path.join(dir, 'crop.mp4'), { preset: 'h264', evenSize: 'crop' });
    expect([cropped.outputWidth, cropped.outputHeight]).toEqual([32, 20]);
    await expect(encodeVideo(clip, path.join(dir, 'odd.mp4'), { preset: 'h264', evenSize: 'error' })).rejects.toBeInstanceOf(ShapeError);
    await expect(fsp.stat(path.join(dir, 'odd.mp4'))).rejects.toThrow(); // nothing left behind
    clip.dispose();
  });

  test('streams an async iterable of images and raw 8-bit frames', async () => {
    const frames = [0, 1, 2, 3].map((f) => tf.fill([16, 16, 3], f / 3) as Image<'display'>);
    async function* gen(): AsyncGenerator<Image<'display'> | { data: Uint8Array; width: number; height: number; channels: 3 }> {
      for (const f of frames) yield f;
      yield { data: new Uint8Array(2 * 16 * 16 * 3).fill(128), width: 16, height: 16, channels: 3 };
    }
    const out = path.join(dir, 'iter.mkv');
    const r = await encodeVideo(gen(), out);
    expect(r.frameCount).toBe(6);
    const back = await decodeVideo(out);
    const means = tf.tidy(() => Array.from(tf.mean(back.video, [1, 2, 3]).dataSync()));
    expect(means.map((m) => Math.round(m * 255))).toEqual([0, 85, 170, 255, 128, 128]);
    tf.dispose([...frames, back.video]);
  });

  test('bad input → typed errors, partial output removed, ffmpeg killed', async () => {
    const a = tf.zeros([8, 8, 3]) as Image<'display'>;
    const b = tf.zeros([10, 8, 3]) as Image<'display'>;
    const out = path.join(dir, 'mismatch.mkv');
    await expect(encodeVideo([a, a, b], out)).rejects.toBeInstanceOf(ShapeError);
    await expect(fsp.stat(out)).rejects.toThrow();
    const nan = tf.fill([2, 4, 4, 3], Number.NaN);
    await expect(encodeVideo(nan, path.join(dir, 'nan.mkv'))).rejects.toBeInstanceOf(NonFiniteError);
    await expect(encodeVideo([], path.join(dir, 'empty.mkv'))).rejects.toMatchObject({ code: 'VIDEO_NO_FRAMES' });
    await expect(encodeVideo(a, path.join(dir, 'x.mp4'))).rejects.toBeInstanceOf(ConfigError); // lossless needs .mkv
    await expect(encodeVideo(a, path.join(dir, 'no', 'such', 'dir.mkv'))).rejects.toMatchObject({ code: 'OUTPUT_DIR_NOT_FOUND' });
    await expect(encodeVideo(tf.zeros([4, 4, 2]), path.join(dir, 'c2.mkv'))).rejects.toBeInstanceOf(ShapeError);
    await expect(encodeVideo(a, path.join(dir, 'crf.mp4'), { preset: 'h264', crf: 70 })).rejects.toBeInstanceOf(ConfigError);
    const exists = path.join(dir, 'exists.mkv');
    await encodeVideo(a, exists);
    const err = (await encodeVideo(a, exists, { overwrite: false }).catch((e: unknown) => e)) as InputError;
    expect(err.code).toBe('OUTPUT_EXISTS');
    tf.dispose([a, b, nan]);
  });

  test('ffmpeg dying mid-write (EPIPE) → FfmpegProcessError with its stderr, no hang', async () => {
    const fake = path.join(dir, 'dying-ffmpeg');
    await fsp.writeFile(fake, '#!/bin/sh\necho "fake encoder: giving up" >&2\nexit 3\n');
    await fsp.chmod(fake, 0o755);
    const clip = syntheticClip(40, 120, 160, 3); // 2.3 MB: far more than a pipe buffer
    const err = (await encodeVideo(clip, path.join(dir, 'dying.mkv'), {
      binaries: { ffmpegPath: fake, verify: false },
    }).catch((e: unknown) => e)) as FfmpegProcessError;
    expect(err).toBeInstanceOf(FfmpegProcessError);
    expect(err.exitCode).toBe(3);
    expect(err.stderrTail).toContain('fake encoder: giving up');
    expect(isAlive(err.pid)).toBe(false);
    clip.dispose();
  });

  test('abort during encoding kills ffmpeg and removes the partial file', async () => {
    const ac = new AbortController();
    const out = path.join(dir, 'aborted.mkv');
    async function* slow(): AsyncGenerator<tf.Tensor> {
      for (let i = 0; i < 100; i++) {
        if (i === 3) ac.abort();
        yield tf.zeros([16, 16, 3]);
      }
    }
    await expect(encodeVideo(slow(), out, { signal: ac.signal, disposeInputs: true })).rejects.toMatchObject({ code: 'FFMPEG_ABORTED' });
    await expect(fsp.stat(out)).rejects.toThrow();
  });
});

describeWithData('encodeVideo (real clip)', () => {
  let dir: string;
  beforeAll(async () => {
    await useWasm();
    dir = await tempDir('enc-real');
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('decode → lossless encode → decode is exact; h264 plays back with a small error', async () => {
    const src = await decodeVideo(MEGAMIND, { width: 64, height: 64, maxFrames: 24 });
    const before = tf.memory().numTensors;
    const ll = await encodeVideo(src.video, path.join(dir, 'megamind64.mkv'), { fps: src.probe.frameRate });
    expect(tf.memory().numTensors).toBe(before);
    const back = await decodeVideo(ll.path);
    expect(back.frameCount).toBe(24);
    expect(maxAbsDiff(back.video, src.video)).toBe(0);
    expect(back.probe.frameRate).toEqual({ num: 2997, den: 125 });

    const hv = await encodeVideo(src.video, path.join(dir, 'megamind64.mp4'), { preset: 'h264', fps: src.probe.frameRate });
    const view = await decodeVideo(hv.path);
    expect(view.frameCount).toBe(24);
    expect(view.damaged).toBe(false);
    const mae = meanAbsDiff(view.video, src.video);
    expect(mae).toBeGreaterThan(0); // lossy…
    expect(mae).toBeLessThan(4 / 255); // …but close (crf 18)
    tf.dispose([src.video, back.video, view.video]);
  });

  test('decoders pipe straight into writers: raw chunks, tensor chunks (disposed on request)', async () => {
    const src = await decodeVideo(MEGAMIND, { width: 48, height: 32, maxFrames: 20 });
    const opts = { width: 48, height: 32, maxFrames: 20, chunkSize: 6 };
    const a = await encodeVideo(decodeRawFrames(MEGAMIND, opts), path.join(dir, 'raw-pipe.mkv'), { fps: src.probe.frameRate });
    const before = tf.memory().numTensors;
    const b = await encodeVideo(decodeFrames(MEGAMIND, opts), path.join(dir, 'tensor-pipe.mkv'), { disposeInputs: true });
    expect(tf.memory().numTensors).toBe(before);
    expect([a.frameCount, b.frameCount]).toEqual([20, 20]);
    for (const r of [a, b]) {
      const back = await decodeVideo(r.path);
      expect(maxAbsDiff(back.video, src.video)).toBe(0);
      back.video.dispose();
    }
    src.video.dispose();
  });
});
