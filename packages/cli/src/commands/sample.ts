/**
 * `diffmem sample`: generate images from a pipeline folder (DDIM or DDPM), optionally in
 * parallel worker threads, and write a PNG grid (+ raw samples as safetensors for later audits).
 * @module
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { imageGridPng, toDisplayRange, WorkerPool, writeFileAtomicSync, type ImageBatch } from '@diffmem/core';
import { ProgressBar } from '../progress.js';
import { sampleShard, type SampleShardArgs, type SampleShardResult } from '../tasks/sample_task.js';
import type { GlobalFlags } from '../util.js';

/** The sampling flags `sample` and `sample --amg` share. */
export interface SamplingFlags extends GlobalFlags {
  model: string;
  n: number;
  steps: number;
  scheduler: 'ddim' | 'ddpm';
  seed: number;
  classLabel?: number;
  guidanceScale?: number;
  /** PNG grid to write. */
  out?: string;
}

/** Options of {@link runSample}. */
export interface SampleCommandOptions extends SamplingFlags {
  workers: number;
}

/** The compiled task module (only exists in the built package: workers run compiled JS). */
function taskModule(): string {
  return fileURLToPath(new URL('../tasks/sample_task.js', import.meta.url));
}

/**
 * Samples `n` images in `workers` shards; shard s draws its noise from seed `seed + s`, so the
 * same (n, workers, seed) always reproduces the same images, whichever thread runs a shard.
 */
export async function sampleImages(o: SampleCommandOptions): Promise<{ images: ImageBatch<'model'>; seconds: number }> {
  const t0 = performance.now();
  const shards = Math.max(1, Math.min(o.workers, o.n));
  const per = Math.ceil(o.n / shards);
  const args: SampleShardArgs[] = [];
  for (let s = 0; s < shards; s++) {
    const n = Math.min(per, o.n - s * per);
    if (n <= 0) break;
    args.push({
      modelDir: o.model,
      n,
      seed: o.seed + s,
      offset: s * per,
      steps: o.steps,
      scheduler: o.scheduler,
      ...(o.classLabel !== undefined ? { classLabels: new Array<number>(n).fill(o.classLabel) } : {}),
      ...(o.guidanceScale !== undefined ? { guidanceScale: o.guidanceScale } : {}),
    });
  }
  const bar = new ProgressBar('sample', args.length, { quiet: o.quiet || o.json });
  let results: SampleShardResult[];
  if (args.length > 1) {
    const pool = new WorkerPool({ size: args.length });
    try {
      let done = 0;
      results = await pool.map<SampleShardResult, SampleShardArgs>(
        args.map((arg) => ({ module: taskModule(), fn: 'sampleShard', arg })),
        () => bar.update(++done),
      );
    } finally {
      await pool.close();
    }
  } else {
    results = [await sampleShard(args[0] as SampleShardArgs)];
    bar.done();
  }
  const images = tf.tidy(() => tf.concat(results.map((r) => tf.tensor4d(r.data, r.shape)), 0)) as ImageBatch<'model'>;
  return { images, seconds: (performance.now() - t0) / 1000 };
}

/** `diffmem sample`: writes the grid and returns a summary. */
export async function runSample(o: SampleCommandOptions): Promise<{ out: string | null; n: number; seconds: number }> {
  const { images, seconds } = await sampleImages(o);
  try {
    if (o.out) {
      const display = toDisplayRange(images);
      writeFileAtomicSync(path.resolve(o.out), imageGridPng(display));
      display.dispose();
    }
    return { out: o.out ?? null, n: images.shape[0], seconds };
  } finally {
    images.dispose();
  }
}
