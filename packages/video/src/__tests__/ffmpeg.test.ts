import { ConfigError } from '@diffmem/core';
import {
  FfmpegAbortError,
  FfmpegProcessError,
  FfmpegTimeoutError,
  StdinClosedError,
  resolveFfmpeg,
  runFfmpeg,
  startFfmpeg,
} from '../index.js';
import { isAlive, sleep } from './helpers.js';

const posix = process.platform !== 'win32';
const itPosix = posix ? test : test.skip;

describe('ffmpeg spawn wrapper', () => {
  let ffmpeg: string;
  beforeAll(async () => {
    ffmpeg = (await resolveFfmpeg()).path;
  });

  test('runFfmpeg collects raw frames from stdout', async () => {
    const out = await runFfmpeg(ffmpeg, [
      '-hide_banner', '-nostdin', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=10',
      '-frames:v', '3', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
    ]);
    expect(out.stdout.length).toBe(3 * 32 * 24 * 3);
  });

  test('non-zero exit → FfmpegProcessError with the stderr tail', async () => {
    const err = (await runFfmpeg(ffmpeg, ['-hide_banner', '-nostdin', '-i', '/no/such/input.mp4', '-f', 'null', '-']).catch(
      (e: unknown) => e,
    )) as FfmpegProcessError;
    expect(err).toBeInstanceOf(FfmpegProcessError);
    expect(err.code).toBe('FFMPEG_EXIT');
    expect(err.exitCode).not.toBe(0);
    expect(err.stderrTail).toMatch(/No such file or directory/);
    expect(err.message).toMatch(/No such file or directory/);
    expect(isAlive(err.pid)).toBe(false);
  });

  test('a binary that cannot be started → FFMPEG_SPAWN', async () => {
    const err = (await runFfmpeg('/no/such/ffmpeg', ['-version']).catch((e: unknown) => e)) as FfmpegProcessError;
    expect(err).toBeInstanceOf(FfmpegProcessError);
    expect(err.code).toBe('FFMPEG_SPAWN');
  });

  test('timeout kills a never-ending ffmpeg, rejects typed, and leaves no process behind', async () => {
    const t0 = Date.now();
    const err = (await runFfmpeg(
      ffmpeg,
      ['-hide_banner', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=25', '-f', 'null', '-'],
      { timeoutMs: 300 },
    ).catch((e: unknown) => e)) as FfmpegTimeoutError;
    expect(err).toBeInstanceOf(FfmpegTimeoutError);
    expect(err.code).toBe('FFMPEG_TIMEOUT');
    expect(err.kind).toBe('total');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err.pid).toBeGreaterThan(0);
    expect(isAlive(err.pid)).toBe(false);
  });

  test('AbortSignal kills the process; an already-aborted signal never spawns', async () => {
    const ac = new AbortController();
    const proc = startFfmpeg(ffmpeg, ['-hide_banner', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc', '-f', 'null', '-'], {
      signal: ac.signal,
      stdout: false,
    });
    await sleep(100);
    expect(isAlive(proc.pid)).toBe(true);
    ac.abort(new Error('user pressed stop'));
    const err = (await proc.exited.catch((e: unknown) => e)) as FfmpegAbortError;
    expect(err).toBeInstanceOf(FfmpegAbortError);
    expect(err.code).toBe('FFMPEG_ABORTED');
    expect((err.reason as Error).message).toBe('user pressed stop');
    expect(isAlive(proc.pid)).toBe(false);

    const pre = startFfmpeg(ffmpeg, ['-version'], { signal: AbortSignal.abort() });
    expect(pre.pid).toBeUndefined();
    await expect(pre.exited).rejects.toBeInstanceOf(FfmpegAbortError);
  });

  itPosix('SIGKILL follows SIGTERM after the grace period for a process that ignores SIGTERM', async () => {
    const proc = startFfmpeg('/bin/sh', ['-c', 'trap "" TERM; exec sleep 30'], { timeoutMs: 100, killGraceMs: 200 });
    const err = (await proc.exited.catch((e: unknown) => e)) as FfmpegTimeoutError;
    expect(err).toBeInstanceOf(FfmpegTimeoutError);
    expect(err.details?.['signal']).toBe('SIGKILL');
    expect(isAlive(proc.pid)).toBe(false);
  });

  itPosix('idle timeout fires when nothing is produced', async () => {
    const proc = startFfmpeg('/bin/sh', ['-c', 'exec sleep 30'], { idleTimeoutMs: 150 });
    const err = (await proc.exited.catch((e: unknown) => e)) as FfmpegTimeoutError;
    expect(err).toBeInstanceOf(FfmpegTimeoutError);
    expect(err.kind).toBe('idle');
    expect(isAlive(proc.pid)).toBe(false);
  });

  test('writing to a process that already exited rejects with StdinClosedError (EPIPE handled)', async () => {
    const proc = startFfmpeg(ffmpeg, ['-hide_banner', '-version'], { stdin: true });
    await proc.exited;
    const big = new Uint8Array(8 * 1024 * 1024);
    await expect(proc.write(big)).rejects.toBeInstanceOf(StdinClosedError);
    await proc.endInput();
  });

  test('early exit while we are still writing: writes fail, exit status carries the reason', async () => {
    // ffmpeg reads one 8x8 frame and quits (-frames:v 1) while we keep writing.
    const proc = startFfmpeg(
      ffmpeg,
      ['-hide_banner', '-nostdin', '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', '8x8', '-i', 'pipe:0', '-frames:v', '1', '-f', 'null', '-'],
      { stdin: true, stdout: false },
    );
    let failed: unknown;
    for (let i = 0; i < 200 && !failed; i++) {
      await proc.write(new Uint8Array(1 << 20)).catch((e: unknown) => (failed = e));
    }
    expect(failed).toBeInstanceOf(StdinClosedError);
    await proc.exited.catch(() => undefined);
    expect(isAlive(proc.pid)).toBe(false);
  });

  test('stderr is kept as a bounded tail and split into lines', async () => {
    const lines: string[] = [];
    const proc = startFfmpeg(
      ffmpeg,
      ['-hide_banner', '-nostdin', '-loglevel', 'debug', '-f', 'lavfi', '-i', 'testsrc=size=16x16', '-frames:v', '50', '-f', 'null', '-'],
      { stdout: false, stderrTailBytes: 1000, onStderrLine: (l) => lines.push(l) },
    );
    await proc.exited;
    expect(proc.stderrTail().length).toBeLessThanOrEqual(1000);
    expect(lines.length).toBeGreaterThan(20);
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
  });

  test('invalid timeouts → ConfigError', () => {
    expect(() => startFfmpeg(ffmpeg, ['-version'], { timeoutMs: 0 })).toThrow(ConfigError);
    expect(() => startFfmpeg(ffmpeg, ['-version'], { idleTimeoutMs: Number.NaN })).toThrow(ConfigError);
  });
});
