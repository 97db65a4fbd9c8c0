import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, ValueRangeError, makeMemorizationSplit, trainDiffusionModel, type ImageDataset, type TrainableDenoiser } from '@diffmem/core';
import {
  KeymapError,
  SOLIDMARK_KEYMAP_FILE,
  loadSolidMarkKeymap,
  makeMarkedTrainingSet,
  makeSolidMarkKeymap,
  parseSolidMarkKeymap,
  saveSolidMarkKeymap,
} from '../index.js';
import { ddpm, digits } from './helpers.js';

let ds: ImageDataset;
let tmp: string;
beforeAll(async () => {
  await tf.setBackend('wasm');
  ds = digits(3); // 30 real MNIST digits, 28 px, labelled
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'solidmark-ds-'));
});
afterAll(() => {
  ds.images.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const split = () => makeMemorizationSplit(ds, { duplicated: 3, copies: 4, ordinary: 10, heldOut: 5, seed: 1 });

test('keymap: seeded, keys on the 2^-24 grid in [0,1), one per copy with fresh keys, a control key for held-out images', () => {
  const m = split();
  const a = makeSolidMarkKeymap(m, { seed: 42, imageSize: 28, channels: 1, freshKeyPerCopy: true, mark: { kind: 'border', thickness: 2 } });
  const b = makeSolidMarkKeymap(m, { seed: 42, imageSize: 28, channels: 1, freshKeyPerCopy: true, mark: { kind: 'border', thickness: 2 } });
  const c = makeSolidMarkKeymap(m, { seed: 43, imageSize: 28, channels: 1, freshKeyPerCopy: true, mark: { kind: 'border', thickness: 2 } });
  expect(a).toEqual(b);
  expect(a.entries.map((e) => e.keys)).not.toEqual(c.entries.map((e) => e.keys));
  for (const e of a.entries) {
    expect(e.keys.length).toBe(e.group === 'duplicated' ? 4 : 1);
    for (const k of e.keys) {
      expect(k).toBeGreaterThanOrEqual(0);
      expect(k).toBeLessThan(1);
      expect(Number.isInteger(k * 2 ** 24)).toBe(true);
    }
  }
  expect(a.entries.filter((e) => e.group === 'held-out')).toHaveLength(5);
  expect(a.keySpace).toBe('display');
  const shared = makeSolidMarkKeymap(m, { seed: 42, imageSize: 28, channels: 1 });
  expect(shared.entries.every((e) => e.keys.length === 1)).toBe(true);
  expect(shared.mark).toEqual({ kind: 'border', thickness: 16 });
});

test('marked training set with fresh keys per copy: distinct rows per copy, border = 2k − 1 in model space, labels', () => {
  const m = split();
  const before = tf.memory().numTensors;
  const set = makeMarkedTrainingSet(ds, { seed: 42, membership: m, freshKeyPerCopy: true, mark: { kind: 'border', thickness: 2 } });
  expect(tf.memory().numTensors).toBe(before + 1);
  expect(set.images.shape).toEqual([3 * 4 + 10, 32, 32, 1]);
  expect(set.trainIndices).toEqual(Array.from({ length: 22 }, (_, i) => i));
  expect(set.labels).toHaveLength(22);
  expect(set.numClasses).toBe(10);
  const px = set.images.arraySync() as number[][][][];
  set.rows.forEach((r, i) => {
    expect(px[i]![0]![0]![0]).toBe(2 * r.key - 1);
    expect(px[i]![31]![17]![0]).toBe(2 * r.key - 1);
    expect(set.labels![i]).toBe(ds.records[r.index]!.label);
    const e = set.keymap.entries[r.entry]!;
    expect(e.keys[r.copy]).toBe(r.key);
  });
  // the image content is the dataset image in model space
  const src = ds.images.arraySync() as number[][][][];
  const r0 = set.rows[0]!;
  expect(px[0]![2 + 10]![2 + 14]![0]).toBeCloseTo(2 * src[r0.index]![10]![14]![0]! - 1, 6);
  // copies of a duplicated image differ only in their border
  const dupRows = set.rows.filter((r) => r.entry === 0);
  expect(new Set(dupRows.map((r) => r.key)).size).toBe(4);
  expect(set.extraFiles[SOLIDMARK_KEYMAP_FILE]).toBe(set.keymap);
  set.images.dispose();
});

test('marked training set with one key per image repeats duplicates in trainIndices; whole dataset by default', () => {
  const set = makeMarkedTrainingSet(ds, { seed: 3, membership: split(), mark: { kind: 'border', thickness: 2 } });
  expect(set.images.shape[0]).toBe(13);
  expect(set.trainIndices).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  set.images.dispose();
  const all = makeMarkedTrainingSet(ds, { seed: 3, mark: { kind: 'center', side: 4, padding: 0 } });
  expect(all.images.shape).toEqual([30, 28, 28, 1]);
  expect(all.keymap.entries.every((e) => e.copies === 1 && e.group === 'ordinary')).toBe(true);
  // reusing the keymap rebuilds the same set
  const again = makeMarkedTrainingSet(ds, { seed: 999, keymap: all.keymap });
  expect(again.rows).toEqual(all.rows);
  expect(tf.max(tf.abs(tf.sub(again.images, all.images))).dataSync()[0]).toBe(0);
  tf.dispose([all.images, again.images]);
});

test('keymap JSON round trip, stored by the trainer as a checkpoint extra file', async () => {
  const set = makeMarkedTrainingSet(ds, { seed: 42, membership: split(), freshKeyPerCopy: true, mark: { kind: 'border', thickness: 2 } });
  const file = path.join(tmp, 'km.json');
  saveSolidMarkKeymap(file, set.keymap);
  expect(loadSolidMarkKeymap(file)).toEqual(set.keymap);
  // A tiny trainable denoiser (ε̂ = a·x + b) so the real trainer runs two steps on the marked set.
  const a = tf.variable(tf.scalar(0.5), true);
  const b = tf.variable(tf.scalar(0), true);
  const model: TrainableDenoiser = {
    info: { sampleSize: 32, inChannels: 1, outChannels: 1, numClassEmbeds: 11 },
    variables: new Map([['a', a], ['b', b]]),
    predict: (x) => tf.tidy(() => tf.add(tf.mul(x, a), b) as tf.Tensor4D),
  };
  const sched = ddpm();
  const res = await trainDiffusionModel(model, {
    images: set.images,
    trainIndices: set.trainIndices,
    labels: set.labels!,
    alphasCumprod: sched.alphasCumprod,
    batchSize: 4,
    maxSteps: 2,
    optimizer: { learningRate: 1e-3 },
    ema: false,
    seed: 0,
    checkpoint: { dir: path.join(tmp, 'ckpt'), every: 2, extraFiles: set.extraFiles },
  });
  expect(res.steps).toBe(2);
  const stored = loadSolidMarkKeymap(path.join(res.lastCheckpoint!, SOLIDMARK_KEYMAP_FILE));
  expect(stored).toEqual(set.keymap);
  tf.dispose([a, b, set.images]);
});

test('bad keymaps and mismatches are typed errors', () => {
  const km = makeSolidMarkKeymap(split(), { seed: 1, imageSize: 28, channels: 1, mark: { kind: 'border', thickness: 2 } });
  expect(() => parseSolidMarkKeymap({ format: 'x' })).toThrow(KeymapError);
  const bad = JSON.parse(JSON.stringify(km));
  bad.entries[0].keys = [1.2];
  expect(() => parseSolidMarkKeymap(bad)).toThrow(ValueRangeError);
  const dup = JSON.parse(JSON.stringify(km));
  dup.entries[1].id = dup.entries[0].id;
  expect(() => parseSolidMarkKeymap(dup)).toThrow(/appears twice/);
  const other = digits(3, [1, 2, 3]);
  expect(() => makeMarkedTrainingSet(other, { seed: 0, keymap: km })).toThrow(KeymapError);
  other.images.dispose();
  expect(() => makeMarkedTrainingSet(ds, { seed: 0, keymap: km, mark: { kind: 'border', thickness: 3 } })).toThrow(ConfigError);
  expect(() => makeMarkedTrainingSet(ds, { seed: 0, mark: { kind: 'border', thickness: 29 } })).toThrow(/thicker than the 28px/);
  expect(() => loadSolidMarkKeymap(path.join(tmp, 'missing.json'))).toThrow(KeymapError);
  fs.writeFileSync(path.join(tmp, 'bad.json'), '{');
  expect(() => loadSolidMarkKeymap(path.join(tmp, 'bad.json'))).toThrow(/not valid JSON/);
  const noTrain = split();
  noTrain.entries.forEach((e) => (e.copies = 0));
  expect(() => makeMarkedTrainingSet(ds, { seed: 0, membership: noTrain, mark: { kind: 'border', thickness: 2 } })).toThrow(ConfigError);
});
