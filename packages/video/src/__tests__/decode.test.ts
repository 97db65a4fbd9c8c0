import * as tf from '@tensorflow/tfjs-core';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, InputError } from '@diffmem/core';
import {
  FfmpegAbortError,
  FfmpegTimeoutError,
  decodeFrames,
  decodeRawFrames,
  decodeVideo,
  probeVideo,
  type VideoProbe,
} from '../index.js';
import { MEGAMIND, describeWithData, isAlive, maxAbsDiff, sleep, tempDir, useWasm } from './helpers.js';

describeWithData('decoding the real clip (Megamind.avi)', () => {
  let probe: VideoProbe;
  let all64: tf.Tensor4D; // every frame at 64x64, reference for the other tests
  beforeAll(async () => {
    await useWasm();
    probe = await probeVideo(MEGAMIND);
    const d = await decodeVideo(MEGAMIND, { width: 64, height: 64, probe });
    all64 = d.video;
  });
  afterAll(() => all64.dispose());

  test('whole clip: 270 frames, undamaged, values in [0,1]', () => {
    expect(all64.shape).toEqual([270, 64, 64, 3]);
    const [lo, hi] = tf.tidy(() => [tf.min(all64).dataSync()[0], tf.max(all64).dataSync()[0]]);
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    expect(hi).toBeGreaterThan(0.5);
  });

  test('resize to 64x64 with a frame cap; report says what was decoded; one tensor returned', async () => {
    const before = tf.memory().numTensors;
    const d = await decodeVideo(MEGAMIND, { width: 64, height: 64, maxFrames: 10 });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(d.video.shape).toEqual([10, 64, 64, 3]);
    expect(d.video.dtype).toBe('float32');
    expect(d).toMatchObject({ frameCount: 10, expectedFrames: 10, missingFrames: 0, damaged: false, width: 64, height: 64, channels: 3 });
    expect(d.decodeErrors).toBe(0);
    expect(d.fps).toBeCloseTo(23.976, 3);
    // Same frames as the uncapped decode.
    const head = tf.slice(all64, [0, 0, 0, 0], [10, 64, 64, 3]);
    expect(maxAbsDiff(head, d.video)).toBe(0);
    head.dispose();
    d.video.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('width only keeps the aspect ratio; gray gives one luma channel', async () => {
    const d = await decodeVideo(MEGAMIND, { width: 90, maxFrames: 3, color: 'gray', probe });
    expect(d.video.shape).toEqual([3, 66, 90, 1]); // 528·90/720 = 66
    const rgb = await decodeVideo(MEGAMIND, { width: 90, maxFrames: 3, probe });
    // ffmpeg's gray is BT.601 luma: close to 0.299R + 0.587G + 0.114B of the RGB decode.
    const luma = tf.tidy(() => tf.sum(tf.mul(rgb.video, tf.tensor1d([0.299, 0.587, 0.114])), 3, true));
    expect(tf.tidy(() => tf.mean(tf.abs(tf.sub(luma, d.video))).dataSync()[0] as number)).toBeLessThan(0.02);
    tf.dispose([d.video, rgb.video, luma]);
  });

  test('fps resampling: 23.976 → 8 fps over 2 s gives 16 frames, each a source frame', async () => {
    const d = await decodeVideo(MEGAMIND, { width: 64, height: 64, fps: 8, duration: 2, probe });
    expect(d.frameCount).toBe(16);
    expect(d.fps).toBe(8);
    expect(d.expectedFrames).toBeUndefined();
    // Output tick k (t = k/8 s) is the source frame nearest in time.
    for (const k of [0, 5, 15]) {
      const src = Math.round((k / 8) * probe.fps);
      const a = tf.slice(d.video, [k, 0, 0, 0], [1, 64, 64, 3]);
      const b = tf.slice(all64, [src, 0, 0, 0], [1, 64, 64, 3]);
      const diffs = [-1, 0, 1].map((o) => {
        const c = tf.slice(all64, [Math.max(0, src + o), 0, 0, 0], [1, 64, 64, 3]);
        const v = maxAbsDiff(a, c);
        c.dispose();
        return v;
      });
      expect(Math.min(...diffs)).toBe(0);
      tf.dispose([a, b]);
    }
    d.video.dispose();
    // Whole clip at 10 fps: duration × fps frames (±1 for the end).
    const w = await decodeVideo(MEGAMIND, { width: 32, height: 32, fps: { num: 10, den: 1 }, probe });
    expect(Math.abs(w.frameCount - Math.round((probe.duration ?? 0) * 10))).toBeLessThanOrEqual(1);
    w.video.dispose();
  });

  test('time range is frame-accurate: start 5 s, 1 s long = the 24 source frames from the one on screen at 5 s', async () => {
    const d = await decodeVideo(MEGAMIND, { width: 64, height: 64, start: 5, duration: 1, probe });
    expect(d.frameCount).toBe(24);
    // Frame 119 is displayed during [4.963 s, 5.005 s) (ffmpeg 4.1 and 5.1 agree on this AVI).
    const first = Math.floor(5 * probe.fps);
    const ref = tf.slice(all64, [first, 0, 0, 0], [24, 64, 64, 3]);
    expect(maxAbsDiff(ref, d.video)).toBe(0);
    tf.dispose([ref, d.video]);
  });

  test('streaming: chunk sizes, start indices, same pixels as decodeVideo, no leaked tensors', async () => {
    const before = tf.memory().numTensors;
    const stream = decodeFrames(MEGAMIND, { width: 64, height: 64, maxFrames: 30, chunkSize: 7, probe });
    const counts: number[] = [];
    const starts: number[] = [];
    for await (const c of stream) {
      counts.push(c.count);
      starts.push(c.start);
      expect(c.frames.shape).toEqual([c.count, 64, 64, 3]);
      const ref = tf.slice(all64, [c.start, 0, 0, 0], [c.count, 64, 64, 3]);
      expect(maxAbsDiff(ref, c.frames)).toBe(0);
      tf.dispose([ref, c.frames]);
    }
    expect(counts).toEqual([7, 7, 7, 7, 2]);
    expect(starts).toEqual([0, 7, 14, 21, 28]);
    const report = await stream.summary;
    expect(report).toMatchObject({ frameCount: 30, cancelled: false, damaged: false });
    expect(tf.memory().numTensors).toBe(before);
    expect(isAlive(stream.pid)).toBe(false);
  });

  test('streaming memory stays bounded: a slow consumer stalls ffmpeg (backpressure)', async () => {
    // Full-size frames: 720·528·3 B = 1.14 MB each, 308 MB for the clip. Without backpressure ffmpeg
    // decodes all of it in well under a second and Node would buffer it.
    const stream = decodeRawFrames(MEGAMIND, { chunkSize: 2, probe });
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let n = 0;
    for await (const c of stream) {
      expect(c.data.length).toBe(2 * 720 * 528 * 3);
      if (n === 0) await sleep(500); // let ffmpeg race ahead if it could
      await sleep(5);
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
      if (++n === 15) break;
    }
    expect(peak).toBeLessThan(48 * 2 ** 20);
    const report = await stream.summary;
    expect(report.cancelled).toBe(true);
    expect(report.frameCount).toBe(28);
    expect(isAlive(stream.pid)).toBe(false); // breaking out killed (and reaped) ffmpeg
  });

  test('return() before the first chunk settles the summary and spawns nothing', async () => {
    const s = decodeFrames(MEGAMIND, { probe });
    await s.return?.();
    await expect(s.summary).rejects.toMatchObject({ code: 'DECODE_CANCELLED' });
    expect(s.pid).toBeUndefined();
  });

  test('abort mid-stream kills ffmpeg and rejects with FfmpegAbortError', async () => {
    const ac = new AbortController();
    const stream = decodeRawFrames(MEGAMIND, { chunkSize: 1, signal: ac.signal, probe });
    let n = 0;
    const err = await (async () => {
      for await (const _ of stream) {
        if (++n === 2) ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FfmpegAbortError);
    expect(n).toBeLessThan(10);
    expect(isAlive(stream.pid)).toBe(false);
    await expect(stream.summary).rejects.toBeInstanceOf(FfmpegAbortError);
    // Already aborted: rejected before anything is spawned.
    await expect(decodeVideo(MEGAMIND, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(FfmpegAbortError);
  });

  test('1 ms timeout kills ffmpeg and rejects with FfmpegTimeoutError; no zombie; no tensor', async () => {
    const before = tf.memory().numTensors;
    const err = (await decodeVideo(MEGAMIND, { timeoutMs: 1, probe }).catch((e: unknown) => e)) as FfmpegTimeoutError;
    expect(err).toBeInstanceOf(FfmpegTimeoutError);
    expect(err.code).toBe('FFMPEG_TIMEOUT');
    expect(err.pid).toBeGreaterThan(0);
    expect(isAlive(err.pid)).toBe(false);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('start past the end → VIDEO_NO_FRAMES; bad options → ConfigError before spawning', async () => {
    const err = (await decodeVideo(MEGAMIND, { start: 100, width: 32, probe }).catch((e: unknown) => e)) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('VIDEO_NO_FRAMES');
    expect(() => decodeFrames(MEGAMIND, { width: 0 })).toThrow(ConfigError);
    expect(() => decodeFrames(MEGAMIND, { fps: -2 })).toThrow(ConfigError);
    expect(() => decodeFrames(MEGAMIND, { chunkSize: 1.5 })).toThrow(ConfigError);
    expect(() => decodeFrames(MEGAMIND, { color: 'cmyk' as never })).toThrow(ConfigError);
    expect(() => decodeFrames(MEGAMIND, { start: -1 })).toThrow(ConfigError);
    await expect(decodeVideo(MEGAMIND, { scaleFlags: 'best' as never })).rejects.toBeInstanceOf(ConfigError);
  });

  test('an ffmpeg without the decoder ffprobe reported → VIDEO_UNSUPPORTED_CODEC', async () => {
    const dir = await tempDir('nodecoder');
    const fake = path.join(dir, 'ffmpeg-lite');
    await fsp.writeFile(fake, '#!/bin/sh\necho "[error] Decoder (codec mpeg4) not found for input stream #0:0" >&2\nexit 1\n');
    await fsp.chmod(fake, 0o755);
    const err = (await decodeVideo(MEGAMIND, { probe, binaries: { ffmpegPath: fake, verify: false } }).catch(
      (e: unknown) => e,
    )) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('VIDEO_UNSUPPORTED_CODEC');
    expect(err.message).toContain('mpeg4');
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('maxBytes refuses a clip that would not fit, before decoding', async () => {
    const t0 = Date.now();
    await expect(decodeVideo(MEGAMIND, { maxBytes: 50 * 2 ** 20, probe })).rejects.toThrow(/maxBytes/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
