import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, DiffmemError } from '@diffmem/core';
import {
  FfmpegNotFoundError,
  clearBinaryCache,
  parseLibavutilVersion,
  resolveBinaries,
  resolveFfmpeg,
  resolveFfprobe,
  supportsFpsMode,
} from '../index.js';
import { tempDir } from './helpers.js';

const notInstalled = (id: string): never => {
  const e = new Error(`Cannot find module '${id}'`) as Error & { code: string };
  e.code = 'MODULE_NOT_FOUND';
  throw e;
};

describe('binary resolution', () => {
  let dir: string;
  let systemFfmpeg: string;
  beforeAll(async () => {
    dir = await tempDir('bin');
    systemFfmpeg = (await resolveFfmpeg({ order: ['path'] })).path;
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
    clearBinaryCache();
  });

  test('default order finds working ffmpeg and ffprobe and reports where and which version', async () => {
    const { ffmpeg, ffprobe } = await resolveBinaries();
    for (const b of [ffmpeg, ffprobe]) {
      expect(path.isAbsolute(b.path)).toBe(true);
      expect(b.version).toMatch(/version/);
      expect(b.libavutil?.[0]).toBeGreaterThanOrEqual(55);
      expect(b.tried[b.tried.length - 1]?.reason).toBe('ok');
    }
    // The order is option → env → static → installer → PATH: whatever won, everything before it is listed.
    const sources = ffmpeg.tried.map((t) => t.source);
    expect(sources.slice(0, 2)).toEqual(['option', 'env']);
  });

  test('results are cached until clearBinaryCache()', async () => {
    const a = resolveFfmpeg();
    expect(resolveFfmpeg()).toBe(a);
    await a;
    clearBinaryCache();
    expect(resolveFfmpeg()).not.toBe(a);
    await resolveFfmpeg();
  });

  test('FFMPEG_PATH pointing at a missing file is a clear error naming it (no silent fallback)', async () => {
    const missing = path.join(dir, 'no-such-ffmpeg');
    const err = await resolveFfmpeg({ env: { ...process.env, FFMPEG_PATH: missing } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FfmpegNotFoundError);
    expect(err).toBeInstanceOf(DiffmemError);
    const e = err as FfmpegNotFoundError;
    expect(e.code).toBe('FFMPEG_NOT_FOUND');
    expect(e.message).toContain('FFMPEG_PATH');
    expect(e.message).toContain(missing);
    expect(e.message).toContain('file does not exist');
    expect(e.tried.map((t) => t.source)).toEqual(['option', 'env']);
  });

  test('the real process.env FFMPEG_PATH is honoured', async () => {
    const saved = process.env['FFMPEG_PATH'];
    try {
      process.env['FFMPEG_PATH'] = path.join(dir, 'missing-too');
      clearBinaryCache();
      await expect(resolveFfmpeg()).rejects.toThrow(/FFMPEG_PATH=.*missing-too/);
      process.env['FFMPEG_PATH'] = systemFfmpeg;
      const got = await resolveFfmpeg();
      expect(got.source).toBe('env');
      expect(got.path).toBe(systemFfmpeg);
    } finally {
      if (saved === undefined) delete process.env['FFMPEG_PATH'];
      else process.env['FFMPEG_PATH'] = saved;
      clearBinaryCache();
    }
  });

  test('explicit option wins over env; ffprobe is then looked for next to it', async () => {
    const env = { ...process.env, FFMPEG_PATH: path.join(dir, 'ignored') };
    const ff = await resolveFfmpeg({ ffmpegPath: systemFfmpeg, env });
    expect(ff.source).toBe('option');
    const probe = await resolveFfprobe({ ffmpegPath: systemFfmpeg, env: { ...process.env, FFPROBE_PATH: '' } });
    if (probe.source === 'sibling') expect(path.dirname(probe.path)).toBe(path.dirname(systemFfmpeg));
    expect(probe.tried.map((t) => t.source)).toContain('sibling');
  });

  test('a file without the exec bit is rejected with a chmod hint', async () => {
    const f = path.join(dir, 'ffmpeg-noexec');
    await fsp.writeFile(f, '#!/bin/sh\nexit 0\n');
    await fsp.chmod(f, 0o644);
    const err = (await resolveFfmpeg({ ffmpegPath: f }).catch((e: unknown) => e)) as FfmpegNotFoundError;
    expect(err).toBeInstanceOf(FfmpegNotFoundError);
    expect(err.message).toMatch(/not executable/);
    expect(err.message).toContain(`chmod +x "${f}"`);
  });

  test('a binary that does not run is rejected by -version verification', async () => {
    const f = path.join(dir, 'ffmpeg-broken');
    await fsp.writeFile(f, '#!/bin/sh\necho broken >&2\nexit 3\n');
    await fsp.chmod(f, 0o755);
    await expect(resolveFfmpeg({ ffmpegPath: f })).rejects.toThrow(/-version failed \(exit 3\)/);
    // verify: false trusts it.
    const ok = await resolveFfmpeg({ ffmpegPath: f, verify: false });
    expect(ok.version).toBe('');
  });

  test('order: ffmpeg-static (missing file) → installer (not installed / no exec bit) → PATH, every step reported', async () => {
    const noexec = path.join(dir, 'installer-ffmpeg');
    await fsp.writeFile(noexec, 'x');
    await fsp.chmod(noexec, 0o644);
    const requireModule = (id: string): unknown => {
      if (id === 'ffmpeg-static') return path.join(dir, 'downloaded-at-install-but-offline'); // string export
      if (id === '@ffmpeg-installer/ffmpeg') return { path: noexec, version: '4.1' };
      return notInstalled(id);
    };
    const got = await resolveFfmpeg({ requireModule, env: { ...process.env, FFMPEG_PATH: undefined } });
    expect(got.source).toBe('path');
    expect(got.tried.map((t) => [t.source, t.reason.split(' ')[0]])).toEqual([
      ['option', 'options.ffmpegPath'],
      ['env', 'FFMPEG_PATH'],
      ['ffmpeg-static', 'file'],
      ['@ffmpeg-installer/ffmpeg', 'exists'],
      ['path', 'ok'],
    ]);
    expect(got.tried[2]?.reason).toBe('file does not exist');
    expect(got.tried[3]?.reason).toMatch(/chmod \+x/);
  });

  test('npm-bundled binary is used before PATH when it is usable', async () => {
    const requireModule = (id: string): unknown =>
      id === '@ffmpeg-installer/ffmpeg' ? { path: systemFfmpeg } : notInstalled(id);
    const got = await resolveFfmpeg({ requireModule, env: { PATH: '' } });
    expect(got.source).toBe('@ffmpeg-installer/ffmpeg');
    expect(got.tried.find((t) => t.source === 'ffmpeg-static')?.reason).toBe('package not installed');
  });

  test('nothing anywhere → FfmpegNotFoundError listing every place and how to install offline', async () => {
    const err = (await resolveFfprobe({ requireModule: notInstalled, env: { PATH: dir } }).catch((e: unknown) => e)) as FfmpegNotFoundError;
    expect(err).toBeInstanceOf(FfmpegNotFoundError);
    expect(err.code).toBe('FFPROBE_NOT_FOUND');
    expect(err.tried.map((t) => t.source)).toEqual(['option', 'env', 'ffprobe-static', '@ffprobe-installer/ffprobe', 'path']);
    expect(err.message).toMatch(/apt-get install ffmpeg/);
    expect(err.message).toMatch(/no ffprobe on PATH \(1 directories searched\)/);
  });

  test('unknown source in order → ConfigError', async () => {
    await expect(resolveFfmpeg({ order: ['path', 'brew' as never] })).rejects.toBeInstanceOf(ConfigError);
  });

  test('libavutil parsing decides -fps_mode vs -vsync', () => {
    expect(parseLibavutilVersion('libavutil      57. 28.100 / 57. 28.100')).toEqual([57, 28]);
    expect(parseLibavutilVersion('libavutil      56. 24.101 / 56. 24.101')).toEqual([56, 24]);
    const base = { name: 'ffmpeg', path: '/x', source: 'path', version: '', tried: [] } as const;
    expect(supportsFpsMode({ ...base, libavutil: [57, 28] })).toBe(true);
    expect(supportsFpsMode({ ...base, libavutil: [56, 24] })).toBe(false);
    expect(supportsFpsMode({ ...base, libavutil: [58, 2] })).toBe(true);
  });
});
