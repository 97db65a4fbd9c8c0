import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { loadEmbeddedDigits } from '@diffmem/core';
import { PixelFrameEmbedder } from '../pixel_embedder.js';

test('pixel correlation separates different digits and matches copies', async () => {
  await tf.setBackend('wasm');
  const ds = loadEmbeddedDigits({ perClass: 2, size: 28 });
  const e = new PixelFrameEmbedder({ size: 16 });
  const before = tf.memory().numTensors;
  const d = e.embed(ds.images);
  expect(tf.memory().numTensors).toBe(before + 1);
  const sims = tf.matMul(d, d, false, true).arraySync();
  // a digit vs itself is 1, vs a different digit clearly less
  expect(sims[0]?.[0]).toBeCloseTo(1, 5);
  const others = sims[0]?.slice(2) ?? [];
  expect(Math.max(...others)).toBeLessThan(0.9);
  // a brightness change (jitter) keeps the correlation near 1
  const bright = tf.tidy(() => tf.clipByValue(tf.mul(tf.slice(ds.images, [0, 0, 0, 0], [1, -1, -1, -1]), 0.8), 0, 1)) as tf.Tensor4D;
  const b = e.embed(bright);
  const s = tf.sum(tf.mul(b, tf.slice(d, [0, 0], [1, -1]))).dataSync()[0] as number;
  expect(s).toBeGreaterThan(0.999);
  expect(() => new PixelFrameEmbedder({ size: 1 })).toThrow(/integer ≥ 2/);
  tf.dispose([d, b, bright, ds.images]);
});
