/**
 * Finding ffmpeg and ffprobe without network access.
 *
 * Search order for `ffmpeg` (first usable wins; the result is cached per process):
 * 1. `options.ffmpegPath` (explicit),
 * 2. env `FFMPEG_PATH`,
 * 3. the optional npm package `ffmpeg-static` (its install script downloads the binary from GitHub,
 *    so offline its path may point at a file that does not exist),
 * 4. the optional npm package `@ffmpeg-installer/ffmpeg` (binary shipped inside the per-platform
 *    tarball `@ffmpeg-installer/<platform>-<arch>`; its exec bit is set by an install script, so with
 *    `--ignore-scripts` the file may exist but not be executable),
 * 5. `ffmpeg` on `PATH` (e.g. Debian's `apt-get install ffmpeg`).
 *
 * `ffprobe` follows the same order with `options.ffprobePath`, `FFPROBE_PATH`, then an `ffprobe`
 * next to an explicitly chosen ffmpeg (option or env), then `ffprobe-static`,
 * `@ffprobe-installer/ffprobe`, `PATH`.
 *
 * An explicit path (option or env) that is unusable is an error, not a reason to fall back: a
 * misconfigured override would otherwise be silently ignored. Every candidate is checked for
 * existence, being a regular file and the exec permission, then run once with `-version` (to catch
 * wrong-architecture binaries and to learn the libavutil version, which decides `-fps_mode` vs
 * `-vsync`). Optional packages are loaded with `createRequire`, so their absence costs nothing.
 * @module
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ConfigError } from '@diffmem/core';
import { FfmpegNotFoundError, type BinaryAttempt } from './errors.js';

/** Which program. */
export type BinaryName = 'ffmpeg' | 'ffprobe';

/** Places {@link resolveBinary} can search, in the default order. */
export type BinarySource = 'option' | 'env' | 'static' | 'installer' | 'path';

/** Default search order (the `sibling` check for ffprobe rides on `option`/`env`). */
export const DEFAULT_BINARY_ORDER: readonly BinarySource[] = ['option', 'env', 'static', 'installer', 'path'];

/** Options accepted by every function that runs ffmpeg/ffprobe. */
export interface BinaryOptions {
  /** Use this ffmpeg (must exist and be executable). */
  ffmpegPath?: string;
  /** Use this ffprobe (must exist and be executable). */
  ffprobePath?: string;
  /**
   * Sources to search (default {@link DEFAULT_BINARY_ORDER}); drop entries to skip them. `'option'`
   * and `'env'`, when listed, are always consulted before the others.
   */
  order?: readonly BinarySource[];
  /** Environment to read `FFMPEG_PATH`/`FFPROBE_PATH`/`PATH` from (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Run `<binary> -version` to confirm it works (default true). */
  verify?: boolean;
  /** Bypass the per-process cache. */
  noCache?: boolean;
  /**
   * Loader for optional packages (tests inject fakes); default `createRequire(import.meta.url)`.
   * Returns the module's exports or throws.
   * @internal
   */
  requireModule?: (id: string) => unknown;
}

/** A usable binary and how it was found. */
export interface ResolvedBinary {
  name: BinaryName;
  /** Absolute path of the executable. */
  path: string;
  /** Where it was found. */
  source: 'option' | 'env' | 'sibling' | 'ffmpeg-static' | 'ffprobe-static' | '@ffmpeg-installer/ffmpeg' | '@ffprobe-installer/ffprobe' | 'path';
  /** First line of `-version` (empty when `verify: false`). */
  version: string;
  /** libavutil version `[major, minor]` from `-version`, when known. */
  libavutil: readonly [number, number] | undefined;
  /** Every place searched before (and including) the winner. */
  tried: readonly BinaryAttempt[];
}

const ENV_VAR: Record<BinaryName, string> = { ffmpeg: 'FFMPEG_PATH', ffprobe: 'FFPROBE_PATH' };
const STATIC_PKG: Record<BinaryName, string> = { ffmpeg: 'ffmpeg-static', ffprobe: 'ffprobe-static' };
const INSTALLER_PKG: Record<BinaryName, string> = {
  ffmpeg: '@ffmpeg-installer/ffmpeg',
  ffprobe: '@ffprobe-installer/ffprobe',
};

const cache = new Map<string, Promise<ResolvedBinary>>();

/** Forgets every cached resolution (tests; or after installing a binary at run time). */
export function clearBinaryCache(): void {
  cache.clear();
}

let defaultRequire: ((id: string) => unknown) | undefined;
function requireOptional(id: string): unknown {
  defaultRequire ??= createRequire(import.meta.url);
  return defaultRequire(id);
}

