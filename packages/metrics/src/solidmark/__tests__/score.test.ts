import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, ShapeError, type ImageBatch } from '@diffmem/core';
import {
  SOLIDMARK_DELTAS,
  chanceHitProbability,
  chanceRate,
  cyclicPermutation,
  eideticCount,
  meanKeyDistance,
  nearestKey,
  predictKeys,
  scoreSolidMarkImage,
  shuffledKeyCounts,
  summarizeSolidMark,
  type SolidMarkImageResult,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

test('predicted key is the masked mean of the border in display space (clamped), with its std', () => {
  const img = tf.tensor4d([0.2, 0.4, 0.9, 1.7, 0.6, -0.5, 0.3, 0.5], [2, 2, 2, 1]) as ImageBatch<'display'>;
  const mask = tf.tensor4d([1, 1, 0, 0], [1, 2, 2, 1]);
  const before = tf.memory().numTensors;
  const { keys, borderStd } = predictKeys(img, mask);
  expect(tf.memory().numTensors).toBe(before);
  expect(keys[0]).toBeCloseTo(0.3, 6);
  expect(borderStd[0]).toBeCloseTo(0.1, 6);
  expect(keys[1]).toBeCloseTo(0.3, 6); // 0.6 and −0.5 clamped to 0
  const empty = tf.zeros([1, 2, 2, 1]);
  expect(() => predictKeys(img, empty as tf.Tensor4D)).toThrow(/empty/);
  const wrong = tf.ones([1, 3, 3, 1]);
  expect(() => predictKeys(img, wrong as tf.Tensor4D)).toThrow(ShapeError);
  tf.dispose([img, mask, empty, wrong]);
});

test('eidetic counts are strict; chance 2δ − δ² at the notebook δ grid; nearest / mean key', () => {
  expect(SOLIDMARK_DELTAS).toEqual([0.1, 0.05, 0.005]);
  expect(eideticCount([0.05, 0.0499, 0.2, 0], 0.05)).toBe(2);
  expect(chanceRate(0.1)).toBeCloseTo(0.19, 12);
  expect(chanceRate(0.05)).toBeCloseTo(0.0975, 12);
  expect(chanceRate(0.005)).toBeCloseTo(0.009975, 12);
  expect(() => chanceRate(0)).toThrow(ConfigError);
  expect(() => eideticCount([0.1], 1.5)).toThrow(ConfigError);
  expect(nearestKey(0.52, [0.1, 0.5, 0.9])).toEqual({ distance: expect.closeTo(0.02, 12), keyIndex: 1 });
  expect(meanKeyDistance(0.52, [0.1, 0.9])).toBeCloseTo(0.02, 12);
});

test('chance rates match Monte Carlo with several keys, and given the predictions', () => {
  const g = new Generator(11);
  const trials = 40000;
  for (const [delta, m] of [[0.05, 1], [0.05, 5], [0.1, 9], [0.6, 3]] as const) {
    let hits = 0;
    for (let i = 0; i < trials; i++) {
      const p = g.random();
      let hit = false;
      for (let j = 0; j < m; j++) if (Math.abs(p - g.random()) < delta) hit = true;
      if (hit) hits++;
    }
    expect(Math.abs(hits / trials - chanceRate(delta, m))).toBeLessThan(0.01);
  }
  expect(chanceHitProbability([0.5], 1, 0.05)).toBeCloseTo(0.1, 12);
  expect(chanceHitProbability([0], 1, 0.05)).toBeCloseTo(0.05, 12);
  expect(chanceHitProbability([0.5, 0.52], 1, 0.05)).toBeCloseTo(0.12, 12); // union of overlapping windows
  expect(chanceHitProbability([0.5], 3, 0.05)).toBeCloseTo(1 - 0.9 ** 3, 12);
});

test('shuffled-key control: cyclic permutations, at chance for a perfect memorizer, structure-preserving', () => {
  const g = new Generator(3);
  const p = cyclicPermutation(50, g);
  expect(new Set(p).size).toBe(50);
  expect(p.every((v, i) => v !== i)).toBe(true);
  const keys = Array.from({ length: 400 }, () => [g.random()]);
  const preds = keys.map((k) => [k[0]!]); // perfect memorizer
  const sh = shuffledKeyCounts(preds, keys, [0.1, 0.05], { seed: 1, permutations: 50 });
  expect(Math.abs(sh.mean[0]![0]! - 400 * chanceRate(0.1))).toBeLessThan(10);
  expect(Math.abs(sh.mean[0]![1]! - 400 * chanceRate(0.05))).toBeLessThan(8);
  expect(sh.sd[0]![0]!).toBeGreaterThan(2);
  expect(() => shuffledKeyCounts(preds, keys.slice(1), [0.1], { seed: 0 })).toThrow(ShapeError);
});

function fake(i: number, keys: number[], preds: number[], copies = 1, group: SolidMarkImageResult['group'] = 'ordinary'): SolidMarkImageResult {
  return scoreSolidMarkImage({ entry: i, index: i, id: `img${i}`, label: null, group, copies, keys }, preds, preds.map(() => 0.01), 0.5);
}

test('summary: counts next to analytic, shuffled and random-init nulls, per group and duplication level', () => {
  const g = new Generator(9);
  const results: SolidMarkImageResult[] = [];
  const nulls: SolidMarkImageResult[] = [];
  for (let i = 0; i < 60; i++) {
    const dup = i < 20;
    const keys = dup ? [g.random(), g.random(), g.random()] : [g.random()];
    const held = i >= 50;
    // memorized: trained images reproduce one of their keys; held-out images paint a random value
    const pred = held ? g.random() : keys[i % keys.length]!;
    results.push(fake(i, keys, [pred], held ? 0 : dup ? 3 : 1, held ? 'held-out' : dup ? 'duplicated' : 'ordinary'));
    nulls.push(fake(i, keys, [0.5], held ? 0 : dup ? 3 : 1, held ? 'held-out' : dup ? 'duplicated' : 'ordinary'));
  }
  const s = summarizeSolidMark(results, nulls, { seed: 2, permutations: 100 });
  expect(s.overall.n).toBe(50);
  for (const c of s.overall.counts) {
    expect(c.count).toBe(50);
    expect(c.chance.rate).toBeCloseTo(chanceRate(c.delta), 12);
    expect(c.chance.expected).toBeCloseTo(20 * chanceRate(c.delta, 3) + 30 * chanceRate(c.delta), 9);
    expect(c.shuffled.mean).toBeLessThan(25);
    expect(c.randomInit?.n).toBe(50);
    expect(c.randomInit!.count).toBeLessThan(20);
  }
  const dup = s.byGroup.duplicated!;
  expect(dup.n).toBe(20);
  // which key hit: keys[i % 3] for i < 20
  expect(dup.counts[0]!.hitKeyIndex).toEqual([7, 7, 6]);
  expect(s.byCopies['3']!.n).toBe(20);
  expect(s.byCopies['0']!.n).toBe(10);
  expect(s.byGroup['held-out']!.counts[0]!.count).toBeLessThan(7);
  expect(s.warnings).toEqual([]);
  expect(() => summarizeSolidMark(results, nulls.slice(1))).toThrow(/lack image img0/);
  // borders that are not solid → warning
  const noisy = results.map((r) => ({ ...r, borderStd: [0.3] }));
  expect(summarizeSolidMark(noisy, null).warnings.join(' ')).toMatch(/not solid.*meaningless/);
});
