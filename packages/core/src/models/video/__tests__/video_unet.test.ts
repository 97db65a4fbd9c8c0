import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradKernels } from '../../../backend/kernels/index.js';
import { ConfigError, DiffmemError, DTypeError, InputError, NonFiniteError, ShapeError, ValueRangeError, WeightsError } from '../../../errors.js';
import { Generator } from '../../../random.js';
import { DDIMScheduler } from '../../../schedulers/scheduling_ddim.js';
import { UNet2DModel } from '../../unet_2d.js';
import {
  clipsToFrameStacked,
  frameStackedToClips,
  isTemporalParam,
  loadVideoUNetFromFolder,
  parseVideoUNetConfig,
  sampleVideosDDIM,
  saveVideoUNetToFolder,
  smallVideoUNetConfig,
  spatialUNet2DConfig,
  trainVideoDiffusionModel,
  VideoUNetModel,
} from '../index.js';

const TINY = smallVideoUNetConfig({ sampleSize: 8, numFrames: 4, channels: 1, blockOutChannels: [8, 16], normNumGroups: 4 });
const TINY_CLASS = { ...TINY, num_class_embeds: 3 };

function expectError(fn: () => unknown, type: new (...a: never[]) => DiffmemError, messagePart?: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(type);
  if (messagePart) expect((caught as Error).message).toMatch(messagePart);
}

const randomClips = (shape: [number, number, number, number, number], seed: number): tf.Tensor5D =>
  tf.tensor5d(new Generator(seed).normalArray(shape.reduce((a, b) => a * b, 1)), shape);

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);

/** Sets every temporal output projection to random values (a "trained" temporal layer). */
function randomiseTemporal(m: VideoUNetModel, seed: number): void {
  const g = new Generator(seed);
  for (const [name, v] of m.variables) {
    if (isTemporalParam(name) && (name.includes('to_out') || /\.convs\.1\./.test(name))) {
      tf.tidy(() => v.assign(tf.mul(tf.tensor(g.normalArray(v.size), v.shape), 0.3)));
    }
  }
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  registerWasmGradKernels();
});

describe('config', () => {
  it('fills defaults and maps the spatial network to a UNet2DModel config', () => {
    const c = parseVideoUNetConfig({ ...TINY, temporal_conv_layers: undefined });
    expect(c.temporal_conv_layers).toBe(2);
    expect(c.temporal_kernel_size).toBe(3);
    expect(c.down_block_types).toEqual(['DownBlock3D', 'AttnDownBlock3D']);
    const s = spatialUNet2DConfig(c);
    expect(s.down_block_types).toEqual(['DownBlock2D', 'AttnDownBlock2D']);
    expect(s.up_block_types).toEqual(['AttnUpBlock2D', 'UpBlock2D']);
    expect('num_frames' in s).toBe(false);
  });

  it('rejects bad fields with a ConfigError naming them', () => {
    expectError(() => parseVideoUNetConfig(null), ConfigError, /JSON object/);
    expectError(() => parseVideoUNetConfig({ ...TINY, num_frames: undefined }), ConfigError, /num_frames is required/);
    expectError(() => parseVideoUNetConfig({ ...TINY, num_frames: 0 }), ConfigError, /num_frames must be a positive integer/);
    expectError(() => parseVideoUNetConfig({ ...TINY, down_block_types: ['DownBlock2D', 'AttnDownBlock3D'] }), ConfigError, /down_block_types\[0\]/);
    expectError(() => parseVideoUNetConfig({ ...TINY, temporal_kernel_size: 2 }), ConfigError, /temporal_kernel_size must be odd/);
    expectError(() => parseVideoUNetConfig({ ...TINY, temporal_conv_layers: -1 }), ConfigError, /temporal_conv_layers/);
    expectError(() => parseVideoUNetConfig({ ...TINY, temporal_attention: 'yes' }), ConfigError, /temporal_attention must be true or false/);
    expectError(() => parseVideoUNetConfig({ ...TINY, _class_name: 'UNet2DModel' }), ConfigError, /_class_name/);
    expectError(() => parseVideoUNetConfig({ ...TINY, block_out_channels: [8] }), ConfigError, /^VideoUNetModel config: block_out_channels/);
    expectError(() => VideoUNetModel.fromConfig({ ...TINY, norm_num_groups: 3 }, { seed: 0 }), ConfigError, /norm_num_groups = 3/);
    expectError(() => parseVideoUNetConfig({ ...TINY, time_embedding_type: 'fourier' }), ConfigError, /time_embedding_type/);
    expectError(() => VideoUNetModel.fromConfig({ ...TINY, temporal_attention_head_dim: 64 }, { seed: 0 }), ConfigError, /temporal_attention_head_dim/);
  });
});

