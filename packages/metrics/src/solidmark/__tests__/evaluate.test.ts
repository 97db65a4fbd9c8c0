import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { makeMemorizationSplit, subsetDataset, type ImageDataset } from '@diffmem/core';
import { chanceRate, makeMarkedTrainingSet, runSolidMarkEvaluation, type MarkedTrainingSet } from '../index.js';
import { ZeroEpsDenoiser, ddim, digits, memorizer } from './helpers.js';

const MARK = { kind: 'border', thickness: 2 } as const;
let all: ImageDataset;
let ds: ImageDataset;
let set: MarkedTrainingSet;
let otherSet: MarkedTrainingSet;
const scheduler = ddim();

beforeAll(async () => {
  await tf.setBackend('wasm');
  all = digits(8);
  // the audited dataset: the first 5 digits of each class; "other" images: the last 3 of each class
  const idx = (from: number, to: number) => all.records.flatMap((r, i) => (Number(r.id.split(':')[2]) >= from && Number(r.id.split(':')[2]) < to ? [i] : []));
  ds = subsetDataset(all, idx(0, 5), 'digits-a');
  const other = subsetDataset(all, idx(5, 8), 'digits-b');
  const membership = makeMemorizationSplit(ds, { duplicated: 6, copies: 4, ordinary: 30, heldOut: 10, seed: 3 });
  // a duplication study: half of the duplicated images twice, half four times
  membership.entries.filter((e) => e.group === 'duplicated').slice(0, 3).forEach((e) => (e.copies = 2));
  set = makeMarkedTrainingSet(ds, { seed: 42, membership, mark: MARK, freshKeyPerCopy: true });
  otherSet = makeMarkedTrainingSet(other, { seed: 7, mark: MARK });
  other.images.dispose();
});
afterAll(() => {
  tf.dispose([all.images, ds.images, set.images, otherSet.images]);
});

test('evidence runner: a class-conditional memorizing model is far above all three nulls; a model trained on other images is at chance', async () => {
  const model = memorizer(set.images, scheduler.alphasCumprod, set.labels, 10);
  const randomLike = memorizer(otherSet.images, scheduler.alphasCumprod, otherSet.labels, 10);
  const lines: string[] = [];
  const before = tf.memory().numTensors;
  const { report, text } = await runSolidMarkEvaluation({
    denoiser: model,
    nullDenoiser: randomLike,
    scheduler,
    numInferenceSteps: 15,
    dataset: ds,
    keymap: set.keymap,
    batchSize: 16,
    seed: 1,
    log: (l) => lines.push(l),
  });
  expect(tf.memory().numTensors).toBe(before);
  if (process.env['SOLIDMARK_PRINT']) console.log(text);
  const o = report.summary.overall;
  expect(o.n).toBe(36);
  const [c10, c05, c005] = o.counts as [typeof o.counts[0], typeof o.counts[0], typeof o.counts[0]];
  expect(c005.count).toBeGreaterThanOrEqual(27); // chance: 0.4
  expect(c10.count).toBeGreaterThan(c10.shuffled.mean + 5 * c10.shuffled.sd);
  // the model trained on other images (keys of other images) is at chance
  for (const c of [c10, c05, c005]) {
    const mu = 3 * chanceRate(c.delta, 2) + 3 * chanceRate(c.delta, 4) + 30 * chanceRate(c.delta);
    expect(c.randomInit!.count).toBeLessThanOrEqual(mu + 3 * Math.sqrt(mu) + 1);
  }
  expect(report.summary.byGroup['held-out']!.counts[2]!.count).toBeLessThanOrEqual(1);
  expect(Object.keys(report.summary.byCopies).sort()).toEqual(['0', '1', '2', '4']);
  expect(report.summary.byCopies['2']!.n).toBe(3);
  expect(text).toMatch(/Trained images \(copies ≥ 1\) — N = 36/);
  expect(text).toMatch(/chance 2δ−δ²/);
  expect(text).toMatch(/shuffled keys/);
  expect(text).toMatch(/Duplication group: 2 copies — N = 3/);
  expect(text).toMatch(/Duplication group: 4 copies — N = 3/);
  expect(text).not.toMatch(/Duplication group: 0 copies/);
  expect(text).toMatch(/which key hit at δ = 0.005/);
  expect(text).toMatch(/Time per image: model \d/);
  expect(lines.some((l) => l.startsWith('[random-init]'))).toBe(true);
  model.dispose();
  randomLike.dispose();
});

test('evidence runner on a blind model (ε̂ ≡ 0) reports counts at chance and flags its borders', async () => {
  const { report, text } = await runSolidMarkEvaluation({
    denoiser: new ZeroEpsDenoiser(32, 1, 11),
    scheduler,
    numInferenceSteps: 10,
    dataset: all, // a superset in another order: images are found by id
    keymap: set.keymap,
    groups: ['ordinary'],
    batchSize: 30,
    seed: 1,
  });
  const c = report.summary.overall.counts[0]!;
  expect(c.n).toBe(30);
  // k̂ ≈ 0.5 whatever the key: chance given the predictions is ≈ 2δ per image
  expect(Math.abs(c.count - c.chance.givenPredictions)).toBeLessThanOrEqual(3 * Math.sqrt(c.chance.givenPredictions) + 1);
  expect(c.randomInit).toBeNull();
  expect(text).toMatch(/WARNING: .*not solid/);
  expect(text).toMatch(/no random-init model was given/);
});
