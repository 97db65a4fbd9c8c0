// Shared fixtures of the InvMM tests: small random "training sets" and the EmpiricalDenoiser
// (the closed-form, perfectly memorizing model) as known-answer models.
import * as tf from '@tensorflow/tfjs-core';
import { DDPMScheduler, EmpiricalDenoiser, Generator, type Denoiser } from '@diffmem/core';
import type { InvMMModel } from '../model.js';

export const S = 8;
export const CH = 1;

/** n random display images [n,S,S,CH] in [0,1] (seeded). */
export function randomImages(n: number, seed: number, size = S, ch = CH): tf.Tensor4D {
  return tf.tensor4d(new Generator(seed).uniformArray(n * size * size * ch), [n, size, size, ch]);
}

/** An EmpiricalDenoiser model over display images `train` (labels optional). Dispose via the returned function. */
export function empiricalModel(train: tf.Tensor4D, opts: { labels?: Int32Array; numClasses?: number; scheduler?: DDPMScheduler } = {}): InvMMModel & { dispose(): void } {
  const scheduler = opts.scheduler ?? new DDPMScheduler();
  const modelRange = tf.tidy(() => tf.sub(tf.mul(train, 2), 1));
  const denoiser = new EmpiricalDenoiser(modelRange as never, {
    alphasCumprod: scheduler.alphasCumprod,
    ...(opts.labels ? { labels: opts.labels, numClasses: opts.numClasses as number } : {}),
  });
  modelRange.dispose();
  return { denoiser, scheduler: scheduler as never, dispose: () => denoiser.dispose() };
}

/** Fast settings for tests (the official constants are far too slow for a unit test). */
export const FAST = {
  maxSteps: 60,
  batchSize: 8,
  checkEvery: 5,
  verification: { numInferenceSteps: 20, numSamples: 8 },
} as const;

/** A denoiser wrapper that returns NaN for the given class (to test non-finite handling). */
export function nanForClass(inner: Denoiser, badClass: number): Denoiser {
  return {
    info: inner.info,
    predict(sample, t, labels) {
      return tf.tidy(() => {
        const out = inner.predict(sample, t, labels);
        if (!labels) return out;
        const l = labels.dataSync();
        const scale = Float32Array.from(l, (c) => (c === badClass ? NaN : 1));
        return tf.mul(out, tf.tensor4d(scale, [l.length, 1, 1, 1])) as tf.Tensor4D;
      });
    },
  };
}

/** max |a − b| (no tensors left behind). */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}
