/**
 * Test helpers shared by every package's jest suites (exported as `@diffmem/core/testing`).
 *
 * - {@link describeOnBackends}: one conformance suite run on every backend available here, the
 *   way tfjs runs its op tests per backend (wasm and cpu on a stock machine; tfjs-node when installed).
 * - {@link expectNoTensorLeak}: asserts `tf.memory().numTensors` is unchanged by a call.
 * - {@link sharedDataDir}: the real media folder `../shared/data`, or null with a skip reason.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { availableBackends, type BackendChoice } from '../backend/select.js';

declare const describe: (name: string, fn: () => void) => void;
declare const beforeAll: (fn: () => unknown) => void;

const TF_NAMES: Record<BackendChoice, string> = { 'node-gpu': 'tensorflow', node: 'tensorflow', wasm: 'wasm', cpu: 'cpu' };

let cached: BackendChoice[] | undefined;

/**
 * The backends conformance suites run on: env `DIFFMEM_TEST_BACKENDS` (comma list) or every one of
 * wasm, cpu and node that initialises. Top-level `await` this in a test file before describing.
 */
export async function testBackends(): Promise<BackendChoice[]> {
  if (cached) return cached;
  const env = process.env['DIFFMEM_TEST_BACKENDS'];
  const wanted = env ? (env.split(',').map((s) => s.trim()) as BackendChoice[]) : (['wasm', 'cpu', 'node'] as BackendChoice[]);
  cached = await availableBackends(wanted);
  return cached;
}

/**
 * Registers `fn` once per available backend, inside a `describe('<name> [backend]')` whose
 * `beforeAll` activates that backend. Call after `await testBackends()`.
 */
export function describeOnBackends(name: string, backends: readonly BackendChoice[], fn: (backend: BackendChoice) => void): void {
  for (const b of backends) {
    describe(`${name} [${b}]`, () => {
      beforeAll(async () => {
        await tf.setBackend(TF_NAMES[b]);
        await tf.ready();
      });
      fn(b);
    });
  }
}

/** Distinct tensors reachable from a value (tensors, arrays, Maps and plain objects). */
export function collectTensors(value: unknown, into: Set<number> = new Set(), depth = 0): Set<number> {
  if (depth > 6 || value === null || typeof value !== 'object') return into;
  if (value instanceof tf.Tensor) {
    if (!value.isDisposed) into.add(value.id);
    return into;
  }
  const items = value instanceof Map ? [...value.values()] : Array.isArray(value) ? value : Object.values(value);
  for (const v of items) collectTensors(v, into, depth + 1);
  return into;
}

/**
 * Runs `fn` and throws unless the number of live tensors grew by exactly the number of tensors
 * it returned (anything else was leaked or wrongly disposed); returns its result.
 */
export async function expectNoTensorLeak<T>(fn: () => T | Promise<T>, label = 'call'): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  const returned = collectTensors(out).size;
  const after = tf.memory().numTensors;
  if (after - before !== returned) {
    throw new Error(`${label} leaked ${after - before - returned} tensor(s) (${before} → ${after}, ${returned} returned)`);
  }
  return out;
}

/** Repository root (the folder holding `packages/`), found from the working directory upwards. */
export function repoRoot(start = process.cwd()): string {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'packages')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(start);
    dir = up;
  }
}

/**
 * `../shared/data` beside the repository (real media for tests), or `null` when it is absent, in
 * which case tests should skip and say why (`DIFFMEM_SHARED_DATA` overrides the location).
 */
export function sharedDataDir(): string | null {
  const dir = process.env['DIFFMEM_SHARED_DATA'] ?? path.resolve(repoRoot(), '../shared/data');
  return fs.existsSync(dir) ? dir : null;
}

/** Message used when real-data tests are skipped. */
export const SHARED_DATA_MISSING =
  'skipped: ../shared/data (real test media) is not beside this checkout; set DIFFMEM_SHARED_DATA to run these tests';

/**
 * A diffusers-style `config.json` object for the smallest UNet2DModel the unit tests use: 8×8,
 * two levels (8 and 16 channels, attention on the second), one resnet per level, 4 norm groups.
 * `overrides` replaces or adds any field (e.g. `in_channels`, `num_class_embeds`).
 */
export function tinyUNetConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sample_size: 8,
    block_out_channels: [8, 16],
    down_block_types: ['DownBlock2D', 'AttnDownBlock2D'],
    up_block_types: ['AttnUpBlock2D', 'UpBlock2D'],
    layers_per_block: 1,
    norm_num_groups: 4,
    attention_head_dim: null,
    ...overrides,
  };
}

/**
 * `n` reproducible values uniform in [offset − scale, offset + scale) from seed `seed` (mulberry32):
 * identical on every backend and thread, so a failing comparison reproduces exactly.
 */
export function seededUniformArray(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale + offset;
  }
  return out;
}
