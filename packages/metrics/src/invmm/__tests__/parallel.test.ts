// Data parallelism within one inversion (parallel.ts): S = 2 threads must give the single-thread
// result up to float32 rounding (same draws, same decisions), verification rounds of S samples,
// no tensor left on the main thread, and worker failures as typed errors. The worker path runs
// compiled JS: it needs `npx tsc -b packages/metrics` (npm test builds first).
import { tinyUNetConfig } from '@diffmem/core/testing';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, DDPMScheduler, UNet2DModel, WorkerPool, WorkerTaskError, saveUNet2DToFolder } from '@diffmem/core';
import { auditInvMM } from '../audit.js';
import { createEmpiricalInvMMModel, type EmpiricalModelArg } from '../empirical_model.js';
import { invertImage, type InvMMRecord } from '../invert.js';
import { loadInvMMModelFromFolder, type InvMMModelSource, type OwnedInvMMModel } from '../model.js';
import { shardRanges } from '../parallel.js';
import { rmsReplicationTest } from '../replication.js';
import { FAST, randomImages } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../../../..');
const distTask = path.join(repoRoot, 'packages/metrics/dist/invmm/shard_task.js');
const distEmpirical = path.join(repoRoot, 'packages/metrics/dist/invmm/empirical_model.js');
const notBuilt = fs.existsSync(distTask) ? null : `${distTask} is not built (run npx tsc -b packages/metrics)`;
const maybe = notBuilt ? test.skip : test;
if (notBuilt) console.warn(`skipping the worker-thread InvMM tests: ${notBuilt}`);

const rms = rmsReplicationTest({ threshold: 0.05 });
const nth = (t: tf.Tensor4D, i: number): tf.Tensor4D => tf.slice(t, [i, 0, 0, 0], [1, -1, -1, -1]);

