// The evidence run (scripts/eval-invmm.mjs) end to end on a perfectly memorizing model of a
// duplicated training set: duplicated and ordinary training images are replicated, held-out
// images are not, and duplicated images need the least deviation from N(0, I).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { InputError, makeMemorizationSplit, type ImageDataset } from '@diffmem/core';
import { createEmpiricalInvMMModel, empiricalArgFromMembership } from '../empirical_model.js';
import { evaluateInvMMOnMembership, formatInvMMEvaluation, summarizeInvMMGroup } from '../evaluate.js';
import { rmsReplicationTest } from '../replication.js';
import { FAST, randomImages } from './helpers.js';

let ds: ImageDataset;
beforeAll(async () => {
  await tf.setBackend('wasm');
  const images = randomImages(12, 9);
  ds = { name: 'synthetic', images: images as never, records: Array.from({ length: 12 }, (_, i) => ({ id: `synthetic:${i}`, label: null })), numClasses: null };
});
afterAll(() => ds.images.dispose());

test('groups, AUCs and timing of a duplicated training run under the empirical (memorizing) model', async () => {
  const membership = makeMemorizationSplit(ds, { duplicated: 2, copies: 8, ordinary: 3, heldOut: 3, seed: 0 });
  const arg = empiricalArgFromMembership(membership, ds);
  expect(arg.shape[0]).toBe(2 * 8 + 3); // every copy is a training row
  const model = createEmpiricalInvMMModel(arg);
  const before = tf.memory().numTensors;
  const groupsSeen = new Set<string>();
  const e = await evaluateInvMMOnMembership({
    ...FAST,
    maxSteps: 40,
    model,
    membership,
    dataset: ds,
    perGroup: 2,
    replication: rmsReplicationTest({ threshold: 0.05 }),
    seed: 5,
    onProgress: (ev) => ev.type === 'image' && groupsSeen.add(ev.group),
  });
  expect(tf.memory().numTensors).toBe(before);
  model.dispose();
  expect([...groupsSeen].sort()).toEqual(['duplicated', 'held-out', 'ordinary']);
  expect(e.groups.duplicated).toMatchObject({ count: 2, replicated: 2 });
  expect(e.groups.ordinary).toMatchObject({ count: 2, replicated: 2 });
  expect(e.groups['held-out']).toMatchObject({ count: 2, replicated: 0, notReplicated: 2, median: Infinity });
  expect(e.auc.duplicatedVsHeldOut).toBe(1);
  expect(e.auc.duplicatedVsOrdinary).toBe(1); // 8 copies → a larger basin → smaller KL
  expect(e.medianSecondsPerImage).toBeGreaterThan(0);
  expect(e.records.map((r) => r.group)).toEqual(['duplicated', 'duplicated', 'ordinary', 'ordinary', 'held-out', 'held-out']);
  const text = formatInvMMEvaluation(e);
  expect(text).toMatch(/AUC duplicated vs ordinary: 1\.000 +duplicated vs held-out: 1\.000/);
  expect(text).toMatch(/held-out +2 +0\/2 +∞/);
  expect(text).toMatch(/median time per image: [0-9.]+ s/);
});

test('summaries treat ∞ as the largest score; unknown ids are reported', async () => {
  const mk = (score: number, status: 'replicated' | 'not-replicated' | 'non-finite') => ({ score, status, steps: 1, seconds: 1 }) as never;
  const s = summarizeInvMMGroup('ordinary', [mk(0.2, 'replicated'), mk(Infinity, 'not-replicated'), mk(NaN, 'non-finite'), mk(0.1, 'replicated')]);
  expect(s).toMatchObject({ count: 4, replicated: 2, notReplicated: 1, nonFinite: 1, scores: [0.1, 0.2, Infinity], median: 0.2 });
  expect(s.meanFinite).toBeCloseTo(0.15, 12);
  expect(summarizeInvMMGroup('duplicated', [mk(0.2, 'replicated'), mk(Infinity, 'not-replicated')]).median).toBe(Infinity);
  const membership = makeMemorizationSplit(ds, { duplicated: 1, copies: 2, ordinary: 1, heldOut: 1, seed: 1 });
  membership.entries[0]!.id = 'elsewhere:0';
  const model = createEmpiricalInvMMModel(empiricalArgFromMembership(makeMemorizationSplit(ds, { duplicated: 1, copies: 2, ordinary: 1, heldOut: 1, seed: 1 }), ds));
  await expect(
    evaluateInvMMOnMembership({ ...FAST, model, membership, dataset: ds, perGroup: 1, replication: rmsReplicationTest({ threshold: 0.05 }), seed: 1 }),
  ).rejects.toThrow(InputError);
  model.dispose();
});