/** Why a candidate file cannot be run, or undefined if it can. */
async function checkExecutable(file: string): Promise<string | undefined> {
  let st;
  try {
    st = await fsp.stat(file);
  } catch {
    return 'file does not exist';
  }
  if (!st.isFile()) return 'not a regular file';
  try {
    await fsp.access(file, fsConstants.X_OK);
  } catch {
    return (
      'exists but is not executable by this user (no exec bit: the package install script may not have run; ' +
      `fix with chmod +x "${file}")`
    );
  }
  return undefined;
}

/** Parses `libavutil      57. 28.100 / 57. 28.100` out of `-version` output. */
export function parseLibavutilVersion(versionOutput: string): readonly [number, number] | undefined {
  const m = /libavutil\s+(\d+)\.\s*(\d+)\./.exec(versionOutput);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Runs `<file> -version` (10 s limit) and returns its output, or throws with a one-line reason. */
function runVersion(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let settled = false;
    const child = spawn(file, ['-version'], { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      if (!settled) reject(new Error('-version did not finish within 10 s'));
      settled = true;
    }, 10_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (out.length < 65536) out += d;
    });
    child.stderr.resume();
    child.on('error', (err) => {
      clearTimeout(timer);
      if (!settled) reject(new Error(`cannot be started: ${err.message}`));
      settled = true;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (settled) return;
      settled = true;
      if (code === 0) resolve(out);
      else reject(new Error(`-version failed (exit ${code ?? signal})`));
    });
  });
}

function pathCandidates(name: BinaryName, env: Readonly<Record<string, string | undefined>>): string[] {
  const dirs = (env['PATH'] ?? env['Path'] ?? '').split(path.delimiter).filter(Boolean);
  const exts =
    process.platform === 'win32' ? (env['PATHEXT'] ?? '.EXE;.CMD;.BAT').split(';').filter(Boolean) : [''];
  return dirs.flatMap((d) => exts.map((e) => path.join(d, name + e)));
}

/** Extracts the path a binary package exports: a string (`ffmpeg-static`) or `{ path }`. */
function packagePath(mod: unknown): string | undefined {
  const m = mod as { default?: unknown; path?: unknown } | string | null | undefined;
  if (typeof m === 'string') return m;
  if (m && typeof m === 'object') {
    if (typeof m.path === 'string') return m.path;
    if (typeof m.default === 'string') return m.default;
    if (m.default && typeof (m.default as { path?: unknown }).path === 'string') {
      return (m.default as { path: string }).path;
    }
  }
  return undefined;
}

function describeLoadError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/Cannot find (module|package)|MODULE_NOT_FOUND/.test(msg)) return 'package not installed';
  return `package failed to load: ${msg.split('\n')[0] ?? msg}`;
}

function cacheKey(name: BinaryName, o: BinaryOptions, env: Readonly<Record<string, string | undefined>>): string {
  return JSON.stringify([
    name,
    o.ffmpegPath,
    o.ffprobePath,
    o.order ?? DEFAULT_BINARY_ORDER,
    env['FFMPEG_PATH'],
    env['FFPROBE_PATH'],
    env['PATH'],
    o.verify ?? true,
  ]);
}

/**
 * Finds a usable `ffmpeg` or `ffprobe` (see the module doc for the order) and caches the answer.
 * Throws {@link FfmpegNotFoundError} listing every place searched, or {@link ConfigError} for an
 * unknown source in `order`.
 */
export function resolveBinary(name: BinaryName, options: BinaryOptions = {}): Promise<ResolvedBinary> {
  const env = options.env ?? process.env;
  const key = cacheKey(name, options, env);
  if (!options.noCache && !options.requireModule) {
    const hit = cache.get(key);
    if (hit) return hit;
  }
  const p = search(name, options, env);
  if (!options.noCache && !options.requireModule) {
    cache.set(key, p);
    // A failed search is not cached: the user may install ffmpeg and retry.
    p.catch(() => cache.delete(key));
  }
  return p;
}

/** {@link resolveBinary} for ffmpeg. */
export function resolveFfmpeg(options: BinaryOptions = {}): Promise<ResolvedBinary> {
  return resolveBinary('ffmpeg', options);
}

/** {@link resolveBinary} for ffprobe. */
export function resolveFfprobe(options: BinaryOptions = {}): Promise<ResolvedBinary> {
  return resolveBinary('ffprobe', options);
}