describe('VideoUNetModel', () => {
  let model: VideoUNetModel;
  beforeAll(() => {
    model = VideoUNetModel.fromConfig(TINY_CLASS, { seed: 1 });
  });
  afterAll(() => model.dispose());

  it('declares spatial parameters under UNet2DModel names and temporal ones with zero output projections', () => {
    const specs = model.parameterSpecs();
    const image = UNet2DModel.parameterSpecs(spatialUNet2DConfig(model.config));
    const spatial = specs.filter((s) => !isTemporalParam(s.name));
    expect(spatial.map((s) => [s.name, s.shape])).toEqual(image.map((s) => [s.name, s.shape]));
    const temporal = specs.filter((s) => isTemporalParam(s.name));
    expect(temporal.some((s) => s.name === 'down_blocks.0.temp_convs.0.convs.1.weight')).toBe(true);
    expect(temporal.some((s) => s.name === 'mid_block.temp_attentions.0.to_out.0.weight')).toBe(true);
    for (const s of temporal.filter((t) => t.name.includes('to_out') || /\.convs\.1\./.test(t.name))) {
      expect(s.init).toEqual({ kind: 'constant', value: 0 });
      expect(Math.max(...Array.from(model.variables.get(s.name)?.dataSync() ?? [1]).map(Math.abs))).toBe(0);
    }
    expect(model.paramCount()).toBe(specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0));
  });

  it('predicts [B,T,H,W,C] with one timestep per clip, leaking no tensors', () => {
    const x = randomClips([2, 4, 8, 8, 1], 2);
    const labels = tf.tensor1d([0, 2], 'int32');
    const t = tf.tensor1d([10, 700], 'int32');
    const before = tf.memory().numTensors;
    const y = model.predict(x, t, labels);
    expect(y.shape).toEqual([2, 4, 8, 8, 1]);
    expect(Number.isFinite(tf.tidy(() => tf.sum(y).dataSync()[0] as number))).toBe(true);
    y.dispose();
    model.predict(x, 5, labels).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, labels, t]);
  });

  it('at initialisation equals its spatial UNet2DModel applied frame by frame', () => {
    const x = randomClips([2, 4, 8, 8, 1], 3);
    const labels = [1, 2];
    const image = UNet2DModel.fromWeights(spatialUNet2DConfig(model.config), model.spatialStateDict());
    try {
      const video = model.predict(x, tf.tensor1d([50, 900]), tf.tensor1d(labels, 'int32'));
      const perFrame = tf.tidy(() =>
        image.predict(
          tf.reshape(x, [8, 8, 8, 1]) as tf.Tensor4D,
          tf.tensor1d([50, 50, 50, 50, 900, 900, 900, 900]),
          tf.tensor1d([1, 1, 1, 1, 2, 2, 2, 2], 'int32'),
        ),
      );
      expect(tf.tidy(() => maxAbsDiff(tf.reshape(video, [8, 8, 8, 1]), perFrame))).toBeLessThan(1e-5);
      tf.dispose([video, perFrame]);
    } finally {
      image.dispose();
      x.dispose();
    }
  });

  it('fromImageModel inflates a trained image model exactly; trained temporal layers mix frames', () => {
    const image = UNet2DModel.fromConfig(spatialUNet2DConfig(parseVideoUNetConfig(TINY)), { seed: 9 });
    const video = VideoUNetModel.fromImageModel(image, { num_frames: 4 }, { seed: 10 });
    const x = randomClips([1, 4, 8, 8, 1], 4);
    try {
      const a = video.predict(x, 300);
      const b = tf.tidy(() => image.predict(tf.reshape(x, [4, 8, 8, 1]) as tf.Tensor4D, 300));
      expect(tf.tidy(() => maxAbsDiff(tf.reshape(a, [4, 8, 8, 1]), b))).toBeLessThan(1e-5);
      // Frames are independent at init: changing frame 0 leaves frame 3's output unchanged …
      const x2 = tf.tidy(() => tf.concat([tf.add(tf.slice(x, [0, 0], [1, 1]), 1), tf.slice(x, [0, 1], [1, 3])], 1)) as tf.Tensor5D;
      const frame3 = (m: VideoUNetModel, input: tf.Tensor5D): tf.Tensor => tf.tidy(() => tf.slice(m.predict(input, 300), [0, 3], [1, 1]));
      const [f3a, f3b] = [frame3(video, x), frame3(video, x2)];
      expect(maxAbsDiff(f3a, f3b)).toBe(0);
      // … until the temporal layers are trained (here: set to random values).
      randomiseTemporal(video, 11);
      const [g3a, g3b] = [frame3(video, x), frame3(video, x2)];
      expect(maxAbsDiff(g3a, g3b)).toBeGreaterThan(1e-3);
      tf.dispose([a, b, x2, f3a, f3b, g3a, g3b]);
    } finally {
      tf.dispose([x]);
      image.dispose();
      video.dispose();
    }
  });

  it('handles clip lengths other than num_frames (temporal layers are length-agnostic)', () => {
    const x = randomClips([1, 6, 8, 8, 1], 5);
    const y = model.predict(x, 100, tf.tensor1d([0], 'int32'));
    expect(y.shape).toEqual([1, 6, 8, 8, 1]);
    tf.dispose([x, y]);
  });

  it('rejects bad inputs with typed errors', () => {
    const x = randomClips([1, 4, 8, 8, 1], 6);
    const l = tf.tensor1d([0], 'int32');
    expectError(() => model.predict(tf.zeros([4, 8, 8, 1]) as unknown as tf.Tensor5D, 1, l), ShapeError, /rank 5/);
    expectError(() => model.predict(tf.zeros([1, 4, 8, 8, 3]) as tf.Tensor5D, 1, l), ShapeError, /1 channels/);
    expectError(() => model.predict(tf.zeros([1, 4, 7, 7, 1]) as tf.Tensor5D, 1, l), ShapeError, /multiples of 2/);
    expectError(() => model.predict(tf.zeros([1, 4, 8, 8, 1], 'int32') as tf.Tensor5D, 1, l), DTypeError);
    expectError(() => model.predict(x, 1), InputError, /class-conditional/);
    expectError(() => model.predict(x, 1, tf.tensor1d([3], 'int32')), ValueRangeError, /outside \[0, 3\)/);
    expectError(() => model.predict(x, 1, tf.tensor1d([0, 1], 'int32')), ShapeError, /\[1\]/);
    expectError(() => model.predict(x, 1, tf.tensor1d([0], 'float32')), DTypeError);
    expectError(() => model.predict(x, Number.NaN, l), NonFiniteError);
    expectError(() => model.predict(x, tf.tensor1d([1, 2, 3]), l), ShapeError, /timestep/);
    const unconditional = VideoUNetModel.fromConfig(TINY, { seed: 0 });
    expectError(() => unconditional.predict(x, 1, l), InputError, /unconditional/);
    unconditional.dispose();
    expectError(() => unconditional.predict(x, 1), InputError, /disposed/);
    tf.dispose([x, l]);
  });
});