/** max |a − b| / max |a|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs((a[i] as number) - (b[i] as number)));
    s = Math.max(s, Math.abs(a[i] as number));
  }
  return d / s;
}

/** Same decisions, steps and checkpoints; μ, logvar (and logits) equal to float32 rounding. */
function expectSameInversion(a: InvMMRecord, b: InvMMRecord, tol: number): void {
  expect(b.status).toBe(a.status);
  expect(b.steps).toBe(a.steps);
  expect(b.checks.map((c) => [c.step, c.passed, c.stalled, c.similarities.length])).toEqual(a.checks.map((c) => [c.step, c.passed, c.stalled, c.similarities.length]));
  b.checks.forEach((c, i) => {
    const o = a.checks[i]!;
    expect(Math.abs(c.loss - o.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(o.loss) + 1e-9);
    // KL ≈ ½·mean(μ²+…) of small μ: float32 rounding of μ shows up amplified
    expect(Math.abs(c.kl - o.kl)).toBeLessThanOrEqual(1e-4 * Math.abs(o.kl) + 1e-9);
    c.similarities.forEach((v, j) => expect(Math.abs(v - o.similarities[j]!)).toBeLessThanOrEqual(1e-4));
  });
  expect(relDiff(a.mu, b.mu)).toBeLessThanOrEqual(tol);
  expect(relDiff(a.logvar, b.logvar)).toBeLessThanOrEqual(tol);
  if (a.classLogits) expect(relDiff(a.classLogits, b.classLogits!)).toBeLessThanOrEqual(tol);
  if (Number.isFinite(a.score)) expect(Math.abs(b.score - a.score)).toBeLessThanOrEqual(1e-4 * a.score);
  else expect(b.score).toBe(a.score);
}

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('shardRanges', () => {
  test('near-equal contiguous shards, larger first, empty ones dropped', () => {
    expect(shardRanges(16, 2)).toEqual([[0, 8], [8, 16]]);
    expect(shardRanges(7, 3)).toEqual([[0, 3], [3, 5], [5, 7]]);
    expect(shardRanges(1, 2)).toEqual([[0, 1]]);
    expect(shardRanges(5, 1)).toEqual([[0, 5]]);
    expect(() => shardRanges(4, 0)).toThrow(ConfigError);
    expect(() => shardRanges(-1, 2)).toThrow(ConfigError);
  });
});

describe('invertImage with parallel (memorizing EmpiricalDenoiser, 8×8)', () => {
  let imgs: tf.Tensor4D;
  let arg: EmpiricalModelArg;
  let model: OwnedInvMMModel;
  let source: InvMMModelSource;
  let pool: WorkerPool | null = null;
  beforeAll(() => {
    imgs = randomImages(3, 1);
    const train = tf.concat([imgs, nth(imgs, 0), nth(imgs, 0)], 0) as tf.Tensor4D;
    arg = { images: new Float32Array(train.dataSync()), shape: train.shape as [number, number, number, number] };
    train.dispose();
    model = createEmpiricalInvMMModel(arg);
    source = { kind: 'module', module: distEmpirical, fn: 'createEmpiricalInvMMModel', arg };
    if (!notBuilt) pool = new WorkerPool({ size: 1 });
  });
  afterAll(async () => {
    imgs.dispose();
    model.dispose();
    await pool?.close();
  });

  maybe('S = 2 equals S = 1: same steps and decisions, μ/logvar to float32 rounding; nothing left on the main thread', async () => {
    const img = nth(imgs, 0);
    const opts = { ...FAST, replication: rms, seed: 3 };
    const seq = await invertImage(model, img, opts);
    const before = tf.memory().numTensors;
    const par = await invertImage(model, img, { ...opts, parallel: { source, pool: pool! } });
    expect(tf.memory().numTensors).toBe(before);
    // the sharded code path with a single thread, too
    const one = await invertImage(model, img, { ...opts, parallel: { source, threads: 1 } });
    img.dispose();
    expect(seq.status).toBe('replicated');
    expect(seq.steps).toBeGreaterThanOrEqual(5);
    expectSameInversion(seq, par, 1e-5);
    expectSameInversion(seq, one, 1e-5);
  });

  maybe('verification: a round is S samples (one per thread); same decision, a failed check records the samples up to its failing round', async () => {
    const far = tf.fill([1, 8, 8, 1], 0.5) as tf.Tensor4D;
    const opts = { ...FAST, maxSteps: 10, replication: rms, seed: 5 };
    // single thread, chunks of 4 / sharded: rounds of 2
    const seq = await invertImage(model, far, { ...opts, verification: { ...FAST.verification, chunkSize: 4 } });
    const par = await invertImage(model, far, { ...opts, verification: { ...FAST.verification, chunkSize: 4 }, parallel: { source, pool: pool! } });
    // official bookkeeping (all n samples, split over the threads)
    const parAll = await invertImage(model, far, { ...opts, verification: { ...FAST.verification, stopAtFirstFailure: false }, parallel: { source, pool: pool! } });
    const seqAll = await invertImage(model, far, { ...opts, verification: { ...FAST.verification, stopAtFirstFailure: false } });
    far.dispose();
    for (const r of [seq, par, parAll, seqAll]) {
      expect(r.status).toBe('not-replicated');
      expect(r.score).toBe(Infinity);
      expect(r.checks.map((c) => c.passed)).toEqual([false, false]);
    }
    seq.checks.forEach((c) => expect(c.similarities).toHaveLength(4));
    par.checks.forEach((c, i) => {
      expect(c.similarities).toHaveLength(2);
      // the first round holds the same samples: the same values
      c.similarities.forEach((v, j) => expect(v).toBeCloseTo(seq.checks[i]!.similarities[j]!, 5));
    });
    parAll.checks.forEach((c, i) => {
      expect(c.similarities).toHaveLength(8);
      c.similarities.forEach((v, j) => expect(v).toBeCloseTo(seqAll.checks[i]!.similarities[j]!, 5));
    });
  });

  maybe('soft labels: the class logits are sharded too (Gumbel uniforms split with their samples)', async () => {
    const labels = Int32Array.from([0, 1, 2, 0, 0]);
    const condArg: EmpiricalModelArg = { ...arg, labels, numClasses: 4 };
    const cond = createEmpiricalInvMMModel(condArg);
    const condSource: InvMMModelSource = { kind: 'module', module: distEmpirical, fn: 'createEmpiricalInvMMModel', arg: condArg };
    const img = nth(imgs, 1);
    const opts = { ...FAST, maxSteps: 15, replication: rms, seed: 9, label: 'soft' as const, softLabelClasses: 3 };
    try {
      const seq = await invertImage(cond, img, opts);
      const par = await invertImage(cond, img, { ...opts, parallel: { source: condSource, pool: pool! } });
      expect(seq.classLogits).not.toBeNull();
      // Adam normalises every gradient element, so float32 rounding in near-zero elements grows
      // over the steps (1e-7 after step 1, ~1e-4 of max |logvar| after 15 steps here — the same
      // with the sharded path on one thread, i.e. rounding, not sharding).
      expectSameInversion(seq, par, 1e-3);
    } finally {
      img.dispose();
      cond.dispose();
    }
  });

  maybe('a worker that cannot load the model → WorkerTaskError naming the module; nothing left behind', async () => {
    const img = nth(imgs, 0);
    const before = tf.memory().numTensors;
    const bad: InvMMModelSource = { kind: 'module', module: path.join(repoRoot, 'does-not-exist/model.js'), fn: 'make' };
    const err = await invertImage(model, img, { ...FAST, replication: rms, seed: 1, parallel: { source: bad, pool: pool! } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerTaskError);
    expect((err as Error).message).toMatch(/model loading failed in a worker thread: cannot import model module .*does-not-exist/);
    expect(tf.memory().numTensors).toBe(before);
    // the caller's pool is still usable afterwards
    const ok = await invertImage(model, img, { ...FAST, maxSteps: 5, replication: rms, seed: 1, parallel: { source, pool: pool! } });
    expect(ok.steps).toBe(5);
    img.dispose();
  });

  maybe('a source that loads another model is refused (ConfigError), so are bad parallel options', async () => {
    const img = nth(imgs, 0);
    const other: InvMMModelSource = { kind: 'module', module: distEmpirical, fn: 'createEmpiricalInvMMModel', arg: { ...arg, images: arg.images.map((v) => 1 - v) } };
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1, parallel: { source: other, pool: pool! } })).rejects.toThrow(/does not load the model given to invertImage: denoiser outputs differ/);
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1, parallel: { source, threads: 0 } })).rejects.toThrow(ConfigError);
    await expect(invertImage(model, img, { ...FAST, replication: rms, seed: 1, parallel: { source: { kind: 'weights' } as never } })).rejects.toThrow(/parallel.source must be a serialisable model source/);
    img.dispose();
  });
  maybe("auditInvMM parallelism 'samples': one image at a time on S threads, same records as the sequential audit", async () => {
    const base = { ...FAST, maxSteps: 20, images: imgs, replication: rms, seed: 11 };
    const seq = await auditInvMM({ ...base, model });
    const events: string[] = [];
    const par = await auditInvMM({ ...base, model: source, workers: 2, parallelism: 'samples', onProgress: (e) => events.push(`${e.type}:${e.id}`) });
    expect(par).toMatchObject({ computed: 3, interrupted: false });
    expect(events.filter((e) => e.startsWith('image:'))).toEqual(['image:0', 'image:1', 'image:2']);
    par.records.forEach((r, i) => expectSameInversion(seq.records[i]!, r, 1e-5));
    await expect(auditInvMM({ ...base, model, workers: 2, parallelism: 'samples' })).rejects.toThrow(/parallelism "samples" needs a serialisable model source/);
    await expect(auditInvMM({ ...base, model, parallelism: 'pixels' as never })).rejects.toThrow(ConfigError);
  });
});

