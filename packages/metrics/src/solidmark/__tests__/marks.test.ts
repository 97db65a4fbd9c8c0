import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, ShapeError, ValueRangeError, toDisplayRange, toModelRange, type ImageBatch } from '@diffmem/core';
import {
  SOLIDMARK_DEFAULT_THICKNESS,
  addCenterMark,
  addSolidMark,
  applyMark,
  borderMask,
  drawSolidMarkKey,
  markMask,
  markedCanvasSize,
  predictKeys,
  solidMarkDistance,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

function randomImages(n: number, size: number, c: number, seed: number): ImageBatch<'display'> {
  const g = new Generator(seed);
  return tf.tensor4d(g.uniformArray(n * size * size * c), [n, size, size, c]) as ImageBatch<'display'>;
}

test('SolidMark pads every image by p pixels of its key on all channels, content untouched', () => {
  const x = randomImages(2, 6, 3, 1);
  const before = tf.memory().numTensors;
  const marked = addSolidMark(x, [0.25, 0.75], 3);
  expect(tf.memory().numTensors).toBe(before + 1);
  expect(marked.shape).toEqual([2, 12, 12, 3]);
  const px = marked.arraySync() as number[][][][];
  const src = x.arraySync() as number[][][][];
  for (let i = 0; i < 2; i++) {
    const key = [0.25, 0.75][i] as number;
    for (let y = 0; y < 12; y++) {
      for (let xx = 0; xx < 12; xx++) {
        const inside = y >= 3 && y < 9 && xx >= 3 && xx < 9;
        for (let ch = 0; ch < 3; ch++) {
          const v = px[i]![y]![xx]![ch]!;
          expect(v).toBe(inside ? src[i]![y - 3]![xx - 3]![ch]! : key);
        }
      }
    }
  }
  tf.dispose([x, marked]);
});

test('default thickness is the official CLI default (16) and masks cover the border or the centre square', () => {
  expect(SOLIDMARK_DEFAULT_THICKNESS).toBe(16);
  expect(markedCanvasSize({ kind: 'border', thickness: 16 }, 32)).toBe(64);
  const before = tf.memory().numTensors;
  const m = borderMask(10, 3, 2);
  const c = markMask({ kind: 'center', side: 4, padding: 1 }, 10, 1);
  expect(tf.memory().numTensors).toBe(before + 2);
  expect(m.shape).toEqual([1, 10, 10, 3]);
  expect(Array.from(m.dataSync()).reduce((a, b) => a + b, 0)).toBe((100 - 36) * 3);
  expect(Array.from(c.dataSync()).reduce((a, b) => a + b, 0)).toBe(16);
  const arr = c.arraySync()[0]!;
  expect(arr[3]![3]![0]).toBe(1);
  expect(arr[6]![6]![0]).toBe(1);
  expect(arr[2]![3]![0]).toBe(0);
  expect(arr[7]![7]![0]).toBe(0);
  tf.dispose([m, c]);
  expect(tf.memory().numTensors).toBe(before);
});

test('CenterMark writes the key into a centred square after zero padding', () => {
  const x = tf.ones([1, 4, 4, 1]) as ImageBatch<'display'>;
  const marked = addCenterMark(x, [0.5], 2, 2);
  expect(marked.shape).toEqual([1, 8, 8, 1]);
  const a = marked.arraySync()[0]!;
  expect(a[0]![0]![0]).toBe(0); // zero padding
  expect(a[2]![2]![0]).toBe(1); // image
  expect(a[3]![3]![0]).toBe(0.5); // key square [3, 5)
  expect(a[4]![4]![0]).toBe(0.5);
  expect(a[5]![5]![0]).toBe(1);
  tf.dispose([x, marked]);
});

test('a perfect copy of the border scores exactly 0 through model space and back', () => {
  const g = new Generator(7);
  const keys = Array.from({ length: 64 }, () => drawSolidMarkKey(g));
  keys.push(0, 1 - 2 ** -24, 2 ** -24, 0.5); // extremes of the grid
  const x = randomImages(keys.length, 5, 3, 2);
  const marked = applyMark(x, keys, { kind: 'border', thickness: 2 });
  const model = toModelRange(marked);
  // The model-space border holds 2k − 1 exactly.
  const cornerT = tf.slice(model, [0, 0, 0, 0], [keys.length, 1, 1, 1]);
  const corner = cornerT.dataSync();
  keys.forEach((k, i) => expect(corner[i]).toBe(2 * k - 1));
  const back = toDisplayRange(model);
  const mask = borderMask(9, 3, 2);
  const before = tf.memory().numTensors;
  const { keys: kHat, borderStd } = predictKeys(back, mask);
  expect(tf.memory().numTensors).toBe(before);
  keys.forEach((k, i) => {
    expect(solidMarkDistance(kHat[i]!, k)).toBe(0);
    expect(borderStd[i]).toBe(0);
  });
  tf.dispose([x, marked, model, cornerT, back, mask]);
});

test('bad input: thickness, keys outside [0,1], key count, non-square images', () => {
  const x = randomImages(2, 6, 1, 3);
  const before = tf.memory().numTensors;
  expect(() => addSolidMark(x, [0.1, 0.2], 7)).toThrow(ConfigError); // thicker than the 6 px image
  expect(() => addSolidMark(x, [0.1, 0.2], 7)).toThrow(/thicker than the 6px images/);
  expect(() => addSolidMark(x, [0.1, 0.2], 0)).toThrow(ConfigError);
  expect(() => addSolidMark(x, [0.1, 0.2], 1.5)).toThrow(ConfigError);
  expect(() => addCenterMark(x, [0.1, 0.2], 9, 1)).toThrow(ConfigError);
  expect(() => addSolidMark(x, [0.1, 1.5], 2)).toThrow(ValueRangeError);
  expect(() => addSolidMark(x, [-0.2, 0.5], 2)).toThrow(/outside \[0, 1\]/);
  expect(() => addSolidMark(x, [NaN, 0.5], 2)).toThrow(ValueRangeError);
  expect(() => addSolidMark(x, [0.5], 2)).toThrow(ShapeError);
  const rect = tf.zeros([1, 4, 6, 1]) as ImageBatch<'display'>;
  expect(() => addSolidMark(rect, [0.5], 1)).toThrow(ShapeError);
  expect(() => markMask({ kind: 'border', thickness: 5 }, 10, 1)).toThrow(ConfigError); // no image left
  expect(() => solidMarkDistance(0.5, 2)).toThrow(ValueRangeError);
  rect.dispose();
  expect(tf.memory().numTensors).toBe(before);
  x.dispose();
});
