import { tinyUNetConfig } from '@diffmem/core/testing';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  ConfigError,
  DDIMScheduler,
  DDPMScheduler,
  EmpiricalDenoiser,
  Generator,
  InputError,
  loadDatasetFromSpec,
  makeMemorizationSplit,
  type DatasetSpec,
  type ImageBatch,
} from '@diffmem/core';
// Test-only: core's model folder I/O (its models/ module is not re-exported by the core index yet).
import { UNet2DModel } from '../../../core/src/models/unet_2d.js';
import { loadUNet2DFromFolder, saveUNet2DToFolder } from '../../../core/src/models/pretrained.js';
import { evaluateAMG, evaluateModelFolder, paperConfig, type EvaluationReport, type SimilarityEmbedder } from '../index.js';
import { smoothImages, toModel } from './helpers.js';

let tmp: string;
let trainD: ImageBatch<'display'>;
let heldD: ImageBatch<'display'>;
let train: ImageBatch<'model'>;

beforeAll(async () => {
  await tf.setBackend('wasm');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-amg-eval-'));
  trainD = smoothImages(64, 8, 3, 1);
  heldD = smoothImages(24, 8, 3, 2);
  train = toModel(trainD);
});

afterAll(() => {
  tf.dispose([trainD, heldD, train]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const row = (r: EvaluationReport, name: string) => {
  const x = r.results.find((m) => m.name === name);
  if (!x) throw new Error(`no row ${name}`);
  return x;
};

test('unconditional DDPM: plain copies, AMG does not; threshold ablations, official iDDPM flow, Fréchet, JSON', async () => {
  const sched = new DDPMScheduler();
  const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
  const outFile = path.join(tmp, 'uncond.json');
  const lines: string[] = [];
  const before = tf.memory().numTensors;
  const report = await evaluateAMG({
    denoiser: den,
    scheduler: sched,
    training: { images: trainD },
    heldOut: heldD,
    numSamples: 16,
    batchSize: 8,
    numInferenceSteps: 12,
    seed: 5,
    scale: 800,
    outFile,
    log: (l) => lines.push(l),
  });
  expect(tf.memory().numTensors).toBe(before);
  console.log(report.table);
  expect(report.results.map((r) => r.name)).toEqual(['plain', 'amg', 'amg:always-on', 'amg:constant-threshold', 'amg:official-iddpm']);
  expect(row(report, 'plain').nl2.amg.pctBelow14).toBe(100);
  expect(row(report, 'plain').nl2.amg.top1).toBeLessThan(1e-3);
  expect(row(report, 'amg').nl2.amg.pctBelow14).toBeLessThanOrEqual(100 / 16);
  expect(row(report, 'amg').nl2.amg.top5pct).toBeGreaterThan(1.3);
  expect(row(report, 'amg').guidedFraction).toBeGreaterThan(0);
  expect(row(report, 'plain').guidedFraction).toBeNull();
  for (const r of report.results) {
    expect(r.frechet?.features).toBe('pixels-4x4');
    expect(Number.isFinite(r.frechet?.value)).toBe(true);
    expect(r.samples.nl2).toHaveLength(16);
    expect(r.timeMs).toBeGreaterThan(0);
  }
  const saved = JSON.parse(fs.readFileSync(outFile, 'utf8')) as EvaluationReport;
  expect(saved.format).toBe('diffmem-amg-evaluation');
  expect(saved.results).toHaveLength(5);
  expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  expect(report.table).toMatch(/amg:always-on/);
  expect(lines.length).toBe(10);
  den.dispose();
});

test('class-conditional DDIM with CFG: per-term ablation, GNI, Jain schedules, embedding columns', async () => {
  const sched = new DDIMScheduler();
  const labels = Int32Array.from({ length: 64 }, (_, i) => i % 4);
  const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
  const W = tf.tensor2d(new Generator(3).normalArray(192 * 12), [192, 12]);
  const embedder: SimilarityEmbedder = {
    name: 'random-projection',
    dim: 12,
    embed: (x) => tf.tidy(() => {
      const e = tf.matMul(tf.reshape(tf.sub(x, 0.5), [x.shape[0], -1]), W);
      return tf.div(e, tf.norm(e, 2, 1, true)) as tf.Tensor2D;
    }),
  };
  const before = tf.memory().numTensors;
  const report = await evaluateAMG({
    denoiser: den,
    scheduler: sched,
    training: { images: trainD, labels },
    heldOut: heldD,
    numSamples: 8,
    numInferenceSteps: 6,
    guidanceScale: 3,
    nullClassId: 4,
    embedder,
    embeddingThreshold: 0.9,
  });
  expect(tf.memory().numTensors).toBe(before);
  console.log(report.table);
  const names = report.results.map((r) => r.name);
  for (const n of ['plain', 'amg', 'amg:sim', 'amg:spe', 'amg:dup', 'amg:sim+spe', 'amg:sim+dup', 'amg:spe+dup', 'amg:official-sd-flow', 'gni', 'jain:static-transition', 'jain:opposite-guidance']) {
    expect(names).toContain(n);
  }
  expect(row(report, 'plain').embedding?.amg.top1).toBeGreaterThan(0.99); // copies
  expect(row(report, 'plain').embedding?.above).toBe(1);
  expect(row(report, 'amg').frechet?.features).toBe('embedder:random-projection');
  expect(report.config['nullClassId']).toBe(4);
  tf.dispose(W);
  den.dispose();
});

test('custom methods and bad input', async () => {
  const sched = new DDIMScheduler();
  const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
  const r = await evaluateAMG({
    denoiser: den,
    scheduler: sched,
    training: { images: trainD },
    numSamples: 4,
    numInferenceSteps: 3,
    methods: [{ name: 'plain', kind: 'plain' }, { name: 'mine', kind: 'amg', config: (ctx) => paperConfig(ctx.pixelSimilarity, { scale: 10 }) }],
  });
  expect(r.results.map((m) => m.name)).toEqual(['plain', 'mine']);
  expect(r.results[0]?.frechet).toBeNull();
  const empty = tf.zeros([0, 8, 8, 3]) as tf.Tensor4D;
  await expect(evaluateAMG({ denoiser: den, scheduler: sched, training: { images: empty }, numSamples: 4, numInferenceSteps: 2 })).rejects.toThrow(InputError);
  empty.dispose();
  await expect(evaluateAMG({ denoiser: den, scheduler: sched, training: { images: trainD }, numSamples: 1, numInferenceSteps: 2 })).rejects.toThrow(ConfigError);
  const cond = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels: Int32Array.from({ length: 64 }, () => 0), numClasses: 1 });
  await expect(evaluateAMG({ denoiser: cond, scheduler: sched, training: { images: trainD }, numSamples: 2, numInferenceSteps: 2, guidanceScale: 2 })).rejects.toThrow(/nullClassId/);
  await expect(evaluateModelFolder({ modelDir: path.join(tmp, 'missing'), numSamples: 2, numInferenceSteps: 2 })).rejects.toThrow(InputError);
  cond.dispose();
  den.dispose();
});

test('evaluateModelFolder: a saved class-conditional pipeline folder with membership.json', async () => {
  const dir = path.join(tmp, 'model');
  const spec: DatasetSpec = { source: 'mnist', size: 8, channels: 3, fit: 'resize', perClass: 4 };
  const ds = loadDatasetFromSpec(spec);
  const membership = makeMemorizationSplit(ds, { duplicated: 10, copies: 5, ordinary: 20, heldOut: 10, seed: 1 });
  ds.images.dispose();
  const unet = UNet2DModel.fromConfig(
    tinyUNetConfig({ _class_name: 'UNet2DModel', in_channels: 3, out_channels: 3, num_class_embeds: 11 }),
    { seed: 0 },
  );
  await saveUNet2DToFolder(unet, path.join(dir, 'unet'));
  unet.dispose();
  fs.mkdirSync(path.join(dir, 'scheduler'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(new DDPMScheduler().toConfig()));
  fs.writeFileSync(path.join(dir, 'model_index.json'), JSON.stringify({ _class_name: 'DDPMPipeline' }));
  fs.writeFileSync(path.join(dir, 'membership.json'), JSON.stringify(membership));
  fs.writeFileSync(path.join(dir, 'diffmem.json'), JSON.stringify({ dataset: spec, nullClassId: 10 }));
  const before = tf.memory().numTensors;
  const report = await evaluateModelFolder({
    modelDir: dir,
    loadModel: loadUNet2DFromFolder,
    numSamples: 4,
    numInferenceSteps: 2,
    guidanceScale: 2,
    methods: [{ name: 'plain', kind: 'plain' }, { name: 'gni', kind: 'gni' }],
    outFile: path.join(dir, 'amg-eval.json'),
  });
  expect(tf.memory().numTensors).toBe(before);
  expect(report.config['trainingSize']).toBe(30);
  expect(report.config['heldOutSize']).toBe(10);
  expect(report.config['nullClassId']).toBe(10);
  expect(report.results.map((r) => r.name)).toEqual(['plain', 'gni']);
  expect(fs.existsSync(path.join(dir, 'amg-eval.json'))).toBe(true);
});
