import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { InputError } from '@diffmem/core';
import { clearBinaryCache, decodeVideo, parseRational, probeVideo, resolveFfmpeg, runFfmpeg } from '../index.js';
import { MEGAMIND, MEGAMIND_BUGY, describeWithData, tempDir, useWasm } from './helpers.js';

describe('probeVideo: synthetic files and bad input', () => {
  let dir: string;
  let ffmpeg: string;
  beforeAll(async () => {
    await useWasm();
    dir = await tempDir('probe');
    ffmpeg = (await resolveFfmpeg()).path;
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
    clearBinaryCache();
  });

  const make = (name: string, args: string[]): Promise<string> => {
    const out = path.join(dir, name);
    return runFfmpeg(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y', ...args, out]).then(() => out);
  };

  test('parseRational', () => {
    expect(parseRational('2997/125')).toEqual({ num: 2997, den: 125 });
    expect(parseRational('25')).toEqual({ num: 25, den: 1 });
    expect(parseRational('0/0')).toBeUndefined();
    expect(parseRational('N/A')).toBeUndefined();
  });

  test('Matroska has no stored frame count: counted by decoding and flagged', async () => {
    const mkv = await make('c.mkv', ['-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=8', '-frames:v', '13', '-c:v', 'libx264rgb', '-qp', '0']);
    const p = await probeVideo(mkv);
    expect(p).toMatchObject({ width: 32, height: 24, frameRate: { num: 8, den: 1 }, fps: 8, codec: 'h264', hasAudio: false });
    expect(p.frameCount).toBe(13);
    expect(p.frameCountSource).toBe('counted');
    const est = await probeVideo(mkv, { countFrames: 'never' });
    expect(est.frameCountSource).toBe('estimated');
    expect(Math.abs(est.frameCount - 13)).toBeLessThanOrEqual(1);
  });

  test('display rotation swaps width/height, and decoded frames come out upright', async () => {
    const plain = await make('plain.mp4', ['-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=8', '-frames:v', '4', '-c:v', 'libx264', '-pix_fmt', 'yuv420p']);
    const rot = await make('rot.mp4', ['-i', plain, '-c', 'copy', '-metadata:s:v:0', 'rotate=90']);
    const p = await probeVideo(rot);
    expect(Math.abs(p.rotation)).toBe(90);
    expect([p.storedWidth, p.storedHeight]).toEqual([64, 48]);
    expect([p.width, p.height]).toEqual([48, 64]);
    const d = await decodeVideo(rot);
    expect(d.video.shape).toEqual([4, 64, 48, 3]);
    d.video.dispose();
  });

  test('missing, directory, empty, text-renamed-.mp4 and audio-only files → typed InputErrors', async () => {
    const code = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'resolved',
        (e: unknown) => (e instanceof InputError ? e.code : `other: ${String(e)}`),
      );
    const empty = path.join(dir, 'empty.mp4');
    await fsp.writeFile(empty, '');
    const text = path.join(dir, 'notes.mp4');
    await fsp.writeFile(text, 'this is a text file, not a video\n'.repeat(20));
    const wav = await make('tone.wav', ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=0.2']);
    expect(await code(probeVideo(path.join(dir, 'nope.mp4')))).toBe('VIDEO_NOT_FOUND');
    expect(await code(probeVideo(dir))).toBe('VIDEO_NOT_A_FILE');
    expect(await code(probeVideo(empty))).toBe('VIDEO_EMPTY_FILE');
    expect(await code(probeVideo(text))).toBe('VIDEO_UNREADABLE');
    expect(await code(probeVideo(wav))).toBe('VIDEO_NO_VIDEO_STREAM');
    // The same errors come out of the decoders.
    expect(await code(decodeVideo(text))).toBe('VIDEO_UNREADABLE');
    expect(await code(decodeVideo(empty))).toBe('VIDEO_EMPTY_FILE');
    const err = (await probeVideo(text).catch((e: unknown) => e)) as InputError;
    expect(err.message).toContain(text);
    expect(err.message).toMatch(/Invalid data|moov atom/);
  });
});

describeWithData('probeVideo: real clips', () => {
  test('Megamind.avi: 720x528 XviD, 2997/125 fps, 270 frames, AC3 audio', async () => {
    const p = await probeVideo(MEGAMIND);
    expect(p).toMatchObject({
      width: 720,
      height: 528,
      frameRate: { num: 2997, den: 125 },
      frameCount: 270,
      frameCountSource: 'nb_frames',
      codec: 'mpeg4',
      pixelFormat: 'yuv420p',
      hasAudio: true,
      rotation: 0,
      formatName: 'avi',
    });
    expect(p.fps).toBeCloseTo(23.976, 3);
    expect(p.duration).toBeCloseTo(11.2613, 3);
  });

  test('Megamind_bugy.avi: same 270 frames at 30 fps, no audio; counting agrees with the header', async () => {
    const p = await probeVideo(MEGAMIND_BUGY, { countFrames: 'always' });
    expect(p).toMatchObject({ width: 720, height: 528, fps: 30, frameCount: 270, frameCountSource: 'counted', hasAudio: false });
    expect(p.duration).toBeCloseTo(9, 3);
  });
});
