// Shared test helpers: real media location (skips with a message when absent), tfjs backend,
// temp folders, process liveness and deterministic byte damage.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (packages/video/src/__tests__ → four levels up). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The shared real-media folder, `../shared/data` next to the repository. */
export const DATA_DIR = path.resolve(REPO_ROOT, '../shared/data');
export const MEGAMIND = path.join(DATA_DIR, 'Megamind.avi');
export const MEGAMIND_BUGY = path.join(DATA_DIR, 'Megamind_bugy.avi');
export const HAVE_DATA = existsSync(MEGAMIND) && existsSync(MEGAMIND_BUGY);

const warned = new Set<string>();
/** `describe` when the real clips exist, else `describe.skip` with a clear message. */
export function describeWithData(name: string, fn: () => void): void {
  if (!HAVE_DATA && !warned.has(name)) {
    warned.add(name);
    // eslint-disable-next-line no-console
    console.warn(`[video tests] skipping "${name}": real media not found at ${DATA_DIR} (expects Megamind.avi, Megamind_bugy.avi)`);
  }
  (HAVE_DATA ? describe : describe.skip)(name, fn);
}

export async function useWasm(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
}

export async function tempDir(tag: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `diffmem-video-${tag}-`));
}

/**
 * True while a process with this pid exists. Zombies still answer signal 0, so `false` means the
 * process is gone and was reaped.
 */
export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Deterministic xorshift32 bytes (seeded), for damaging copies of a real clip. */
export function seededBytes(seed: number, n: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Max |a − b| over two equal-shape tensors. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/** Mean |a − b|. */
export function meanAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.mean(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
