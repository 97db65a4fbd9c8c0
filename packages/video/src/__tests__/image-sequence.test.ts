import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, InputError, type Video } from '@diffmem/core';
import {
  VideoDamagedError,
  decodeRawFrames,
  decodeVideo,
  listImageSequence,
  readImageSequence,
  readImageSequenceFrames,
  writeImageSequence,
} from '../index.js';
import { DATA_DIR, HAVE_DATA, maxAbsDiff, tempDir, useWasm } from './helpers.js';

function ramp(t: number, h: number, w: number, c: 1 | 3): Video<'display'> {
  const d = new Float32Array(t * h * w * c);
  for (let i = 0; i < d.length; i++) d[i] = ((i * 37) % 256) / 255; // exact 8-bit values
  return tf.tensor4d(d, [t, h, w, c]) as Video<'display'>;
}

describe('image sequences', () => {
  let dir: string;
  beforeAll(async () => {
    await useWasm();
    dir = await tempDir('seq');
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('write PNG frames, read them back exactly (folder, printf pattern, glob)', async () => {
    const clip = ramp(5, 30, 40, 3);
    const before = tf.memory().numTensors;
    const out = path.join(dir, 'rgb');
    const w = await writeImageSequence(clip, out);
    expect(tf.memory().numTensors).toBe(before);
    expect(w.frameCount).toBe(5);
    expect(w.files.map((f) => path.basename(f))).toEqual([0, 1, 2, 3, 4].map((i) => `frame_00000${i}.png`));
    expect((await fsp.readdir(out)).sort()).toEqual(w.files.map((f) => path.basename(f)));
    for (const src of [out, w.pattern, path.join(out, '*.png')]) {
      const r = await readImageSequence(src);
      expect(r.video.shape).toEqual([5, 30, 40, 3]);
      expect(r).toMatchObject({ frameCount: 5, expectedFrames: 5, damaged: false });
      expect(maxAbsDiff(r.video, clip)).toBe(0);
      r.video.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    clip.dispose();
  });

  test('natural order (frame_2 before frame_10), explicit lists keep their order, gray frames', async () => {
    const clip = ramp(12, 8, 8, 1);
    const out = path.join(dir, 'gray');
    await writeImageSequence(clip, out, { digits: 1, prefix: 'f' }); // f0.png … f11.png: lexicographic order would be wrong
    expect(await listImageSequence(out)).toEqual(Array.from({ length: 12 }, (_, i) => path.join(out, `f${i}.png`)));
    const r = await readImageSequence(out, { color: 'gray' });
    expect(maxAbsDiff(r.video, clip)).toBe(0);
    const rev = await readImageSequence([path.join(out, 'f11.png'), path.join(out, 'f0.png')], { color: 'gray' });
    const want = tf.gather(clip, [11, 0]);
    expect(maxAbsDiff(rev.video, want)).toBe(0);
    tf.dispose([clip, r.video, rev.video, want]);
  });

  test('streamed reading, resizing and maxFrames', async () => {
    const clip = ramp(7, 16, 16, 3);
    const out = path.join(dir, 'stream');
    await writeImageSequence(clip, out);
    const counts: number[] = [];
    const s = readImageSequenceFrames(out, { chunkSize: 3, width: 8, height: 4, maxFrames: 5 });
    for await (const c of s) {
      expect(c.frames.shape.slice(1)).toEqual([4, 8, 3]);
      counts.push(c.count);
      c.frames.dispose();
    }
    expect(counts).toEqual([3, 2]);
    expect((await s.summary).expectedFrames).toBe(5);
    clip.dispose();
  });

  test('an unreadable image is reported as damage; strict turns it into VideoDamagedError', async () => {
    const clip = ramp(4, 8, 8, 3);
    const out = path.join(dir, 'broken');
    const w = await writeImageSequence(clip, out);
    await fsp.writeFile(w.files[2] as string, 'not a png at all');
    const r = await readImageSequence(out);
    expect(r.frameCount).toBe(3);
    expect(r).toMatchObject({ expectedFrames: 4, missingFrames: 1, damaged: true });
    expect(r.decodeErrors).toBeGreaterThan(0);
    r.video.dispose();
    await expect(readImageSequence(out, { strict: true })).rejects.toBeInstanceOf(VideoDamagedError);
    clip.dispose();
  });

  test('bad sources and options → typed errors', async () => {
    const empty = path.join(dir, 'empty');
    await fsp.mkdir(empty);
    await expect(readImageSequence(empty)).rejects.toMatchObject({ code: 'IMAGE_SEQUENCE_EMPTY' });
    await expect(readImageSequence(path.join(dir, 'nope', '%04d.png'))).rejects.toBeInstanceOf(InputError);
    await expect(readImageSequence([])).rejects.toMatchObject({ code: 'IMAGE_SEQUENCE_EMPTY' });
    await expect(readImageSequence(empty, { fps: 2 })).rejects.toBeInstanceOf(ConfigError);
    const a = tf.zeros([4, 4, 3]);
    await expect(writeImageSequence(a, path.join(dir, 'w'), { prefix: '../x' })).rejects.toBeInstanceOf(ConfigError);
    const mixed = path.join(dir, 'mixed');
    await writeImageSequence(a, mixed);
    await fsp.writeFile(path.join(mixed, 'zz.jpg'), 'x');
    await expect(readImageSequence(mixed)).rejects.toMatchObject({ code: 'IMAGE_SEQUENCE_MIXED_FORMATS' });
    a.dispose();
  });

  (HAVE_DATA ? test : test.skip)('VSC-style extraction at 1 fps: decodeRawFrames piped into writeImageSequence', async () => {
    const opts = { fps: 1, width: 32, height: 24 };
    const out = path.join(dir, 'vsc');
    const w = await writeImageSequence(decodeRawFrames(path.join(DATA_DIR, 'Megamind.avi'), opts), out, { digits: 7 });
    expect(w.files[0]).toBe(path.join(out, 'frame_0000000.png'));
    const ref = await decodeVideo(path.join(DATA_DIR, 'Megamind.avi'), opts);
    expect(w.frameCount).toBe(ref.frameCount);
    expect(Math.abs(ref.frameCount - 11)).toBeLessThanOrEqual(1); // 11.26 s at 1 fps
    const back = await readImageSequence(out);
    expect(maxAbsDiff(back.video, ref.video)).toBe(0);
    tf.dispose([ref.video, back.video]);
  });

  (HAVE_DATA ? test : test.skip)('real JPEG photos of different sizes, scaled to one size', async () => {
    const files = ['fruits.jpg', 'baboon.jpg', 'butterfly.jpg'].map((f) => path.join(DATA_DIR, f));
    const r = await readImageSequence(files, { width: 64, height: 48 });
    expect(r.video.shape).toEqual([3, 48, 64, 3]);
    expect(r.damaged).toBe(false);
    const means = tf.tidy(() => Array.from(tf.mean(r.video, [1, 2, 3]).dataSync()));
    expect(new Set(means.map((m) => m.toFixed(3))).size).toBe(3); // three different pictures
    r.video.dispose();
  });
});
