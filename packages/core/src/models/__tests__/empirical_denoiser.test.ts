import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { EmpiricalDenoiser } from '../empirical_denoiser.js';
import { Generator } from '../../random.js';
import type { ImageBatch } from '../../tensor/types.js';

const T = 1000;
const alphas = (() => {
  const a = new Float32Array(T);
  let c = 1;
  for (let i = 0; i < T; i++) a[i] = c = Math.fround(c * (1 - (1e-4 + ((0.02 - 1e-4) * i) / (T - 1))));
  return a;
})();

beforeAll(async () => {
  await tf.setBackend('wasm');
});

test('recovers the noise of a noised training image and respects classes', () => {
  const g = new Generator(0);
  const imgs = tf.tensor4d(Float32Array.from(g.uniformArray(4 * 8 * 8 * 1), (v) => 2 * v - 1), [4, 8, 8, 1]) as ImageBatch<'model'>;
  const den = new EmpiricalDenoiser(imgs, { alphasCumprod: alphas, labels: Int32Array.from([0, 0, 1, 1]), numClasses: 2 });
  const t = 200;
  const a = alphas[t] as number;
  const eps = tf.tensor4d(g.normalArray(64), [1, 8, 8, 1]);
  const x0 = tf.slice(imgs, [2, 0, 0, 0], [1, 8, 8, 1]);
  const xt = tf.add(tf.mul(Math.sqrt(a), x0), tf.mul(Math.sqrt(1 - a), eps)) as tf.Tensor4D;
  const lbl = tf.tensor1d([1], 'int32');
  const before = tf.memory().numTensors;
  const pred = den.predict(xt, t, lbl);
  expect(tf.memory().numTensors).toBe(before + 1);
  const err = tf.max(tf.abs(tf.sub(pred, eps))).dataSync()[0] as number;
  expect(err).toBeLessThan(1e-3);
  // conditioned on the wrong class, it explains x_t by another image: large error
  const wrong = den.predict(xt, t, tf.tensor1d([0], 'int32'));
  expect(tf.max(tf.abs(tf.sub(wrong, eps))).dataSync()[0]).toBeGreaterThan(0.1);
  tf.dispose([eps, x0, xt, pred, wrong, lbl]);
  den.dispose();
  imgs.dispose();
});
