import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  ConfigError,
  encodePng,
  groupIndices,
  InputError,
  loadDigitsSheet,
  loadEmbeddedDigits,
  loadImageFolder,
  loadMembership,
  makeMemorizationSplit,
  readImageFile,
  saveMembership,
  subsetDataset,
  trainingIndices,
} from '../../index.js';
import { SHARED_DATA_MISSING, sharedDataDir } from '../../testing/index.js';

const shared = sharedDataDir();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-data-'));
beforeAll(async () => {
  await tf.setBackend('wasm');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function png(file: string, w: number, h: number, v: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, encodePng(new Uint8Array(w * h).fill(v), w, h, 1));
}

describe('real data', () => {
  (shared ? test : test.skip)(`OpenCV digits sheet: 500 per class in row order ${shared ? '' : SHARED_DATA_MISSING}`, () => {
    const ds = loadDigitsSheet(path.join(shared as string, 'digits.png'), { perClass: 3, classes: [0, 7], size: 32 });
    expect(ds.images.shape).toEqual([6, 32, 32, 1]);
    expect(ds.records.map((r) => r.label)).toEqual([0, 0, 0, 7, 7, 7]);
    // pad keeps a 6-pixel black border around the 20x20 tile and some ink inside
    const v = ds.images.arraySync();
    expect(v[0]?.[0]?.[0]?.[0]).toBe(0);
    const ink = tf.sum(ds.images).dataSync()[0] as number;
    expect(ink).toBeGreaterThan(6 * 20);
    ds.images.dispose();
    expect(() => loadDigitsSheet(path.join(shared as string, 'fruits.jpg'))).toThrow(/2000x1000/);
  });

  (shared ? test : test.skip)(`JPEG photo decodes to display space ${shared ? '' : SHARED_DATA_MISSING}`, () => {
    const im = readImageFile(path.join(shared as string, 'fruits.jpg'));
    expect(im.shape[2]).toBe(3);
    const [lo, hi] = [tf.min(im).dataSync()[0] as number, tf.max(im).dataSync()[0] as number];
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThanOrEqual(1);
    expect(hi - lo).toBeGreaterThan(0.5);
    im.dispose();
  });
});

test('embedded MNIST digits work offline', () => {
  const ds = loadEmbeddedDigits({ perClass: 2, size: 32 });
  expect(ds.images.shape).toEqual([20, 32, 32, 1]);
  expect(ds.numClasses).toBe(10);
  expect(tf.max(ds.images).dataSync()[0]).toBeGreaterThan(0.9);
  ds.images.dispose();
});

test('image folders: labels from subfolders, fit modes and typed errors', () => {
  const root = path.join(tmp, 'folder');
  png(path.join(root, 'cats', 'a.png'), 8, 8, 255);
  png(path.join(root, 'dogs', 'b.png'), 8, 8, 0);
  const ds = loadImageFolder(root, { labelsFromSubfolders: true, channels: 1 });
  expect(ds.records).toEqual([
    { id: 'cats/a.png', label: 0 },
    { id: 'dogs/b.png', label: 1 },
  ]);
  ds.images.dispose();
  png(path.join(root, 'dogs', 'c.png'), 12, 12, 0);
  expect(() => loadImageFolder(root)).toThrow(/mixed or non-square sizes/);
  const resized = loadImageFolder(root, { size: 8, fit: 'resize' });
  expect(resized.images.shape).toEqual([3, 8, 8, 3]);
  resized.images.dispose();
  expect(() => loadImageFolder(root, { size: 8, fit: 'pad' })).toThrow(/larger than the 8x8/);
  const empty = path.join(tmp, 'empty');
  fs.mkdirSync(empty);
  expect(() => loadImageFolder(empty)).toThrow(InputError);
  expect(() => loadImageFolder(path.join(tmp, 'nope'))).toThrow(/does not exist/);
  fs.writeFileSync(path.join(root, 'cats', 'broken.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4, 5]));
  expect(() => loadImageFolder(root, { size: 8 })).toThrow(/broken.png could not be decoded/);
  fs.writeFileSync(path.join(root, 'cats', 'broken.png'), 'not an image');
  expect(() => loadImageFolder(root, { size: 8 })).toThrow(/not a PNG or JPEG/);
});

test('memorization split: disjoint, class balanced, copies expanded, saved and validated', () => {
  const ds = loadEmbeddedDigits({ perClass: 10, size: 28 });
  const m = makeMemorizationSplit(ds, { duplicated: 10, copies: 5, ordinary: 20, heldOut: 10, seed: 1 });
  const all = m.entries.map((e) => e.index);
  expect(new Set(all).size).toBe(40);
  expect(new Set(groupIndices(m, 'duplicated').map((i) => ds.records[i]?.label)).size).toBe(10);
  expect(trainingIndices(m)).toHaveLength(10 * 5 + 20);
  const again = makeMemorizationSplit(ds, { duplicated: 10, copies: 5, ordinary: 20, heldOut: 10, seed: 1 });
  expect(again).toEqual(m);
  const file = path.join(tmp, 'membership.json');
  saveMembership(file, m);
  expect(loadMembership(file)).toEqual(m);
  fs.writeFileSync(file, '{"format":"x"}');
  expect(() => loadMembership(file)).toThrow(/not a diffmem membership/);
  expect(() => makeMemorizationSplit(ds, { duplicated: 90, copies: 1, ordinary: 20, heldOut: 0, seed: 1 })).toThrow(ConfigError);
  const sub = subsetDataset(ds, groupIndices(m, 'held-out'));
  expect(sub.images.shape[0]).toBe(10);
  tf.dispose([ds.images, sub.images]);
});

test('memorization split: duplicated images drawn only from duplicatedClasses, the rest from every class', () => {
  const ds = loadEmbeddedDigits({ perClass: 10, size: 28 });
  const m = makeMemorizationSplit(ds, { duplicated: 6, copies: 50, ordinary: 30, heldOut: 10, seed: 3, duplicatedClasses: [2, 7] });
  const dupLabels = groupIndices(m, 'duplicated').map((i) => ds.records[i]?.label);
  expect(new Set(dupLabels)).toEqual(new Set([2, 7]));
  expect(dupLabels.filter((l) => l === 2)).toHaveLength(3);
  // Ordinary images keep the round-robin order (skipping the images already taken): 9 classes in 30.
  expect(new Set(groupIndices(m, 'ordinary').map((i) => ds.records[i]?.label)).size).toBeGreaterThanOrEqual(9);
  expect(new Set(m.entries.map((e) => e.index)).size).toBe(46);
  expect(() => makeMemorizationSplit(ds, { duplicated: 21, copies: 2, ordinary: 0, heldOut: 0, seed: 3, duplicatedClasses: [2, 7] })).toThrow(
    /hold 20 images; 21 duplicated/,
  );
  expect(() => makeMemorizationSplit(ds, { duplicated: 1, copies: 2, ordinary: 0, heldOut: 0, seed: 3, duplicatedClasses: [10] })).toThrow(
    /class 10 is not one of/,
  );
  const ex = makeMemorizationSplit(ds, { duplicated: 2, copies: 20, ordinary: 40, heldOut: 10, seed: 3, duplicatedClasses: [2, 7], duplicatedClassesExclusive: true });
  const labelsOf = (g: 'duplicated' | 'ordinary' | 'held-out'): Set<number | null | undefined> => new Set(groupIndices(ex, g).map((i) => ds.records[i]?.label));
  expect(labelsOf('duplicated')).toEqual(new Set([2, 7]));
  expect(labelsOf('ordinary').has(2) || labelsOf('ordinary').has(7)).toBe(false);
  expect(labelsOf('ordinary').size).toBe(8);
  expect(() => makeMemorizationSplit(ds, { duplicated: 2, copies: 2, ordinary: 81, heldOut: 0, seed: 3, duplicatedClasses: [2, 7], duplicatedClassesExclusive: true })).toThrow(
    /outside duplicatedClasses hold 80 images/,
  );
  expect(() => makeMemorizationSplit(ds, { duplicated: 2, copies: 2, ordinary: 1, heldOut: 0, seed: 3, duplicatedClassesExclusive: true })).toThrow(/needs duplicatedClasses/);
  ds.images.dispose();
});