describe('invertImage with parallel (tiny UNet2DModel folder)', () => {
  let dir: string;
  let model: OwnedInvMMModel;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'invmm-parallel-'));
    const unet = UNet2DModel.fromConfig(tinyUNetConfig({ in_channels: 1, out_channels: 1 }), { seed: 4 });
    await saveUNet2DToFolder(unet, dir, { schedulerConfig: new DDPMScheduler().toConfig() });
    unet.dispose();
    model = await loadInvMMModelFromFolder(dir);
  });
  afterAll(() => {
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  maybe('S = 2 (own pool, closed afterwards) equals S = 1 to float32 rounding after several steps', async () => {
    const img = randomImages(1, 2);
    // a loose threshold so that a check passes: the decision must match too
    const opts = { ...FAST, maxSteps: 8, batchSize: 6, checkEvery: 4, verification: { numInferenceSteps: 5, numSamples: 4 }, replication: rmsReplicationTest({ threshold: 0.6 }), seed: 21 };
    const seq = await invertImage(model, img, opts);
    const before = tf.memory().numTensors;
    const par = await invertImage(model, img, { ...opts, parallel: { source: { kind: 'folder', dir }, threads: 2 } });
    expect(tf.memory().numTensors).toBe(before);
    img.dispose();
    expect(seq.steps).toBeGreaterThanOrEqual(4);
    expectSameInversion(seq, par, 1e-5);
  });
});