describe('frame stacking, training, sampling, save/load', () => {
  it('frame stacking is an exact, invertible relayout', () => {
    const x = randomClips([2, 3, 4, 4, 2], 7);
    const s = clipsToFrameStacked(x);
    expect(s.shape).toEqual([2, 4, 4, 6]);
    // frame 1, pixel (2,3), channel 1 of clip 1 sits at stacked channel 1·2 + 1.
    const a = tf.tidy(() => tf.slice(x, [1, 1, 2, 3, 1], [1, 1, 1, 1, 1]).dataSync()[0]);
    const b = tf.tidy(() => tf.slice(s, [1, 2, 3, 3], [1, 1, 1, 1]).dataSync()[0]);
    expect(b).toBe(a);
    const back = frameStackedToClips(s, 3);
    expect(maxAbsDiff(back, x)).toBe(0);
    expectError(() => frameStackedToClips(s, 4), ShapeError, /6 channels into 4 frames/);
    tf.dispose([x, s, back]);
  });

  it("trains through core's trainer: the loss is finite, temporal projections leave zero, memory is flat", async () => {
    const model = VideoUNetModel.fromConfig(TINY_CLASS, { seed: 3 });
    const clips = tf.tidy(() => tf.tanh(randomClips([3, 4, 8, 8, 1], 8)));
    const alphasCumprod = new DDIMScheduler({ numTrainTimesteps: 100 }).alphasCumprod;
    const before = tf.memory().numTensors;
    const res = await trainVideoDiffusionModel(model, {
      clips,
      trainIndices: [0, 0, 1, 2],
      labels: Int32Array.from([0, 1, 1]),
      classDropout: 0.3,
      nullClassId: 2,
      alphasCumprod,
      batchSize: 2,
      maxSteps: 3,
      optimizer: { kind: 'adamw', learningRate: 1e-3 },
      ema: false,
      seed: 4,
      logEvery: 1,
    });
    expect(res.steps).toBe(3);
    expect(res.lossHistory).toHaveLength(3);
    for (const l of res.lossHistory) expect(Number.isFinite(l.loss)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    const out = model.variables.get('mid_block.temp_attentions.0.to_out.0.weight') as tf.Variable;
    expect(tf.tidy(() => tf.max(tf.abs(out)).dataSync()[0] as number)).toBeGreaterThan(0);
    const conv = model.variables.get('down_blocks.0.temp_convs.0.convs.1.weight') as tf.Variable;
    expect(tf.tidy(() => tf.max(tf.abs(conv)).dataSync()[0] as number)).toBeGreaterThan(0);
    await expect(trainVideoDiffusionModel(model, { clips: tf.zeros([3, 8, 8, 1]) as unknown as tf.Tensor5D, trainIndices: [0], alphasCumprod, batchSize: 1, maxSteps: 1, optimizer: { kind: 'adam', learningRate: 1e-3 }, seed: 0 })).rejects.toBeInstanceOf(ShapeError);
    clips.dispose();
    model.dispose();
  });

  it('samples clips with DDIM and CFG, deterministically, exposing the guidance predictions', async () => {
    const model = VideoUNetModel.fromConfig(TINY_CLASS, { seed: 5 });
    randomiseTemporal(model, 6);
    // Break the class symmetry of the fresh model so conditional ≠ unconditional.
    const scheduler = new DDIMScheduler({ numTrainTimesteps: 100 });
    const before = tf.memory().numTensors;
    const deltas: number[] = [];
    const run = () =>
      sampleVideosDDIM(model, scheduler, {
        classLabels: [0, 1],
        guidanceScale: 3,
        nullClassId: 2,
        numInferenceSteps: 3,
        generator: 21,
        onStep: ({ conditional, unconditional, sample }) => {
          expect(sample.shape).toEqual([2, 4, 8, 8, 1]);
          deltas.push(tf.tidy(() => tf.norm(tf.sub(conditional as tf.Tensor, unconditional as tf.Tensor)).dataSync()[0] as number));
        },
      });
    const a = await run();
    const b = await run();
    expect(a.shape).toEqual([2, 4, 8, 8, 1]);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0] as number)).toBeLessThanOrEqual(1);
    expect(deltas).toHaveLength(6);
    expect(deltas.every((d) => d > 0)).toBe(true);
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(sampleVideosDDIM(model, scheduler, { classLabels: [0], numInferenceSteps: 2 })).rejects.toBeInstanceOf(ConfigError);
    await expect(sampleVideosDDIM(model, scheduler, { numInferenceSteps: 2, generator: 1 })).rejects.toBeInstanceOf(ConfigError);
    await expect(sampleVideosDDIM(model, scheduler, { classLabels: [0], guidanceScale: 2, numInferenceSteps: 2, generator: 1 })).rejects.toThrow(/nullClassId/);
    await expect(sampleVideosDDIM(model, scheduler, { classLabels: [5], numInferenceSteps: 2, generator: 1 })).rejects.toBeInstanceOf(ValueRangeError);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('saves and loads a folder with core safetensors (exact round trip, F16 option, typed errors)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-vdm-'));
    const model = VideoUNetModel.fromConfig(TINY_CLASS, { seed: 12 });
    randomiseTemporal(model, 13);
    try {
      await saveVideoUNetToFolder(model, dir);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg['_class_name']).toBe('VideoUNetModel');
      const loaded = await loadVideoUNetFromFolder(dir);
      const x = randomClips([1, 4, 8, 8, 1], 14);
      const l = tf.tensor1d([1], 'int32');
      const [ya, yb] = [model.predict(x, 400, l), loaded.predict(x, 400, l)];
      expect(maxAbsDiff(ya, yb)).toBe(0);
      loaded.dispose();
      await saveVideoUNetToFolder(model, path.join(dir, 'f16'), { dtype: 'F16' });
      const half = await loadVideoUNetFromFolder(path.join(dir, 'f16'));
      const yc = half.predict(x, 400, l);
      expect(maxAbsDiff(ya, yc)).toBeLessThan(0.05);
      half.dispose();
      tf.dispose([x, l, ya, yb, yc]);
      // Errors: no folder, missing weights, a weight of the wrong shape.
      await expect(loadVideoUNetFromFolder(path.join(dir, 'nope'))).rejects.toBeInstanceOf(InputError);
      fs.mkdirSync(path.join(dir, 'noweights'));
      fs.copyFileSync(path.join(dir, 'config.json'), path.join(dir, 'noweights', 'config.json'));
      await expect(loadVideoUNetFromFolder(path.join(dir, 'noweights'))).rejects.toThrow(/diffusion_pytorch_model.safetensors/);
      const sd = model.stateDict();
      sd.set('conv_in.bias', { dtype: 'F32', shape: [3], data: new Float32Array(3) });
      expectError(() => VideoUNetModel.fromWeights(TINY_CLASS, sd), WeightsError, /conv_in.bias has shape \[3\]/);
      sd.delete('conv_in.bias');
      expectError(() => VideoUNetModel.fromWeights(TINY_CLASS, sd), WeightsError, /missing 1 tensor/);
      expectError(() => model.loadWeights({ 'conv_in.bias': { dtype: 'F32', shape: [8], data: new Float32Array(8).fill(Number.NaN) } }, { strict: false }), WeightsError, /non-finite/);
    } finally {
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
