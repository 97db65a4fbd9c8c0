// invertImage against known answers: core's EmpiricalDenoiser memorizes its training set
// perfectly, so training images must invert to a finite (small) KL, images off the training set
// must stay unreplicated (∞), and duplicated images need the smallest deviation from N(0, I).
import { tinyUNetConfig } from '@diffmem/core/testing';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  ConfigError,
  DDPMScheduler,
  EmpiricalDenoiser,
  NonFiniteError,
  ShapeError,
  UNet2DModel,
  ValueRangeError,
  saveUNet2DToFolder,
} from '@diffmem/core';
import { InvMMAbortedError, invertImage } from '../invert.js';
import { loadInvMMModelFromFolder } from '../model.js';
import { invmmScore } from '../objective.js';
import { rmsReplicationTest } from '../replication.js';
import { CH, FAST, S, empiricalModel, nanForClass, randomImages } from './helpers.js';

const rms = rmsReplicationTest({ threshold: 0.05 });
const nth = (t: tf.Tensor4D, i: number): tf.Tensor4D => tf.slice(t, [i, 0, 0, 0], [1, -1, -1, -1]);

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('invertImage on a perfectly memorizing model', () => {
  let imgs: tf.Tensor4D;
  let model: ReturnType<typeof empiricalModel>;
  beforeAll(() => {
    imgs = randomImages(4, 1);
    // image 0 appears 6 times in the training set (the papers' duplication setting)
    const train = tf.concat([imgs, ...Array.from({ length: 5 }, () => nth(imgs, 0))], 0) as tf.Tensor4D;
    model = empiricalModel(train);
    train.dispose();
  });
  afterAll(() => {
    imgs.dispose();
    model.dispose();
  });

  test('training images replicate with a finite KL, the duplicated one with the smallest; no tensor leaks', async () => {
    const before = tf.memory().numTensors;
    const scores: number[] = [];
    for (let i = 0; i < 4; i++) {
      const img = nth(imgs, i);
      const r = await invertImage(model, img, { ...FAST, replication: rms, seed: 7, id: `img${i}` });
      img.dispose();
      expect(r.status).toBe('replicated');
      expect(r.replicated).toBe(true);
      expect(Number.isFinite(r.score) && r.score > 0).toBe(true);
      // the score is the KL of the returned distribution, and equals the passing check's KL
      expect(r.score).toBeCloseTo(invmmScore(r.mu, r.logvar), 12);
      const last = r.checks[r.checks.length - 1]!;
      expect(last.passed).toBe(true);
      expect(last.kl).toBeCloseTo(r.score, 5);
      expect(Math.max(...last.similarities)).toBeLessThanOrEqual(0.05);
      expect(last.similarities).toHaveLength(8);
      // checkpoints at steps 4, 9, 14, … and the run stops at the first success
      r.checks.forEach((c, k) => expect(c.step).toBe(5 * k + 4));
      expect(r.steps).toBe(last.step + 1);
      expect(r.checks.slice(0, -1).every((c) => !c.passed)).toBe(true);
      expect(r.mu).toHaveLength(S * S * CH);
      expect(r.shape).toEqual([S, S, CH]);
      expect(r.replication).toEqual({ name: 'rms-l2', kind: 'distance', threshold: 0.05 });
      scores.push(r.score);
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(scores[0]).toBeLessThan(Math.min(...scores.slice(1)));
  });

  test('an image off the training set is never replicated: ∞ after the whole budget', async () => {
    const far = tf.fill([1, S, S, CH], 0.5) as tf.Tensor4D;
    const seen: number[] = [];
    const r = await invertImage(model, far, { ...FAST, maxSteps: 30, replication: rms, seed: 7, onCheck: (c) => seen.push(c.step) });
    far.dispose();
    expect(r.status).toBe('not-replicated');
    expect(r.score).toBe(Infinity);
    expect(r.steps).toBe(30);
    expect(seen).toEqual([4, 9, 14, 19, 24, 29]);
    expect(r.checks.every((c) => !c.passed && Math.max(...c.similarities) > 0.05)).toBe(true);
    // λ: +δ every step, halved at stalled checkpoints
    for (const c of r.checks) expect(c.lambdaNext).toBeCloseTo(c.stalled ? c.lambda / 2 : c.lambda + 1e-4, 12);
  });

  test('stopping a check at the first failing sample changes only the bookkeeping, not the result', async () => {
    const img = nth(imgs, 3);
    const full = await invertImage(model, img, { ...FAST, replication: rms, seed: 5, verification: { ...FAST.verification, stopAtFirstFailure: false } });
    const quick = await invertImage(model, img, { ...FAST, replication: rms, seed: 5, verification: { ...FAST.verification, chunkSize: 1 } });
    img.dispose();
    expect(quick.steps).toBe(full.steps);
    expect(quick.score).toBe(full.score);
    expect(Buffer.from(quick.mu.buffer).equals(Buffer.from(full.mu.buffer))).toBe(true);
    expect(full.checks.every((c) => c.similarities.length === 8)).toBe(true);
    full.checks.forEach((c, k) => {
      const q = quick.checks[k]!;
      expect(q.passed).toBe(c.passed);
      // the quick check saw a prefix of the same samples, up to and including the first failure
      expect(q.similarities).toEqual(c.similarities.slice(0, q.similarities.length));
      if (!c.passed) expect(q.similarities.length).toBe(c.similarities.findIndex((d) => d > 0.05) + 1);
    });
  });

  test('deterministic given the seed; the sum reduction is the mean × dimensions', async () => {
    const img = nth(imgs, 1);
    const a = await invertImage(model, img, { ...FAST, replication: rms, seed: 3 });
    const b = await invertImage(model, img, { ...FAST, replication: rms, seed: 3, scoreReduction: 'sum' });
    img.dispose();
    expect(Buffer.from(b.mu.buffer).equals(Buffer.from(a.mu.buffer))).toBe(true);
    expect(b.steps).toBe(a.steps);
    expect(b.score).toBeCloseTo(a.score * S * S * CH, 6);
  });
});

describe('class-conditional models', () => {
  let imgs: tf.Tensor4D;
  let model: ReturnType<typeof empiricalModel>;
  const labels = Int32Array.from([0, 0, 1, 1, 2, 2]);
  beforeAll(() => {
    imgs = randomImages(6, 2);
    model = empiricalModel(imgs, { labels, numClasses: 3 }); // numClassEmbeds = 4 (row 3 = null class)
  });
  afterAll(() => {
    imgs.dispose();
    model.dispose();
  });

  test('given label: replicated with the right class, ∞ with a wrong one', async () => {
    const img = nth(imgs, 2);
    const right = await invertImage(model, img, { ...FAST, replication: rms, seed: 1, label: 1 });
    const wrong = await invertImage(model, img, { ...FAST, maxSteps: 20, replication: rms, seed: 1, label: 2 });
    img.dispose();
    expect(right.status).toBe('replicated');
    expect(right.label).toBe(1);
    expect(wrong.status).toBe('not-replicated');
    expect(wrong.score).toBe(Infinity);
  });

  test('soft label: inverted jointly, the learned logits favour the true class', async () => {
    const img = nth(imgs, 4);
    const r = await invertImage(model, img, { ...FAST, maxSteps: 100, replication: rms, seed: 2, label: 'soft', softLabelClasses: 3 });
    img.dispose();
    expect(r.status).toBe('replicated');
    expect(r.label).toBeNull();
    const z = Array.from(r.classLogits!);
    expect(z).toHaveLength(3);
    expect(z.indexOf(Math.max(...z))).toBe(2);
  });

  test('several guidance scales: any passing scale is a success (the SD rule), every scale recorded', async () => {
    const img = nth(imgs, 0);
    const r = await invertImage(model, img, {
      ...FAST,
      replication: rms,
      seed: 4,
      label: 0,
      verification: { ...FAST.verification, guidanceScales: [1, 3] },
    });
    img.dispose();
    expect(r.status).toBe('replicated');
    for (const c of r.checks) {
      expect(c.perScale!.length).toBeGreaterThanOrEqual(1);
      expect(c.perScale![0]!.guidanceScale).toBe(1);
      expect(c.passed).toBe(c.perScale!.some((p) => p.passed));
    }
  });

  test('a NaN from the model stops the image with status non-finite (score NaN)', async () => {
    const bad = { denoiser: nanForClass(model.denoiser, 1), scheduler: model.scheduler };
    const img = nth(imgs, 2);
    const before = tf.memory().numTensors;
    const r = await invertImage(bad, img, { ...FAST, replication: rms, seed: 1, label: 1 });
    expect(tf.memory().numTensors).toBe(before);
    img.dispose();
    expect(r.status).toBe('non-finite');
    expect(r.replicated).toBe(false);
    expect(Number.isNaN(r.score)).toBe(true);
    expect(r.steps).toBe(1);
    expect(r.error).toMatch(/non-finite at step 0/);
  });

  test('label errors', async () => {
    const img = nth(imgs, 0);
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1 })).rejects.toThrow(/class-conditional.*pass label/);
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1, label: 9 })).rejects.toThrow(ValueRangeError);
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1, label: 'soft', softLabelClasses: 7 })).rejects.toThrow(ConfigError);
    img.dispose();
  });
});

