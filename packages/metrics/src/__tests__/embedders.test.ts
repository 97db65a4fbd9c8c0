import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, Generator, ShapeError } from '@diffmem/core';
import {
  CopyDescriptorEmbedder,
  GraphModelEmbedder,
  LayersModelEmbedder,
  ModelEmbedder,
  PREPROCESS_PRESETS,
  fileSystemModelHandler,
  preprocessImages,
  preprocessOutputSize,
  resizeAntialiased,
  resizeMatrix,
  shortEdgeSize,
} from '../index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

function randomBatch(n: number, h: number, w: number, seed = 1, c = 3): tf.Tensor4D {
  return tf.tensor4d(new Generator(seed).uniformArray(n * h * w * c), [n, h, w, c]);
}

describe('preprocessing presets', () => {
  it('uses the PIL antialiased bilinear kernel: [1,3,3,1]/8 for a 2x downscale', () => {
    const m = resizeMatrix(8, 4);
    // output pixel 1 (centre 3.0 in input coordinates) reads inputs 1..4
    expect(Array.from(m.subarray(8 * 1, 8 * 1 + 8)).map((v) => v * 8)).toEqual([0, 1, 3, 3, 1, 0, 0, 0].map((v) => expect.closeTo(v, 5)));
    // edge pixel: taps renormalised inside the image
    expect(Array.from(m.subarray(0, 8)).map((v) => v * 7)).toEqual([3, 3, 1, 0, 0, 0, 0, 0].map((v) => expect.closeTo(v, 5)));
    // every row sums to 1
    for (let i = 0; i < 4; i++) expect(m.subarray(i * 8, i * 8 + 8).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  it('matches tf.image.resizeBilinear (half-pixel centres) when upsampling', () => {
    const x = randomBatch(2, 5, 7);
    const a = resizeAntialiased(x, 9, 12);
    const b = tf.image.resizeBilinear(x, [9, 12], false, true);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-5);
    for (const t of [x, a, b]) t.dispose();
  });

  it('keeps a constant image constant and follows torchvision sizes', () => {
    const x = tf.fill([1, 480, 512, 3], 0.25) as tf.Tensor4D;
    const y = preprocessImages(x, 'dcr');
    expect(y.shape).toEqual([1, 224, 224, 3]);
    expect(tf.max(tf.abs(tf.sub(y, (0.25 - 0.5) / 0.5))).dataSync()[0]).toBeLessThan(1e-5);
    expect(shortEdgeSize(480, 512, 256)).toEqual([256, 273]);
    expect(shortEdgeSize(512, 384, 288)).toEqual([384, 288]);
    expect(preprocessOutputSize(480, 512, 'sscd')).toEqual([288, 307]);
    expect(preprocessOutputSize(480, 512, 'sscd-320')).toEqual([320, 320]);
    expect(preprocessOutputSize(100, 60, 'amg')).toEqual([224, 224]);
    const s = preprocessImages(x, 'sscd');
    expect(s.shape).toEqual([1, 288, 307, 3]);
    const v = s.dataSync();
    expect(v[0]).toBeCloseTo((0.25 - 0.485) / 0.229, 4);
    expect(v[2]).toBeCloseTo((0.25 - 0.406) / 0.225, 4);
    for (const t of [x, y, s]) t.dispose();
    expect(PREPROCESS_PRESETS.amg.mean).toBeNull();
  });

  it('crops the centre with round-half-to-even offsets (torchvision CenterCrop)', () => {
    // 256x273 after resize: left = round(24.5) = 24 (Python rounds half to even)
    const cols = tf.tile(tf.reshape(tf.range(0, 273, 1, 'float32'), [1, 1, 273, 1]), [1, 256, 1, 3]);
    const scaled = tf.div(cols, 1000) as tf.Tensor4D;
    const y = preprocessImages(scaled, { resize: null, centerCrop: [224, 224], mean: null, std: null });
    expect(y.dataSync()[0]).toBeCloseTo(0.024, 6);
    for (const t of [cols, scaled, y]) t.dispose();
  });

  it('is differentiable on wasm and frees its intermediates', () => {
    const x = randomBatch(2, 40, 30);
    const before = tf.memory().numTensors;
    const g = tf.grad((t: tf.Tensor) => tf.sum(preprocessImages(t, 'dcr')))(x);
    expect(g.shape).toEqual(x.shape);
    const total = tf.sum(g);
    expect(Number.isFinite(total.dataSync()[0] as number)).toBe(true);
    total.dispose();
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('rejects unknown presets and non-image inputs', () => {
    const x = randomBatch(1, 8, 8);
    expect(() => preprocessImages(x, 'clip' as never)).toThrow(ConfigError);
    const bad = tf.zeros([1, 8, 8, 4]);
    expect(() => preprocessImages(bad, 'amg')).toThrow(ShapeError);
    x.dispose();
    bad.dispose();
  });
});

describe('ModelEmbedder', () => {
  // A tiny "model" built from tf ops: global average pool of a fixed 3→6 projection, NHWC 224².
  let proj: tf.Tensor2D;
  const model = {
    inputs: [{ shape: [-1, 224, 224, 3] }],
    predict: (x: tf.Tensor) => tf.tidy(() => tf.matMul(tf.mean(x, [1, 2]) as tf.Tensor2D, proj)),
  };
  beforeAll(() => {
    proj = tf.tensor2d(new Generator(3).normalArray(18), [3, 6]);
  });
  afterAll(() => proj.dispose());

  it('embeds with the preset, L2-normalises, batches and frees memory', () => {
    const emb = new ModelEmbedder(model, { name: 'tiny', preprocess: 'amg', batchSize: 2 });
    const x = randomBatch(5, 50, 60);
    const before = tf.memory().numTensors;
    const e = emb.embed(x);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(e.shape).toEqual([5, 6]);
    const norms = tf.norm(e, 2, 1).dataSync();
    for (const v of norms) expect(v).toBeCloseTo(1, 5);
    expect(emb.dim).toBe(6);
    expect(emb.preprocess).toBe('amg');
    // equals the model applied directly to the preprocessed batch
    const direct = tf.tidy(() => {
      const p = model.predict(preprocessImages(x, 'amg')) as tf.Tensor2D;
      return tf.div(p, tf.norm(p, 2, 1, true));
    });
    expect(tf.max(tf.abs(tf.sub(direct, e))).dataSync()[0]).toBeLessThan(1e-5);
    for (const t of [x, e, direct]) t.dispose();
  });

  it('names expected vs actual input shape when the preset does not fit the model', () => {
    const emb = new ModelEmbedder(model, { name: 'sscd_disc_mixup', preprocess: 'sscd' });
    const x = randomBatch(2, 480 / 4, 512 / 4);
    const before = tf.memory().numTensors;
    expect(() => emb.embed(x)).toThrow(ShapeError);
    expect(() => emb.embed(x)).toThrow(/model "sscd_disc_mixup" expects input \[\*,224,224,3\] \(NHWC\) but preprocessing "sscd" produced \[2,288,307,3\]/);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('feeds fixed-batch models exactly their batch size (padding the last batch)', () => {
    const calls: number[] = [];
    const fixed = new ModelEmbedder(
      {
        inputs: [{ shape: [2, 224, 224, 3] }],
        predict: (x: tf.Tensor) => {
          calls.push(x.shape[0] as number);
          return model.predict(x);
        },
      },
      { name: 'fixed', preprocess: 'amg' },
    );
    const x = randomBatch(3, 30, 30);
    const e = fixed.embed(x);
    expect(calls).toEqual([2, 2]);
    expect(e.shape).toEqual([3, 6]);
    const free = new ModelEmbedder(model, { name: 'free', preprocess: 'amg' });
    const ref = free.embed(x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(e, ref))).dataSync()[0])).toBeLessThan(1e-5);
    for (const t of [x, e, ref]) t.dispose();
  });

  it('supports NCHW models, functions and multi-output models', () => {
    const nchw = new ModelEmbedder((x: tf.Tensor4D) => tf.mean(x, [2, 3]), {
      name: 'fn',
      preprocess: 'sscd-320',
      inputLayout: 'NCHW',
      inputShape: [null, 3, 320, 320],
    });
    const x = randomBatch(3, 20, 20);
    const e = nchw.embed(x);
    expect(e.shape).toEqual([3, 3]);
    const multi = new ModelEmbedder({ predict: (t: tf.Tensor) => ({ logits: tf.mean(t, [1, 2]), feats: tf.mean(t, [1, 2, 3]).reshape([-1, 1]).tile([1, 4]) }) }, {
      name: 'multi',
      preprocess: 'none',
      output: 'feats',
    });
    const m = multi.embed(x);
    expect(m.shape).toEqual([3, 4]);
    expect(() => new ModelEmbedder({ inputs: [{ shape: [224, 224, 3] }], predict: () => tf.zeros([1]) }, { name: 'r3', preprocess: 'amg' })).toThrow(ShapeError);
    for (const t of [x, e, m]) t.dispose();
  });

  it('loads model.json + weight shards from disk through the IO handler', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-model-'));
    const w = new Float32Array([1, 2, 3, 4, 5, 6]);
    fs.writeFileSync(path.join(dir, 'group1-shard1of1.bin'), Buffer.from(w.buffer));
    fs.writeFileSync(
      path.join(dir, 'model.json'),
      JSON.stringify({
        format: 'graph-model',
        modelTopology: { node: [] },
        weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: [{ name: 'proj', shape: [3, 2], dtype: 'float32' }] }],
      }),
    );
    const artifacts = await fileSystemModelHandler(path.join(dir, 'model.json')).load!();
    expect(artifacts.weightSpecs).toEqual([{ name: 'proj', shape: [3, 2], dtype: 'float32' }]);
    const decoded = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
    expect(Array.from((decoded['proj'] as tf.Tensor).dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    (decoded['proj'] as tf.Tensor).dispose();
    await expect(fileSystemModelHandler(path.join(dir, 'nope.json')).load!()).rejects.toThrow(expect.objectContaining({ code: 'MODEL_NOT_FOUND' }));
    fs.rmSync(path.join(dir, 'group1-shard1of1.bin'));
    await expect(fileSystemModelHandler(path.join(dir, 'model.json')).load!()).rejects.toThrow(expect.objectContaining({ code: 'MODEL_WEIGHTS_MISSING' }));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('GraphModelEmbedder / LayersModelEmbedder report the missing optional package (or a missing file)', async () => {
    const codes = ['MISSING_DEPENDENCY', 'MODEL_NOT_FOUND'];
    await expect(GraphModelEmbedder.load('/nonexistent/model.json', { name: 'g', preprocess: 'sscd' })).rejects.toThrow(
      expect.objectContaining({ code: expect.stringMatching(codes.join('|')) }),
    );
    await expect(LayersModelEmbedder.load('/nonexistent/model.json', { name: 'l', preprocess: 'sscd' })).rejects.toThrow(
      /tfjs-layers|nonexistent/,
    );
  });
});

describe('CopyDescriptorEmbedder basics', () => {
  it('is flip-invariant, L2-normalised, 521-d, differentiable and leak-free', () => {
    const emb = new CopyDescriptorEmbedder();
    const x = randomBatch(2, 48, 40, 7);
    const flipped = tf.reverse(x, 2);
    const before = tf.memory().numTensors;
    const a = emb.embed(x);
    const b = emb.embed(flipped);
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(a.shape).toEqual([2, emb.dim]);
    expect(emb.dim).toBe(521);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-4);
    for (const v of tf.norm(a, 2, 1).dataSync()) expect(v).toBeCloseTo(1, 5);
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(emb.embed(t as tf.Tensor4D), a)))(x);
    expect(Number.isFinite(tf.sum(tf.abs(g)).dataSync()[0] as number)).toBe(true);
    for (const t of [x, flipped, a, b, g]) t.dispose();
    const gray = randomBatch(1, 30, 30, 8, 1);
    const eg = emb.embed(gray);
    expect(eg.shape).toEqual([1, 521]);
    eg.dispose();
    gray.dispose();
    expect(() => new CopyDescriptorEmbedder({ weights: { luma4: -1 } })).toThrow(ConfigError);
  });
});
