import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, InputError, makeMemorizationSplit, toModelRange, type ImageBatch, type ImageDataset, type Membership } from '@diffmem/core';
import {
  KeymapError,
  UnmarkedModelError,
  auditSolidMark,
  chanceRate,
  makeMarkedTrainingSet,
  makeSolidMarkKeymap,
  type MarkedTrainingSet,
  type SolidMarkAuditOptions,
  type SolidMarkAuditReport,
} from '../index.js';
import { ZeroEpsDenoiser, ddim, digits, memorizer } from './helpers.js';

const MARK = { kind: 'border', thickness: 2 } as const;
let ds: ImageDataset;
let membership: Membership;
let set: MarkedTrainingSet;
let tmp: string;
let den: ReturnType<typeof memorizer>;
const scheduler = ddim();
const blind = new ZeroEpsDenoiser(32, 1);
let first: SolidMarkAuditReport;

beforeAll(async () => {
  await tf.setBackend('wasm');
  ds = digits(4); // 40 real MNIST digits
  membership = makeMemorizationSplit(ds, { duplicated: 4, copies: 3, ordinary: 20, heldOut: 8, seed: 2 });
  set = makeMarkedTrainingSet(ds, { seed: 42, membership, mark: MARK, freshKeyPerCopy: true });
  den = memorizer(set.images, scheduler.alphasCumprod);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'solidmark-audit-'));
});
afterAll(() => {
  ds.images.dispose();
  set.images.dispose();
  den.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const base = (over: Partial<SolidMarkAuditOptions> = {}): SolidMarkAuditOptions => ({
  denoiser: den,
  nullDenoiser: blind,
  scheduler,
  numInferenceSteps: 20,
  dataset: ds,
  keymap: set.keymap,
  membership,
  batchSize: 8,
  seed: 5,
  summary: { permutations: 100 },
  ...over,
});

test('a memorizing model recovers its keys far above every null; held-out keys and the blind model sit at chance', async () => {
  const before = tf.memory().numTensors;
  const progress: number[] = [];
  first = await auditSolidMark(base({ outDir: path.join(tmp, 'full'), onProgress: (p) => progress.push(p.done) }));
  expect(tf.memory().numTensors).toBe(before);
  expect(first.complete).toBe(true);
  expect(first.results).toHaveLength(32);
  expect(first.nullResults).toHaveLength(32);
  expect(progress.length).toBeGreaterThan(4);
  const o = first.summary.overall;
  expect(o.n).toBe(24);
  for (const c of o.counts) {
    // Replacement outpainting (no resampling, as the official code) sometimes commits the border
    // to a training image whose centre is close to the true one: ~20 of 24 keys, even at δ = 0.005.
    expect(c.count).toBeGreaterThanOrEqual(18);
    expect(c.count).toBeGreaterThan(c.shuffled.mean + 5 * Math.max(1, c.shuffled.sd));
    expect(c.shuffled.mean).toBeLessThan(24 * chanceRate(c.delta, 3) + 4);
    expect(c.count).toBeGreaterThan(c.randomInit!.count + 10);
    expect(c.randomInit!.count).toBeLessThanOrEqual(Math.ceil(24 * 2 * c.delta + 3 * Math.sqrt(24 * 2 * c.delta)) + 1);
    expect(c.count).toBeGreaterThan(3 * (c.chance.expected ?? Infinity));
  }
  expect(o.medianDistance).toBeLessThan(1e-4);
  // every image lands on *some* training key: a miss is another image's key, not a blend
  const allKeys = set.rows.map((r) => r.key);
  for (const r of first.results) expect(Math.min(...allKeys.map((k) => Math.abs(k - r.predictedKeys[0]!)))).toBeLessThan(1e-3);
  expect(first.summary.byGroup['held-out']!.counts[0]!.count).toBeLessThanOrEqual(5);
  // duplicated images with a fresh key per copy hit one of their keys
  const dup = first.summary.byGroup.duplicated!;
  expect(dup.counts[2]!.count).toBeGreaterThanOrEqual(3);
  expect(dup.counts[2]!.hitKeyIndex.reduce((a, b) => a + b, 0)).toBe(dup.counts[2]!.count);
  // the blind model's border is not a key: high std, flagged
  expect(first.summary.byGroup.ordinary!.highBorderStd).toBe(0);
  expect(first.nullResults!.every((r) => Math.max(...r.borderStd) > 0.15)).toBe(true);
  const files = fs.readdirSync(path.join(tmp, 'full', 'model'));
  expect(files).toHaveLength(32);
  expect(fs.existsSync(path.join(tmp, 'full', 'summary.json'))).toBe(true);
});

test('an interrupted audit loses nothing: a rerun skips finished images and reproduces the uninterrupted result', async () => {
  const dir = path.join(tmp, 'resume');
  const ctrl = new AbortController();
  const part = await auditSolidMark(base({ outDir: dir, signal: ctrl.signal, onProgress: () => ctrl.abort() }));
  expect(part.interrupted).toBe(true);
  expect(part.complete).toBe(false);
  expect(part.results).toHaveLength(8);
  expect(fs.readdirSync(path.join(dir, 'model'))).toHaveLength(8);
  expect(part.summary.warnings.join(' ')).toMatch(/incomplete audit/);
  const seen: string[] = [];
  const rest = await auditSolidMark(base({ outDir: dir, batchSize: 16, onProgress: (p) => p.role === 'model' && seen.push(...p.ids) }));
  expect(rest.complete).toBe(true);
  expect(rest.reused).toBe(8);
  expect(rest.computed).toBe(24 + 32);
  expect(seen).toHaveLength(24); // the trained model skipped the 8 finished images
  expect(seen.some((id) => part.results.some((r) => r.id === id))).toBe(false);
  // per-image streams: identical predictions whatever the batching and interruption
  expect(rest.results.map((r) => r.predictedKeys)).toEqual(first.results.map((r) => r.predictedKeys));
  expect(rest.nullResults!.map((r) => r.predictedKeys)).toEqual(first.nullResults!.map((r) => r.predictedKeys));
  const again = await auditSolidMark(base({ outDir: dir }));
  expect(again.computed).toBe(0);
  expect(again.reused).toBe(64);
  // a torn or foreign result file is recomputed, not trusted
  const victim = path.join(dir, 'model', fs.readdirSync(path.join(dir, 'model'))[3]!);
  fs.writeFileSync(victim, '{"id": "trunc');
  const healed = await auditSolidMark(base({ outDir: dir }));
  expect(healed.computed).toBe(1);
  expect(healed.results.map((r) => r.predictedKeys)).toEqual(first.results.map((r) => r.predictedKeys));
  await expect(auditSolidMark(base({ outDir: dir, numInferenceSteps: 10 }))).rejects.toMatchObject({ code: 'SOLIDMARK_AUDIT_MISMATCH' });
  await expect(auditSolidMark(base({ outDir: dir, seed: 6 }))).rejects.toThrow(InputError);
});

test('a model trained without marks is refused or flagged', async () => {
  await expect(auditSolidMark(base({ keymap: undefined }))).rejects.toMatchObject({ code: 'SOLIDMARK_NO_KEYMAP' });
  await expect(auditSolidMark(base({ keymap: null }))).rejects.toThrow(UnmarkedModelError);
  const noTrain = JSON.parse(JSON.stringify(set.keymap));
  noTrain.entries.forEach((e: { copies: number }) => (e.copies = 0));
  await expect(auditSolidMark(base({ keymap: noTrain, membership: undefined }))).rejects.toMatchObject({ code: 'SOLIDMARK_NO_TRAINED_KEYS' });
  // trained on the unmarked 28 px images
  const plain = toModelRange(ds.images);
  const unmarked = memorizer(plain, scheduler.alphasCumprod);
  await expect(auditSolidMark(base({ denoiser: unmarked, nullDenoiser: undefined }))).rejects.toMatchObject({ code: 'SOLIDMARK_UNMARKED_MODEL' });
  unmarked.dispose();
  plain.dispose();
  // trained on unmarked 32 px canvases with texture everywhere: the audit runs, but the borders are not solid
  const g = new Generator(4);
  const texture = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(g.uniformArray(40 * 32 * 32), [40, 32, 32, 1]), 2), 1)) as ImageBatch<'model'>;
  const textured = memorizer(texture, scheduler.alphasCumprod);
  const rep = await auditSolidMark(base({ denoiser: textured, nullDenoiser: undefined, limit: 6 }));
  expect(rep.summary.overall.highBorderStd).toBe(rep.summary.overall.n);
  expect(rep.summary.warnings.join(' ')).toMatch(/not solid.*trained without marks.*meaningless/);
  textured.dispose();
  texture.dispose();
});

test('inconsistent inputs are typed errors', async () => {
  const other = makeSolidMarkKeymap(makeMemorizationSplit(ds, { duplicated: 0, copies: 1, ordinary: 10, heldOut: 0, seed: 9 }), {
    seed: 1,
    imageSize: 28,
    channels: 1,
    mark: MARK,
  });
  await expect(auditSolidMark(base({ keymap: other }))).rejects.toThrow(KeymapError); // membership disagrees
  await expect(auditSolidMark(base({ nullDenoiser: new ZeroEpsDenoiser(32, 1, 10) }))).rejects.toThrow(ConfigError);
  await expect(auditSolidMark(base({ entries: [99] }))).rejects.toThrow(ConfigError);
  await expect(auditSolidMark(base({ repeats: 0 }))).rejects.toThrow(ConfigError);
  const thick = JSON.parse(JSON.stringify(set.keymap));
  thick.mark = { kind: 'border', thickness: 3 };
  await expect(auditSolidMark(base({ keymap: thick, membership: undefined }))).rejects.toThrow(/keymap's marked canvases are 34px/);
});