describe('gradients reach μ and logvar only', () => {
  test('a UNet2DModel keeps its weights bit for bit while μ moves', async () => {
    const unet = UNet2DModel.fromConfig(tinyUNetConfig({ in_channels: 1, out_channels: 1 }), { seed: 1 });
    const weightsBefore = new Map([...unet.variables].map(([k, v]) => [k, Float32Array.from(v.dataSync() as Float32Array)]));
    const img = randomImages(1, 5);
    const before = tf.memory().numTensors;
    const r = await invertImage({ denoiser: unet, scheduler: new DDPMScheduler() as never }, img, {
      maxSteps: 4,
      batchSize: 2,
      checkEvery: 2,
      verification: { numInferenceSteps: 2, numSamples: 2 },
      replication: rms,
      seed: 1,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.steps).toBe(4);
    expect(r.checks).toHaveLength(2);
    expect(Math.max(...Array.from(r.mu, Math.abs))).toBeGreaterThan(0.05); // Adam moved μ (~lr per step)
    expect(Math.max(...Array.from(r.logvar, Math.abs))).toBeGreaterThan(0.05);
    for (const [k, v] of unet.variables) expect(Buffer.from((v.dataSync() as Float32Array).buffer).equals(Buffer.from(weightsBefore.get(k)!.buffer))).toBe(true);
    img.dispose();
    unet.dispose();
  });
});

describe('bad input', () => {
  let model: ReturnType<typeof empiricalModel>;
  let imgs: tf.Tensor4D;
  beforeAll(() => {
    imgs = randomImages(2, 3);
    model = empiricalModel(imgs);
  });
  afterAll(() => {
    imgs.dispose();
    model.dispose();
  });
  const opts = { ...FAST, replication: rms, seed: 1 };

  test('wrong size, batch, range or NaN pixels → typed errors naming the image', async () => {
    const big = randomImages(1, 1, 16);
    await expect(invertImage(model, big, opts)).rejects.toThrow(ShapeError);
    await expect(invertImage(model, imgs, opts)).rejects.toThrow(/one image, got a batch of 2/);
    const bytes = tf.mul(nth(imgs, 0), 255);
    await expect(invertImage(model, bytes, { ...opts, id: 'cat.png' })).rejects.toThrow(ValueRangeError);
    await expect(invertImage(model, bytes, { ...opts, id: 'cat.png' })).rejects.toThrow(/cat\.png.*0\.\.255/);
    const modelRange = tf.sub(tf.mul(nth(imgs, 0), 2), 1);
    await expect(invertImage(model, modelRange, opts)).rejects.toThrow(ValueRangeError);
    const nan = tf.fill([S, S, CH], NaN);
    await expect(invertImage(model, nan, opts)).rejects.toThrow(NonFiniteError);
    tf.dispose([big, bytes, modelRange, nan]);
  });

  test('options: missing replication/seed, unknown keys, label on an unconditional model', async () => {
    const img = nth(imgs, 0);
    await expect(invertImage(model, img, { ...FAST, seed: 1 } as never)).rejects.toThrow(/replication/);
    await expect(invertImage(model, img, { ...FAST, replication: rms } as never)).rejects.toThrow(/seed/);
    await expect(invertImage(model, img, { ...opts, stepz: 1 } as never)).rejects.toThrow(/unknown InvMM option "stepz"/);
    await expect(invertImage(model, img, { ...opts, label: 0 })).rejects.toThrow(/unconditional/);
    img.dispose();
  });

  test('model/scheduler mismatch: a denoiser trained with T = 500 under a T = 1000 scheduler', async () => {
    const short = new DDPMScheduler({ numTrainTimesteps: 500 });
    const den = new EmpiricalDenoiser(tf.sub(tf.mul(imgs, 2), 1) as never, { alphasCumprod: short.alphasCumprod });
    const img = nth(imgs, 0);
    const before = tf.memory().numTensors;
    await expect(invertImage({ denoiser: den, scheduler: new DDPMScheduler() as never }, img, opts)).rejects.toThrow(/model\/scheduler mismatch.*timestep 999/);
    expect(tf.memory().numTensors).toBe(before);
    // a denoiser that declares its T
    const declared = { info: den.info, numTrainTimesteps: 500, predict: den.predict.bind(den) };
    await expect(invertImage({ denoiser: declared, scheduler: new DDPMScheduler() as never }, img, opts)).rejects.toThrow(/built for 500 timesteps.*1000/);
    img.dispose();
    den.dispose();
  });

  test('model folder: scheduler_config.json disagreeing with the given schedule, or missing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'invmm-folder-'));
    try {
      const unet = UNet2DModel.fromConfig(
        { sample_size: 8, in_channels: 1, out_channels: 1, block_out_channels: [8, 16], down_block_types: ['DownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'UpBlock2D'], layers_per_block: 1, norm_num_groups: 4 },
        { seed: 2 },
      );
      await saveUNet2DToFolder(unet, path.join(dir, 'with'), { schedulerConfig: new DDPMScheduler().toConfig() });
      await saveUNet2DToFolder(unet, path.join(dir, 'without'));
      unet.dispose();
      await expect(loadInvMMModelFromFolder(path.join(dir, 'with'), { schedulerConfig: new DDPMScheduler({ numTrainTimesteps: 500 }).toConfig() })).rejects.toThrow(
        /mismatch.*num_train_timesteps \(500 vs model 1000\)/,
      );
      await expect(loadInvMMModelFromFolder(path.join(dir, 'with'), { schedulerConfig: new DDPMScheduler({ predictionType: 'v_prediction' }).toConfig() })).rejects.toThrow(/prediction_type/);
      await expect(loadInvMMModelFromFolder(path.join(dir, 'without'))).rejects.toThrow(/no scheduler_config\.json/);
      const ok = await loadInvMMModelFromFolder(path.join(dir, 'with'));
      expect(ok.scheduler.numTrainTimesteps).toBe(1000);
      expect(ok.denoiser.info.sampleSize).toBe(8);
      ok.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('abort: the signal stops the inversion with InvMMAbortedError and leaves nothing behind', async () => {
    const img = nth(imgs, 0);
    const far = tf.fill([1, S, S, CH], 0.5);
    const ctl = new AbortController();
    const before = tf.memory().numTensors;
    await expect(
      invertImage(model, far, { ...opts, maxSteps: 1000, signal: ctl.signal, onCheck: (c) => c.step >= 9 && ctl.abort() }),
    ).rejects.toThrow(InvMMAbortedError);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([img, far]);
  });
});
