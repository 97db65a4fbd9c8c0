// The pluggable replication tests of the verification step.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, ShapeError, type ImageBatch } from '@diffmem/core';
import { ReferenceIndex } from '../../reference_index.js';
import {
  embeddingReplicationTest,
  nl2ReplicationTest,
  replicationPassed,
  replicationTestFromSpec,
  rmsReplicationTest,
  type ReplicationEmbedder,
} from '../replication.js';
import { randomImages } from './helpers.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

const flatEmbedder: ReplicationEmbedder = {
  name: 'flat',
  embed: (x) => tf.tidy(() => tf.reshape(tf.sub(x, 0.5), [x.shape[0], -1]) as tf.Tensor2D),
};

test('rms: per-sample RMS distance, pass iff every sample is within τ', async () => {
  const imgs = randomImages(3, 1) as ImageBatch<'display'>;
  const target = tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]) as ImageBatch<'display'>;
  const samples = tf.concat([target, tf.clipByValue(tf.add(target, 0.01), 0, 1), tf.slice(imgs, [1, 0, 0, 0], [1, -1, -1, -1])]) as ImageBatch<'display'>;
  const t = rmsReplicationTest({ threshold: 0.05 });
  const v = await t.score(target, samples);
  expect(v[0]).toBe(0);
  expect(v[1]).toBeLessThanOrEqual(0.0101);
  expect(v[2]).toBeGreaterThan(0.2);
  expect(replicationPassed(t, v)).toBe(false);
  expect(replicationPassed(t, v.slice(0, 2))).toBe(true);
  expect(replicationPassed(t, [NaN])).toBe(false);
  expect(() => rmsReplicationTest({ threshold: 0 })).toThrow(ConfigError);
  tf.dispose([imgs, target, samples]);
});

test('embedding: dot product of normalised descriptors, pass iff min ≥ β; bad embedders are caught', async () => {
  const imgs = randomImages(2, 2) as ImageBatch<'display'>;
  const target = tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]) as ImageBatch<'display'>;
  const before = tf.memory().numTensors;
  const t = embeddingReplicationTest({ embedder: flatEmbedder });
  expect(t).toMatchObject({ kind: 'similarity', threshold: 0.5, name: 'embedding:flat' });
  const v = await t.score(target, imgs);
  expect(v[0]).toBeCloseTo(1, 5);
  expect(Math.abs(v[1] as number)).toBeLessThan(0.5);
  expect(replicationPassed(t, v)).toBe(false);
  expect(tf.memory().numTensors).toBe(before);
  const bad = embeddingReplicationTest({ embedder: { embed: () => tf.zeros([1, 4]) as tf.Tensor2D } });
  await expect(bad.score(target, imgs)).rejects.toThrow(ShapeError);
  expect(tf.memory().numTensors).toBe(before);
  expect(() => embeddingReplicationTest({} as never)).toThrow(ConfigError);
  tf.dispose([imgs, target]);
});

test('nl2: distance to the target over α × the mean distance to the sample’s k nearest training images', async () => {
  const train = randomImages(6, 3) as ImageBatch<'display'>;
  const index = ReferenceIndex.fromImages(train);
  const t = nl2ReplicationTest({ index, threshold: 0.1, k: 3, alpha: 0.5 });
  const target = tf.slice(train, [0, 0, 0, 0], [1, -1, -1, -1]) as ImageBatch<'display'>;
  const samples = tf.slice(train, [0, 0, 0, 0], [2, -1, -1, -1]) as ImageBatch<'display'>;
  const v = await t.score(target, samples);
  expect(v[0]).toBe(0);
  // sample 1 is training image 1: its neighbourhood mean includes itself (0) and two others
  const d = tf.tidy(() => Array.from(tf.sqrt(tf.mean(tf.square(tf.sub(train, tf.slice(train, [1, 0, 0, 0], [1, -1, -1, -1]))), [1, 2, 3])).dataSync()));
  const knn = d.slice().sort((a, b) => a - b).slice(0, 3);
  expect(v[1]).toBeCloseTo((d[0] as number) / (0.5 * (knn.reduce((a, b) => a + b, 0) / 3)), 4);
  tf.dispose([train, target, samples]);
  index.dispose();
});

test('specs: rms and the weight-free copy descriptor build, unknown kinds and bad modules are ConfigErrors', async () => {
  const t = await replicationTestFromSpec({ kind: 'rms', threshold: 0.1 });
  expect(t).toMatchObject({ name: 'rms-l2', kind: 'distance', threshold: 0.1 });
  const cd = await replicationTestFromSpec({ kind: 'copy-descriptor', threshold: 0.9 });
  expect(cd).toMatchObject({ name: 'embedding:diffmem-copy-descriptor-v1', kind: 'similarity', threshold: 0.9 });
  const imgs = randomImages(2, 7, 32, 3) as ImageBatch<'display'>;
  const target = tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]) as ImageBatch<'display'>;
  const v = await cd.score(target, imgs);
  expect(v[0]).toBeCloseTo(1, 4);
  expect(v[1]).toBeLessThan(0.99);
  tf.dispose([imgs, target]);
  await expect(replicationTestFromSpec({ kind: 'copy-descriptor' } as never)).rejects.toThrow(ConfigError);
  await expect(replicationTestFromSpec({ kind: 'sscd' } as never)).rejects.toThrow(ConfigError);
  await expect(replicationTestFromSpec({ kind: 'module', module: 'node:path', fn: 'nope' })).rejects.toThrow(/no exported function "nope"/);
  await expect(replicationTestFromSpec({ kind: 'module', module: 'node:path', fn: 'basename', arg: 'x' })).rejects.toThrow(/must return a ReplicationTest/);
});
