import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { VideoDamagedError, decodeFrames, decodeVideo, probeVideo } from '../index.js';
import { MEGAMIND, MEGAMIND_BUGY, describeWithData, isAlive, meanAbsDiff, seededBytes, tempDir, useWasm } from './helpers.js';

describeWithData('damaged input', () => {
  let dir: string;
  let corrupt: string; // Megamind.avi with 7 runs of 2000 garbage bytes inside the movie data
  let truncated: string; // the first 500 000 bytes of Megamind.avi (index and 60% of frames gone)
  beforeAll(async () => {
    await useWasm();
    dir = await tempDir('damaged');
    const orig = await fsp.readFile(MEGAMIND);
    const bad = Buffer.from(orig);
    const junk = seededBytes(1234, 7 * 2000);
    for (let k = 0; k < 7; k++) bad.set(junk.subarray(k * 2000, (k + 1) * 2000), 200_000 + k * 100_000);
    corrupt = path.join(dir, 'corrupt.avi');
    truncated = path.join(dir, 'truncated.avi');
    await fsp.writeFile(corrupt, bad);
    await fsp.writeFile(truncated, orig.subarray(0, 500_000));
  });
  afterAll(() => fsp.rm(dir, { recursive: true, force: true }));

  test('Megamind_bugy.avi decodes completely: its damage is in the pictures, not the bitstream', async () => {
    const bugy = await decodeVideo(MEGAMIND_BUGY, { width: 64, height: 64, strict: true });
    expect(bugy).toMatchObject({ frameCount: 270, expectedFrames: 270, damaged: false, decodeErrors: 0, corruptFrames: 0 });
    const ref = await decodeVideo(MEGAMIND, { width: 64, height: 64 });
    // Same 270 frames re-encoded at 30 fps; frame 2 matches the original, frame 100 carries drawn-in damage.
    const frame = (v: tf.Tensor4D, i: number): tf.Tensor => tf.slice(v, [i, 0, 0, 0], [1, 64, 64, 3]);
    const [a2, b2, a100, b100] = [frame(ref.video, 2), frame(bugy.video, 2), frame(ref.video, 100), frame(bugy.video, 100)];
    expect(meanAbsDiff(a2, b2)).toBeLessThan(0.01);
    expect(meanAbsDiff(a100, b100)).toBeGreaterThan(0.05);
    tf.dispose([bugy.video, ref.video, a2, b2, a100, b100]);
  });

  test('corrupted bytes: frames still come out, damage is reported, no hang', async () => {
    const before = tf.memory().numTensors;
    const t0 = Date.now();
    const d = await decodeVideo(corrupt, { width: 64, height: 64, timeoutMs: 30_000 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(d.damaged).toBe(true);
    expect(d.frameCount).toBeGreaterThan(200);
    expect(d.frameCount).toBeLessThanOrEqual(270);
    expect(d.decodeErrors).toBeGreaterThan(0);
    expect(d.errorMessages.some((m) => /damaged|Error at MB|corrupt|marker/i.test(m))).toBe(true);
    expect(d.video.shape).toEqual([d.frameCount, 64, 64, 3]);
    d.video.dispose();
  });

  test('strict: the first damage kills ffmpeg and throws VideoDamagedError with the report', async () => {
    const err = (await decodeVideo(corrupt, { width: 64, height: 64, strict: true }).catch((e: unknown) => e)) as VideoDamagedError;
    expect(err).toBeInstanceOf(VideoDamagedError);
    expect(err.code).toBe('VIDEO_DAMAGED');
    const damage = err.details?.['damage'] as { decodeErrors: number; frameCount: number };
    expect(damage.decodeErrors + (damage as unknown as { corruptFrames: number }).corruptFrames).toBeGreaterThan(0);
    expect(damage.frameCount).toBeLessThan(270);
  });

  test('truncated file: the header still says 270 frames; the shortfall is reported as missing frames', async () => {
    const p = await probeVideo(truncated);
    expect(p.frameCount).toBe(270);
    const d = await decodeVideo(truncated, { width: 32, height: 32 });
    expect(d.frameCount).toBeGreaterThan(50);
    expect(d.frameCount).toBeLessThan(150);
    expect(d.missingFrames).toBe(270 - d.frameCount);
    expect(d.damaged).toBe(true);
    d.video.dispose();
    await expect(decodeVideo(truncated, { width: 32, height: 32, strict: true })).rejects.toBeInstanceOf(VideoDamagedError);
  });

  test('streaming a damaged file: chunks flow, the summary carries the damage', async () => {
    const s = decodeFrames(corrupt, { width: 32, height: 32, chunkSize: 50 });
    let n = 0;
    for await (const c of s) {
      n += c.count;
      c.frames.dispose();
    }
    const r = await s.summary;
    expect(r.frameCount).toBe(n);
    expect(r.damaged).toBe(true);
    expect(isAlive(s.pid)).toBe(false);
  });
});
