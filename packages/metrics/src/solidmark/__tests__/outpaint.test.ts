import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, DiffmemError, Generator, ShapeError, toDisplayRange, toModelRange, type ImageBatch, type ImageDataset } from '@diffmem/core';
import { applyMark, makeMarkedTrainingSet, markMask, outpaintRePaint, predictKeys, type MarkedTrainingSet } from '../index.js';
import { ddim, ddpm, digits, memorizer } from './helpers.js';

const MARK = { kind: 'border', thickness: 2 } as const;
let ds: ImageDataset;
let set: MarkedTrainingSet;
beforeAll(async () => {
  await tf.setBackend('wasm');
  ds = digits(2); // 20 digits
  set = makeMarkedTrainingSet(ds, { seed: 5, mark: MARK });
});
afterAll(() => {
  ds.images.dispose();
  set.images.dispose();
});

/** Input canvases with the key region painted 0 (the key never enters the input). */
function canvases(rows: number[]): ImageBatch<'model'> {
  return tf.tidy(() => toModelRange(applyMark(tf.gather(ds.images, rows) as ImageBatch<'display'>, rows.map(() => 0), MARK)));
}

test.each([
  ['DDIM', 25, 1],
  ['DDPM', 50, 1],
  ['DDIM', 10, 3],
])('a memorizing model (%s, %i steps, resample %i) outpaints every image\'s own key; known pixels come from the input', async (name, steps, resample) => {
  const scheduler = name === 'DDIM' ? ddim() : ddpm();
  const den = memorizer(set.images, scheduler.alphasCumprod);
  const rows = [0, 3, 7, 11, 19];
  const known = canvases(rows);
  const mask = markMask(MARK, 32, 1);
  const before = tf.memory().numTensors;
  const out = await outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: steps, resample, generator: 1 });
  expect(tf.memory().numTensors).toBe(before + 1);
  const disp = toDisplayRange(out);
  const { keys, borderStd } = predictKeys(disp, mask);
  rows.forEach((r, i) => {
    expect(Math.abs(keys[i]! - set.rows[r]!.key)).toBeLessThan(1e-3);
    expect(borderStd[i]).toBeLessThan(1e-2);
  });
  const inner = tf.tidy(() => tf.max(tf.abs(tf.mul(tf.sub(out, known), tf.sub(1, mask)))).dataSync()[0]);
  expect(inner).toBe(0);
  tf.dispose([known, mask, out, disp]);
  den.dispose();
});

test('class-conditional models get the true label; per-image generators make results independent of the batch', async () => {
  const scheduler = ddim();
  const den = memorizer(set.images, scheduler.alphasCumprod, set.labels, 10);
  const mask = markMask(MARK, 32, 1);
  const rows = [2, 5, 9];
  const known = canvases(rows);
  const labels = rows.map((r) => ds.records[r]!.label!);
  const gens = (ids: number[]) => ids.map((i) => new Generator(100 + i));
  const all = await outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: 20, classLabels: labels, generator: gens(rows) });
  const one = canvases([5]);
  const single = await outpaintRePaint(den, one, mask, { scheduler, numInferenceSteps: 20, classLabels: [labels[1]!], generator: gens([5]) });
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.slice(all, [1, 0, 0, 0], [1, 32, 32, 1]), single))).dataSync()[0]);
  expect(diff).toBeLessThan(1e-5);
  const disp = toDisplayRange(all);
  const { keys } = predictKeys(disp, mask);
  rows.forEach((r, i) => expect(Math.abs(keys[i]! - set.rows[r]!.key)).toBeLessThan(1e-3));
  await expect(outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: 5, generator: 0 })).rejects.toThrow(/class-conditional/);
  await expect(outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: 5, generator: 0, classLabels: [0, 1, 99] })).rejects.toThrow(/outside/);
  tf.dispose([all, single, one, known, mask, disp]);
  den.dispose();
});

test('bad input: scheduler kind, mask shape, size mismatch, generators, eta with DDPM; abort', async () => {
  const scheduler = ddim();
  const den = memorizer(set.images, scheduler.alphasCumprod);
  const known = canvases([0, 1]);
  const mask = markMask(MARK, 32, 1);
  const before = tf.memory().numTensors;
  const bogus = Object.assign(Object.create(scheduler), { className: 'DDIMInverseScheduler' });
  await expect(outpaintRePaint(den, known, mask, { scheduler: bogus, generator: 0 })).rejects.toThrow(ConfigError);
  const wrongMask = tf.ones([1, 30, 30, 1]) as tf.Tensor4D;
  await expect(outpaintRePaint(den, known, wrongMask, { scheduler, generator: 0 })).rejects.toThrow(ShapeError);
  const small = tf.zeros([2, 28, 28, 1]) as ImageBatch<'model'>;
  const smallMask = tf.ones([1, 28, 28, 1]) as tf.Tensor4D;
  await expect(outpaintRePaint(den, small, smallMask, { scheduler, generator: 0 })).rejects.toThrow(/takes 32px/);
  await expect(outpaintRePaint(den, known, mask, { scheduler, generator: [new Generator(1)] })).rejects.toThrow(/1 generators for 2/);
  await expect(outpaintRePaint(den, known, mask, { scheduler: ddpm(), eta: 0.5, generator: 0 })).rejects.toThrow(/DDIM only/);
  await expect(outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: 0, generator: 0 })).rejects.toThrow(ConfigError);
  await expect(outpaintRePaint(den, known, mask, { scheduler, resample: 0, generator: 0 })).rejects.toThrow(/resample/);
  tf.dispose([wrongMask, small, smallMask]);
  expect(tf.memory().numTensors).toBe(before);
  const ctrl = new AbortController();
  ctrl.abort();
  const err = await outpaintRePaint(den, known, mask, { scheduler, numInferenceSteps: 5, generator: 0, signal: ctrl.signal }).catch((e) => e);
  expect(err).toBeInstanceOf(DiffmemError);
  expect((err as DiffmemError).code).toBe('ABORTED');
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose([known, mask]);
  den.dispose();
});
