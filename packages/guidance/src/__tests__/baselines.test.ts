import { tinyUNetConfig } from '@diffmem/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, DDIMPipeline, DDIMScheduler, DDPMScheduler, EmpiricalDenoiser, ShapeError, type ImageBatch } from '@diffmem/core';
// Test-only: core's UNet2DModel (its models/ module is not re-exported by the core index yet).
import { UNet2DModel } from '../../../core/src/models/unet_2d.js';
import {
  JAIN_OPPOSITE_GUIDANCE,
  JAIN_STATIC_TRANSITION,
  cfgScaleAt,
  hasClassEmbeddingHook,
  sampleCFGSchedule,
  sampleGNI,
  samplePlain,
  withClassEmbeddingHook,
} from '../index.js';
import { maxAbsDiff, smoothImages, toModel } from './helpers.js';

let train: ImageBatch<'model'>;
const labels = Int32Array.from({ length: 32 }, (_, i) => i % 4);

beforeAll(async () => {
  await tf.setBackend('wasm');
  const d = smoothImages(32, 8, 3, 1);
  train = toModel(d);
  d.dispose();
});

afterAll(() => train.dispose());

const tinyUNet = (numClassEmbeds: number | null, seed = 0): UNet2DModel =>
  UNet2DModel.fromConfig(
    tinyUNetConfig({ _class_name: 'UNet2DModel', in_channels: 3, out_channels: 3, num_class_embeds: numClassEmbeds }),
    { seed },
  );

describe('plain sampling and the Jain et al. CFG schedules', () => {
  test('samplePlain is core’s pipeline; a flat schedule equals core CFG bit-for-bit', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    const cond = { classLabels: [0, 1, 2], guidanceScale: 2.5, nullClassId: 4 };
    const core = await new DDIMPipeline(den, sched).generate({ ...cond, batchSize: 3, numInferenceSteps: 6, generator: 9 });
    const before = tf.memory().numTensors;
    const plain = await samplePlain(den, sched, { ...cond, batchSize: 3, numInferenceSteps: 6, generator: 9 });
    const flat = await sampleCFGSchedule(den, sched, {
      classLabels: [0, 1, 2],
      nullClassId: 4,
      schedule: { kind: 'static-transition', early: 2.5, late: 2.5, switchTimestep: 500 },
      batchSize: 3,
      numInferenceSteps: 6,
      generator: 9,
    });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(maxAbsDiff(plain, core)).toBe(0);
    expect(maxAbsDiff(flat, core)).toBe(0);
    const stp = await sampleCFGSchedule(den, sched, { classLabels: [0, 1, 2], nullClassId: 4, schedule: JAIN_STATIC_TRANSITION, batchSize: 3, numInferenceSteps: 6, generator: 9 });
    expect(maxAbsDiff(stp, core)).toBeGreaterThan(1e-3);
    tf.dispose([core, plain, flat, stp]);
    den.dispose();
  });

  test('schedule constants (CFG 0 → 7.5 at t = 500; −2 → 7.5 at t = 650)', () => {
    expect(cfgScaleAt(JAIN_STATIC_TRANSITION, 501)).toBe(0);
    expect(cfgScaleAt(JAIN_STATIC_TRANSITION, 500)).toBe(7.5);
    expect(cfgScaleAt(JAIN_OPPOSITE_GUIDANCE, 651)).toBe(-2);
    expect(cfgScaleAt(JAIN_OPPOSITE_GUIDANCE, 100)).toBe(7.5);
  });

  test('bad input', async () => {
    const sched = new DDPMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    await expect(samplePlain(den, sched, { classLabels: [0], batchSize: 1, numInferenceSteps: 2 })).rejects.toThrow(/generator/);
    await expect(
      sampleCFGSchedule(den, sched, { classLabels: [0], schedule: JAIN_STATIC_TRANSITION, batchSize: 1, numInferenceSteps: 2, generator: 1 } as never),
    ).rejects.toThrow(ConfigError);
    den.dispose();
  });
});

describe('GNI (noise on the class embedding)', () => {
  test('label mixing (no embedding hook): λ = 0 is plain CFG sampling exactly; λ > 0 changes it', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    expect(hasClassEmbeddingHook(den)).toBe(false);
    const o = { classLabels: [0, 3], guidanceScale: 3, nullClassId: 4, batchSize: 2, numInferenceSteps: 6, generator: 2 };
    const plain = await samplePlain(den, sched, o);
    const before = tf.memory().numTensors;
    const zero = await sampleGNI(den, sched, { ...o, noiseScale: 0 });
    const noisy = await sampleGNI(den, sched, { ...o, noiseScale: 0.5, noiseGenerator: 4 });
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(maxAbsDiff(zero, plain)).toBe(0);
    expect(maxAbsDiff(noisy, plain)).toBeGreaterThan(1e-3);
    await expect(sampleGNI(den, sched, { ...o, mode: 'embedding' })).rejects.toThrow(/ClassEmbeddingDenoiser/);
    await expect(sampleGNI(den, sched, { ...o, classLabels: [0] })).rejects.toThrow(ShapeError);
    tf.dispose([plain, zero, noisy]);
    den.dispose();
  });

  test('UNet2DModel embedding hook: explicit embeddings reproduce predict (chunks of ≤ K rows); GNI λ = 0 = plain', async () => {
    const unet = tinyUNet(3);
    const hooked = withClassEmbeddingHook(unet);
    expect(hasClassEmbeddingHook(hooked)).toBe(true);
    const x = tf.randomNormal([5, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.tensor1d([0, 1, 2, 1, 0], 'int32');
    const before = tf.memory().numTensors;
    const viaEmb = tf.tidy(() => hooked.predictWithClassEmbedding(x, 321, hooked.classEmbeddings(y)));
    const direct = unet.predict(x, 321, y);
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(maxAbsDiff(viaEmb, direct)).toBeLessThan(1e-5);
    const sched = new DDIMScheduler();
    const o = { classLabels: [1, 2], guidanceScale: 2, nullClassId: 0, batchSize: 2, numInferenceSteps: 3, generator: 7 };
    const plain = await samplePlain(unet, sched, o);
    const zero = await sampleGNI(hooked, sched, { ...o, noiseScale: 0 });
    const noisy = await sampleGNI(hooked, sched, { ...o, noiseScale: 0.1 });
    expect(maxAbsDiff(zero, plain)).toBeLessThan(1e-4);
    expect(maxAbsDiff(noisy, plain)).toBeGreaterThan(1e-4);
    // 'auto' wraps a bare UNet2DModel with the hook: the same GNI as the explicit wrapper.
    const auto = await sampleGNI(unet, sched, { ...o, noiseScale: 0.1 });
    expect(maxAbsDiff(auto, noisy)).toBeLessThan(1e-5);
    auto.dispose();
    expect(() => withClassEmbeddingHook(tinyUNet(null))).toThrow(ConfigError);
    tf.dispose([x, y, viaEmb, direct, plain, zero, noisy]);
    unet.dispose();
  });

  test('GNI needs a class-conditional model', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    await expect(sampleGNI(den, sched, { classLabels: [0], batchSize: 1, numInferenceSteps: 2, generator: 1 })).rejects.toThrow(ConfigError);
    den.dispose();
  });
});
