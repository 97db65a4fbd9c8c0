import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Generator } from '../../random.js';
import type { ImageBatch } from '../../tensor/types.js';
import { CheckpointError, latestCheckpoint, trainDiffusionModel, type TrainableDenoiser, type TrainOptions } from '../trainer.js';

// A tiny but real denoiser: per-channel affine maps of x_t plus a timestep- and class-dependent
// bias; enough parameters for the loop, optimizer, EMA and checkpoints to be exercised exactly.
function tinyDenoiser(seed: number, classes = 0): TrainableDenoiser {
  const g = new Generator(seed);
  const v = (name: string, shape: number[]): tf.Variable =>
    tf.tidy(() => tf.variable(tf.tensor(g.normalArray(shape.reduce((a, b) => a * b, 1)), shape), true, `${name}_${seed}_${Math.random()}`));
  const variables = new Map<string, tf.Variable>([
    ['scale', v('scale', [1, 1, 1, 2])],
    ['bias', v('bias', [1, 1, 1, 2])],
    ['temb', v('temb', [1, 1, 1, 2])],
  ]);
  if (classes) variables.set('class_embedding.weight', v('cls', [classes, 2]));
  return {
    info: { sampleSize: 4, inChannels: 2, outChannels: 2, numClassEmbeds: classes || null },
    variables,
    predict(x, t, labels) {
      return tf.tidy(() => {
        const tt = typeof t === 'number' ? tf.fill([x.shape[0]], t) : tf.cast(t, 'float32');
        const tb = tf.mul(tf.reshape(tf.sin(tf.div(tt, 100)), [-1, 1, 1, 1]), variables.get('temb') as tf.Variable);
        let out = tf.add(tf.mul(x, variables.get('scale') as tf.Variable), tf.add(variables.get('bias') as tf.Variable, tb));
        if (classes && labels) {
          const e = tf.gather(variables.get('class_embedding.weight') as tf.Variable, labels);
          out = tf.add(out, tf.reshape(e, [-1, 1, 1, 2]));
        }
        return out as tf.Tensor4D;
      });
    },
  };
}

const alphasCumprod = (() => {
  const a = new Float32Array(100);
  let c = 1;
  for (let i = 0; i < 100; i++) a[i] = c = Math.fround(c * Math.fround(1 - (1e-4 + (0.02 - 1e-4) * i / 99)));
  return a;
})();

let tmp: string;
let images: ImageBatch<'model'>;
beforeAll(async () => {
  await tf.setBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-train-'));
  images = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(new Generator(5).uniformArray(6 * 4 * 4 * 2), [6, 4, 4, 2]), 2), 1)) as ImageBatch<'model'>;
});
afterAll(() => {
  images.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const base = (dir: string): TrainOptions => ({
  images,
  trainIndices: [0, 0, 0, 1, 2, 3],
  labels: Int32Array.from([0, 1, 2, 0, 1, 2]),
  classDropout: 0.2,
  nullClassId: 3,
  alphasCumprod,
  batchSize: 3,
  maxSteps: 8,
  optimizer: { kind: 'adamw', learningRate: 0.05 },
  warmupSteps: 2,
  ema: { decay: 0.9 },
  randomFlip: true,
  seed: 11,
  logEvery: 2,
  checkpoint: { dir, every: 4, modelConfig: { kind: 'tiny' }, extraFiles: { 'membership.json': { ok: true } } },
});

const weights = (m: TrainableDenoiser): number[][] => [...m.variables.values()].map((v) => Array.from(v.dataSync()));

test('loss falls, progress is reported, memory is flat', async () => {
  const m = tinyDenoiser(1, 4);
  const seen: number[] = [];
  const before = tf.memory().numTensors;
  const r = await trainDiffusionModel(m, { ...base(path.join(tmp, 'a')), maxSteps: 60, onProgress: (p) => seen.push(p.step) });
  r.ema?.dispose();
  expect(tf.memory().numTensors).toBe(before);
  expect(seen.at(-1)).toBe(60);
  const first = r.lossHistory[0]?.loss as number;
  const last = r.lossHistory.at(-1)?.loss as number;
  expect(last).toBeLessThan(first);
  expect(fs.readFileSync(path.join(latestCheckpoint(path.join(tmp, 'a')) as string, 'membership.json'), 'utf8')).toContain('true');
  m.variables.forEach((v) => v.dispose());
});

test('an interrupted run resumes exactly where it stopped', async () => {
  const full = tinyDenoiser(2, 4);
  (await trainDiffusionModel(full, base(path.join(tmp, 'full')))).ema?.dispose();

  const part = tinyDenoiser(2, 4);
  const ac = new AbortController();
  const r1 = await trainDiffusionModel(part, {
    ...base(path.join(tmp, 'part')),
    onProgress: (p) => {
      if (p.step === 6) ac.abort();
    },
    signal: ac.signal,
  });
  r1.ema?.dispose();
  expect(r1.interrupted).toBe(true);
  expect(r1.steps).toBe(6);
  // a fresh process: new model object with other initial weights, resume from disk
  const resumed = tinyDenoiser(99, 4);
  const r2 = await trainDiffusionModel(resumed, { ...base(path.join(tmp, 'part')), resume: true });
  r2.ema?.dispose();
  expect(r2.resumedFrom).toBe(6);
  expect(weights(resumed)).toEqual(weights(full));
  for (const m of [full, part, resumed]) m.variables.forEach((v) => v.dispose());
});

test('refuses to overwrite, to resume another config, or from a corrupt checkpoint', async () => {
  const dir = path.join(tmp, 'guard');
  const m = tinyDenoiser(3, 4);
  (await trainDiffusionModel(m, { ...base(dir), maxSteps: 4 })).ema?.dispose();
  await expect(trainDiffusionModel(m, base(dir))).rejects.toThrow(/already holds checkpoints.*nothing was overwritten/);
  const other = { ...base(dir), resume: true, checkpoint: { ...base(dir).checkpoint!, modelConfig: { kind: 'big' } } };
  await expect(trainDiffusionModel(m, other)).rejects.toThrow(/another model configuration/);
  const ck = latestCheckpoint(dir) as string;
  fs.writeFileSync(path.join(ck, 'training', 'weights.safetensors'), Buffer.from([1, 2, 3]));
  const err = await trainDiffusionModel(m, { ...base(dir), resume: true }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CheckpointError);
  expect(String(err)).toMatch(/corrupt/);
  fs.writeFileSync(path.join(ck, 'training', 'state.json'), '{');
  await expect(trainDiffusionModel(m, { ...base(dir), resume: true })).rejects.toThrow(/not JSON/);
  await expect(trainDiffusionModel(m, { ...base(path.join(tmp, 'x')), trainIndices: [] })).rejects.toThrow(/training set is empty/);
  await expect(trainDiffusionModel(m, { ...base(path.join(tmp, 'x')), labels: undefined })).rejects.toThrow(/classDropout needs/);
  m.variables.forEach((v) => v.dispose());
});