async function search(
  name: BinaryName,
  options: BinaryOptions,
  env: Readonly<Record<string, string | undefined>>,
): Promise<ResolvedBinary> {
  const order = options.order ?? DEFAULT_BINARY_ORDER;
  for (const s of order) {
    if (!DEFAULT_BINARY_ORDER.includes(s)) {
      throw new ConfigError(`unknown binary source "${s}"; use ${DEFAULT_BINARY_ORDER.join(', ')}`, { order });
    }
  }
  const verify = options.verify ?? true;
  const load = options.requireModule ?? requireOptional;
  const tried: BinaryAttempt[] = [];

  // Returns the resolved binary, or undefined after recording why the candidate was rejected.
  const attempt = async (source: ResolvedBinary['source'], file: string): Promise<ResolvedBinary | undefined> => {
    const abs = path.resolve(file);
    const bad = await checkExecutable(abs);
    if (bad) {
      tried.push({ source, path: abs, reason: bad });
      return undefined;
    }
    let version = '';
    let libavutil: readonly [number, number] | undefined;
    if (verify) {
      try {
        const out = await runVersion(abs);
        version = (out.split('\n')[0] ?? '').trim();
        libavutil = parseLibavutilVersion(out);
      } catch (err) {
        tried.push({ source, path: abs, reason: (err as Error).message });
        return undefined;
      }
    }
    tried.push({ source, path: abs, reason: 'ok' });
    return { name, path: abs, source, version, libavutil, tried };
  };

  const fail = (headline: string): never => {
    const list = tried.map((t) => `  - ${t.source}: ${t.path ?? '(no path)'}: ${t.reason}`).join('\n');
    throw new FfmpegNotFoundError(name, `${headline}\nplaces tried:\n${list}`, tried);
  };

  for (const source of order) {
    if (source === 'option' || source === 'env') {
      const value =
        source === 'option'
          ? name === 'ffmpeg'
            ? options.ffmpegPath
            : options.ffprobePath
          : env[ENV_VAR[name]];
      const label = source === 'option' ? `options.${name}Path` : ENV_VAR[name];
      if (value === undefined || value === '') {
        tried.push({ source, path: undefined, reason: `${label} not set` });
        continue;
      }
      const got = await attempt(source, value);
      if (got) return got;
      fail(
        `${label}="${value}" is not a usable ${name} (${tried[tried.length - 1]?.reason}); ` +
          `fix or unset it to let diffmem search the npm packages and PATH`,
      );
    }
  }
  if (name === 'ffprobe') {
    // An explicitly chosen ffmpeg usually has its ffprobe beside it (static builds, /opt installs).
    const explicitFfmpeg =
      (order.includes('option') ? options.ffmpegPath : undefined) ||
      (order.includes('env') ? env['FFMPEG_PATH'] : undefined);
    if (explicitFfmpeg) {
      const sibling = path.join(
        path.dirname(path.resolve(explicitFfmpeg)),
        process.platform === 'win32' ? 'ffprobe.exe' : 'ffprobe',
      );
      const got = await attempt('sibling', sibling);
      if (got) return got;
    }
  }
  for (const source of order) {
    if (source === 'static' || source === 'installer') {
      const pkg = source === 'static' ? STATIC_PKG[name] : INSTALLER_PKG[name];
      let mod: unknown;
      try {
        mod = load(pkg);
      } catch (err) {
        tried.push({ source: pkg, path: undefined, reason: describeLoadError(err) });
        continue;
      }
      const file = packagePath(mod);
      if (!file) {
        tried.push({ source: pkg, path: undefined, reason: 'package exports no binary path for this platform' });
        continue;
      }
      const got = await attempt(pkg as ResolvedBinary['source'], file);
      if (got) return got;
    } else if (source === 'path') {
      const candidates = pathCandidates(name, env);
      let found = false;
      for (const c of candidates) {
        const bad = await checkExecutable(c);
        if (bad === 'file does not exist') continue;
        found = true;
        const got = await attempt('path', c);
        if (got) return got;
      }
      if (!found) {
        const dirs = (env['PATH'] ?? '').split(path.delimiter).filter(Boolean).length;
        tried.push({ source: 'path', path: undefined, reason: `no ${name} on PATH (${dirs} directories searched)` });
      }
    }
  }
  return fail(
    `no usable ${name} found. Install one offline with \`apt-get install ffmpeg\`, set ${ENV_VAR[name]}, ` +
      `or install the optional npm package ${INSTALLER_PKG[name]}`,
  );
}

/** Both binaries. */
export async function resolveBinaries(options: BinaryOptions = {}): Promise<{ ffmpeg: ResolvedBinary; ffprobe: ResolvedBinary }> {
  const [ffmpeg, ffprobe] = await Promise.all([resolveFfmpeg(options), resolveFfprobe(options)]);
  return { ffmpeg, ffprobe };
}

/**
 * Whether this ffmpeg understands `-fps_mode` (added in ffmpeg 5.1 = libavutil 57.28); older builds
 * need the equivalent `-vsync`, which 5.1+ still accepts but warns about.
 */
export function supportsFpsMode(bin: ResolvedBinary): boolean {
  const v = bin.libavutil;
  if (!v) return true; // unknown (verify: false): assume a current build
  return v[0] > 57 || (v[0] === 57 && v[1] >= 28);
}
