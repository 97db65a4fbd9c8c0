import { tinyUNetConfig } from '../../testing/index.js';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '../../backend/gradients.js';
import { ConfigError, DiffmemError, WeightsError } from '../../errors.js';
import { readSafetensors, writeSafetensors, type SafetensorsTensor } from '../../safetensors/index.js';
import { Generator } from '../../random.js';
import { getTimestepEmbedding, parseUNet2DConfig, UNet2DModel, unet2DConfigToJSON, type ParamSpec } from '../index.js';

/** google/ddpm-cifar10-32's config.json (as quoted in /work/shared/reference/ecosystem.md §1.4). */
const CIFAR10_32 = {
  _class_name: 'UNet2DModel',
  act_fn: 'silu',
  attention_head_dim: null,
  block_out_channels: [128, 256, 256, 256],
  center_input_sample: false,
  down_block_types: ['DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D', 'DownBlock2D'],
  downsample_padding: 0,
  flip_sin_to_cos: false,
  freq_shift: 1,
  in_channels: 3,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-6,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 32,
  time_embedding_type: 'positional',
  up_block_types: ['UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'],
};

const TINY = tinyUNetConfig();
const TINY_CLASS = { ...TINY, num_class_embeds: 5 };

function expectError(fn: () => unknown, type: new (...a: never[]) => DiffmemError, code: string, messagePart?: string | RegExp): DiffmemError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(type);
  expect((caught as DiffmemError).code).toBe(code);
  if (messagePart) expect((caught as Error).message).toMatch(messagePart);
  return caught as DiffmemError;
}

const numelOf = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('google/ddpm-cifar10-32 architecture (shapes only, nothing allocated)', () => {
  let specs: ParamSpec[];
  beforeAll(() => {
    const before = tf.memory().numTensors;
    specs = UNet2DModel.parameterSpecs(CIFAR10_32);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('has exactly 328 tensors and 35,746,307 parameters', () => {
    expect(specs).toHaveLength(328);
    expect(specs.reduce((a, s) => a + numelOf(s.shape), 0)).toBe(35_746_307);
  });

  it('uses diffusers state-dict names and torch shapes', () => {
    const shapes = new Map(specs.map((s) => [s.name, s.shape]));
    expect(shapes.get('conv_in.weight')).toEqual([128, 3, 3, 3]);
    expect(shapes.get('time_embedding.linear_1.weight')).toEqual([512, 128]);
    expect(shapes.get('time_embedding.linear_2.weight')).toEqual([512, 512]);
    expect(shapes.get('down_blocks.1.resnets.0.conv_shortcut.weight')).toEqual([256, 128, 1, 1]);
    expect(shapes.get('down_blocks.1.attentions.0.to_q.weight')).toEqual([256, 256]);
    expect(shapes.get('down_blocks.1.attentions.1.to_out.0.bias')).toEqual([256]);
    expect(shapes.get('down_blocks.2.downsamplers.0.conv.weight')).toEqual([256, 256, 3, 3]);
    expect(shapes.get('mid_block.attentions.0.group_norm.weight')).toEqual([256]);
    expect(shapes.get('up_blocks.2.resnets.2.conv1.weight')).toEqual([256, 384, 3, 3]);
    expect(shapes.get('up_blocks.3.resnets.0.conv1.weight')).toEqual([128, 384, 3, 3]);
    expect(shapes.get('up_blocks.3.resnets.2.conv_shortcut.weight')).toEqual([128, 256, 1, 1]);
    expect(shapes.get('conv_out.weight')).toEqual([3, 128, 3, 3]);
    // No sampler on the last down / up block; attention only at 16×16 (down 1, up 2) and mid.
    expect(shapes.has('down_blocks.3.downsamplers.0.conv.weight')).toBe(false);
    expect(shapes.has('up_blocks.3.upsamplers.0.conv.weight')).toBe(false);
    const attnBlocks = new Set(specs.filter((s) => s.name.includes('.attentions.')).map((s) => s.name.split('.attentions.')[0]));
    expect([...attnBlocks].sort()).toEqual(['down_blocks.1', 'mid_block', 'up_blocks.2']);
    // Every name follows the key grammar of diffusers' UNet2DModel.
    const grammar =
      /^(conv_in|conv_out|conv_norm_out|time_embedding\.linear_[12]|(down_blocks\.\d|up_blocks\.\d|mid_block)\.(resnets\.\d\.(norm1|conv1|time_emb_proj|norm2|conv2|conv_shortcut)|attentions\.\d\.(group_norm|to_q|to_k|to_v|to_out\.0)|downsamplers\.0\.conv|upsamplers\.0\.conv))\.(weight|bias)$/;
    expect(specs.filter((s) => !grammar.test(s.name)).map((s) => s.name)).toEqual([]);
  });

  it('weighs 142.99 MB in float32', () => {
    expect((specs.reduce((a, s) => a + numelOf(s.shape), 0) * 4) / 1e6).toBeCloseTo(142.99, 2);
  });
});

describe('UNet2DModel config validation', () => {
  it('fills diffusers defaults and round-trips to config.json', () => {
    const c = parseUNet2DConfig({ sample_size: 16, block_out_channels: [32], down_block_types: ['DownBlock2D'], up_block_types: ['UpBlock2D'] });
    expect(c.flip_sin_to_cos).toBe(true);
    expect(c.attention_head_dim).toBe(8);
    expect(c.norm_eps).toBe(1e-5);
    expect(c.downsample_padding).toBe(1);
    const json = unet2DConfigToJSON(parseUNet2DConfig({ ...CIFAR10_32, _diffusers_version: '0.1.0' }));
    expect(json['_class_name']).toBe('UNet2DModel');
    expect(json['_diffusers_version']).toBe('0.1.0');
    expect(parseUNet2DConfig(json)).toEqual(parseUNet2DConfig({ ...CIFAR10_32, _diffusers_version: '0.1.0' }));
    // Keys diffusers recorded as defaulted take their defaults.
    expect(parseUNet2DConfig({ ...TINY, norm_eps: 0.5, _use_default_values: ['norm_eps'] }).norm_eps).toBe(1e-5);
    // sample_size as a square tuple and the UNetRes prefix are accepted, as in diffusers.
    expect(parseUNet2DConfig({ ...TINY, sample_size: [8, 8], down_block_types: ['UNetResDownBlock2D', 'AttnDownBlock2D'] }).sample_size).toBe(8);
  });

  it('rejects unknown block types, naming the field', () => {
    expectError(() => parseUNet2DConfig({ ...TINY, down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D'] }), ConfigError, 'CONFIG', 'down_block_types[1]');
    expectError(() => parseUNet2DConfig({ ...TINY, up_block_types: ['SkipUpBlock2D', 'UpBlock2D'] }), ConfigError, 'CONFIG', 'up_block_types[0]');
    expectError(() => parseUNet2DConfig({ ...TINY, mid_block_type: 'UNetMidBlock2DCrossAttn' }), ConfigError, 'CONFIG', 'mid_block_type');
  });

  it('rejects group counts that do not divide the channels, naming the field and module', () => {
    const e = expectError(() => UNet2DModel.parameterSpecs({ ...TINY, norm_num_groups: 3 }), ConfigError, 'CONFIG', /norm_num_groups = 3 does not divide the 8 channels of down_blocks.0.resnets.0.norm1/);
    expect(e.details?.['field']).toBe('norm_num_groups');
    expectError(() => UNet2DModel.parameterSpecs({ ...TINY, block_out_channels: [8, 18] }), ConfigError, 'CONFIG', /norm_num_groups = 4 does not divide the 18 channels of down_blocks.1/);
    expectError(() => UNet2DModel.parameterSpecs({ ...TINY, attn_norm_num_groups: 3 }), ConfigError, 'CONFIG', /attn_norm_num_groups = 3/);
    expectError(() => parseUNet2DConfig({ ...TINY, norm_num_groups: null }), ConfigError, 'CONFIG', 'norm_num_groups');
  });

  it('rejects missing required fields and inconsistent lengths', () => {
    for (const f of ['sample_size', 'block_out_channels', 'down_block_types', 'up_block_types']) {
      const c: Record<string, unknown> = { ...TINY };
      delete c[f];
      expectError(() => parseUNet2DConfig(c), ConfigError, 'CONFIG', new RegExp(`${f} is required`));
    }
    expectError(() => parseUNet2DConfig({ ...TINY, block_out_channels: [8, 16, 16] }), ConfigError, 'CONFIG', 'block_out_channels');
    expectError(() => parseUNet2DConfig({ ...TINY, up_block_types: ['UpBlock2D'] }), ConfigError, 'CONFIG', 'up_block_types');
    expectError(() => parseUNet2DConfig({ ...TINY, sample_size: 9 }), ConfigError, 'CONFIG', 'sample_size');
    expectError(() => parseUNet2DConfig({ ...TINY, layers_per_block: 0 }), ConfigError, 'CONFIG', 'layers_per_block');
    expectError(() => parseUNet2DConfig({ ...TINY, _class_name: 'UNet2DConditionModel' }), ConfigError, 'CONFIG', '_class_name');
    expectError(() => parseUNet2DConfig({ ...TINY, act_fn: 'tanh' }), ConfigError, 'CONFIG', 'act_fn');
    expectError(() => parseUNet2DConfig({ ...TINY, time_embedding_type: 'learned' }), ConfigError, 'CONFIG', 'num_train_timesteps');
    expectError(() => parseUNet2DConfig({ ...TINY, class_embed_type: 'identity' }), ConfigError, 'CONFIG', 'class_embed_type');
    expectError(() => parseUNet2DConfig({ ...TINY, resnet_time_scale_shift: 'spatial' }), ConfigError, 'CONFIG', 'resnet_time_scale_shift');
    expectError(() => UNet2DModel.parameterSpecs({ ...TINY, attention_head_dim: 32 }), ConfigError, 'CONFIG', 'attention_head_dim');
    expectError(() => parseUNet2DConfig('nope'), ConfigError, 'CONFIG');
  });
});

describe('UNet2DModel.fromConfig (random init)', () => {
  it('is deterministic per seed and uses PyTorch default init', () => {
    const a = UNet2DModel.fromConfig(TINY, { seed: 7 });
    const b = UNet2DModel.fromConfig(TINY, { seed: new Generator(7) });
    const c = UNet2DModel.fromConfig(TINY, { seed: 8 });
    try {
      const w = (m: UNet2DModel, n: string) => (m.variables.get(n) as tf.Variable).dataSync();
      expect(Array.from(w(a, 'conv_in.weight'))).toEqual(Array.from(w(b, 'conv_in.weight')));
      expect(Array.from(w(a, 'conv_in.weight'))).not.toEqual(Array.from(w(c, 'conv_in.weight')));
      // conv_in: fan_in = 3·3·3 = 27 → U(±1/√27); GroupNorm γ = 1, β = 0; TF.js layout [kh,kw,I,O].
      const convIn = a.variables.get('conv_in.weight') as tf.Variable;
      expect(convIn.shape).toEqual([3, 3, 3, 8]);
      const bound = 1 / Math.sqrt(27);
      const vals = Array.from(convIn.dataSync());
      expect(Math.max(...vals.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...vals.map(Math.abs))).toBeGreaterThan(0.8 * bound);
      expect(Array.from(w(a, 'conv_norm_out.weight'))).toEqual(new Array(8).fill(1));
      expect(Array.from(w(a, 'conv_norm_out.bias'))).toEqual(new Array(8).fill(0));
      expect((a.variables.get('down_blocks.1.attentions.0.to_q.weight') as tf.Variable).shape).toEqual([16, 16]);
      expect(a.trainableVariables()).toHaveLength(a.variables.size);
    } finally {
      [a, b, c].forEach((m) => m.dispose());
    }
  });

  it('keeps the Gaussian Fourier features out of the trainable set', () => {
    const m = UNet2DModel.fromConfig({ ...TINY, time_embedding_type: 'fourier' }, { seed: 0 });
    try {
      expect(m.variables.get('time_proj.weight')?.trainable).toBe(false);
      expect(m.trainableVariables()).toHaveLength(m.variables.size - 1);
      expect(m.variables.get('time_embedding.linear_1.weight')?.shape).toEqual([16, 32]); // 2·C0 → 4·C0
    } finally {
      m.dispose();
    }
  });

  it('reports Denoiser info and parameter count', () => {
    const m = UNet2DModel.fromConfig(TINY_CLASS, { seed: 0 });
    try {
      expect(m.info).toEqual({ sampleSize: 8, inChannels: 3, outChannels: 3, numClassEmbeds: 5 });
      expect(m.paramCount()).toBe(UNet2DModel.parameterSpecs(TINY_CLASS).reduce((a, s) => a + numelOf(s.shape), 0));
      expect(m.variables.get('class_embedding.weight')?.shape).toEqual([5, 32]);
    } finally {
      m.dispose();
    }
  });
});

describe('UNet2DModel.predict', () => {
  let model: UNet2DModel;
  let cond: UNet2DModel;
  beforeAll(() => {
    model = UNet2DModel.fromConfig(TINY, { seed: 1 });
    cond = UNet2DModel.fromConfig(TINY_CLASS, { seed: 2 });
  });
  afterAll(() => {
    model.dispose();
    cond.dispose();
  });

  it('leaves no tensors inside tf.tidy and returns exactly one outside', () => {
    const x = tf.randomNormal([2, 8, 8, 3]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      model.predict(x, 10);
      model.predict(x, tf.tensor1d([3, 900], 'int32'));
    });
    expect(tf.memory().numTensors).toBe(before);
    const y = model.predict(x, 5);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(y.shape).toEqual([2, 8, 8, 3]);
    y.dispose();
    x.dispose();
  });

  it('broadcasts a number or a [1] timestep over the batch, like diffusers', () => {
    const x = tf.randomNormal([2, 8, 8, 3]) as tf.Tensor4D;
    const d = tf.tidy(() => {
      const a = model.predict(x, 42);
      const b = model.predict(x, tf.tensor1d([42]));
      const c = model.predict(x, tf.tensor1d([42, 42], 'int32'));
      return [tf.max(tf.abs(tf.sub(a, b))).dataSync()[0], tf.max(tf.abs(tf.sub(a, c))).dataSync()[0]];
    });
    expect(d).toEqual([0, 0]);
    x.dispose();
  });

  it('accepts any size divisible by 2^(blocks−1), not only sample_size', () => {
    const y = tf.tidy(() => model.predict(tf.zeros([1, 12, 6, 3]), 1).shape);
    expect(y).toEqual([1, 12, 6, 3]);
  });

  it('rejects bad inputs with typed errors', () => {
    tf.tidy(() => {
      const x = tf.zeros([2, 8, 8, 3]) as tf.Tensor4D;
      expectError(() => model.predict(tf.zeros([8, 8, 3]) as unknown as tf.Tensor4D, 1), DiffmemError, 'SHAPE', 'rank 4');
      expectError(() => model.predict(tf.zeros([2, 3, 8, 8]) as tf.Tensor4D, 1), DiffmemError, 'SHAPE', '3 channels');
      expectError(() => model.predict(tf.zeros([2, 7, 8, 3]) as tf.Tensor4D, 1), DiffmemError, 'SHAPE', 'multiples of 2');
      expectError(() => model.predict(tf.zeros([2, 8, 8, 3], 'int32') as tf.Tensor4D, 1), DiffmemError, 'DTYPE');
      expectError(() => model.predict(x, NaN), DiffmemError, 'NON_FINITE');
      expectError(() => model.predict(x, tf.tensor1d([1, 2, 3])), DiffmemError, 'SHAPE', 'timestep');
      expectError(() => model.predict(x, 1, tf.tensor1d([0, 1], 'int32')), DiffmemError, 'CLASS_LABELS_UNEXPECTED');
      expectError(() => cond.predict(x, 1), DiffmemError, 'CLASS_LABELS_REQUIRED');
      expectError(() => cond.predict(x, 1, tf.tensor1d([0, 5], 'int32')), DiffmemError, 'VALUE_RANGE', 'classLabels[1] = 5');
      expectError(() => cond.predict(x, 1, tf.tensor1d([0, 1, 2], 'int32')), DiffmemError, 'SHAPE', 'classLabels');
      expectError(() => cond.predict(x, 1, tf.tensor1d([0, 1], 'float32')), DiffmemError, 'DTYPE');
    });
  });

  it('conditions on the class label', () => {
    const diff = tf.tidy(() => {
      const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const a = cond.predict(x, 100, tf.tensor1d([0, 0], 'int32'));
      const b = cond.predict(x, 100, tf.tensor1d([4, 4], 'int32'));
      return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number;
    });
    expect(diff).toBeGreaterThan(1e-3);
  });
});

describe('UNet2DModel weights: load, state dict, dispose', () => {
  it('round-trips through stateDict / safetensors in torch layout with identical outputs', () => {
    const a = UNet2DModel.fromConfig(TINY, { seed: 3 });
    const b = UNet2DModel.fromConfig(TINY, { seed: 4 });
    try {
      const sd = a.stateDict();
      expect(sd.get('conv_in.weight')?.shape).toEqual([8, 3, 3, 3]);
      expect(sd.get('down_blocks.1.attentions.0.to_q.weight')?.shape).toEqual([16, 16]);
      // torch [O,I,kh,kw][o][i][y][x] == tfjs [kh,kw,I,O][y][x][i][o]
      const native = (a.variables.get('conv_in.weight') as tf.Variable).arraySync() as number[][][][];
      const torch = sd.get('conv_in.weight')?.data as Float32Array;
      expect(torch[((5 * 3 + 2) * 3 + 1) * 3 + 0]).toBe(native[1]?.[0]?.[2]?.[5]);
      const lin = (a.variables.get('time_embedding.linear_1.weight') as tf.Variable).arraySync() as number[][];
      expect((sd.get('time_embedding.linear_1.weight')?.data as Float32Array)[3 * 8 + 5]).toBe(lin[5]?.[3]);

      const bytes = writeSafetensors(sd, { format: 'pt' });
      const before = tf.memory().numTensors;
      const varBefore = b.variables.get('conv_in.weight');
      const report = b.loadWeights(readSafetensors(bytes).tensors);
      expect(tf.memory().numTensors).toBe(before); // replaced in place, nothing leaked
      expect(b.variables.get('conv_in.weight')).toBe(varBefore); // same variable objects (optimizers keep working)
      expect(report.missing).toEqual([]);
      expect(report.unexpected).toEqual([]);
      expect(report.loaded).toHaveLength(sd.size);
      const d = tf.tidy(() => {
        const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
        return tf.max(tf.abs(tf.sub(a.predict(x, 77), b.predict(x, 77)))).dataSync()[0];
      });
      expect(d).toBe(0);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  describe('strict validation names the offending tensor, and changes nothing on failure', () => {
    let model: UNet2DModel;
    let sd: Map<string, SafetensorsTensor>;
    beforeAll(() => {
      model = UNet2DModel.fromConfig(TINY, { seed: 5 });
      sd = model.stateDict();
    });
    afterAll(() => model.dispose());
    const withEntry = (name: string, t: SafetensorsTensor | undefined) => {
      const m = new Map(sd);
      if (t === undefined) m.delete(name);
      else m.set(name, t);
      return m;
    };

    it('missing', () => {
      const e = expectError(() => model.loadWeights(withEntry('mid_block.resnets.1.conv2.bias', undefined)), WeightsError, 'WEIGHTS_MISSING', 'mid_block.resnets.1.conv2.bias');
      expect(e.details?.['missing']).toEqual(['mid_block.resnets.1.conv2.bias']);
    });

    it('unexpected', () => {
      expectError(() => model.loadWeights(withEntry('extra.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) })), WeightsError, 'WEIGHTS_UNEXPECTED', 'extra.weight');
    });

    it('shape mismatch', () => {
      expectError(
        () => model.loadWeights(withEntry('conv_in.weight', { dtype: 'F32', shape: [8, 3, 1, 9], data: new Float32Array(216) })),
        WeightsError,
        'WEIGHTS_SHAPE',
        /conv_in\.weight has shape \[8,3,1,9\].*\[8,3,3,3\]/,
      );
    });

    it('non-finite values', () => {
      const bad = Float32Array.from(sd.get('conv_out.bias')?.data as Float32Array);
      bad[1] = NaN;
      expectError(() => model.loadWeights(withEntry('conv_out.bias', { dtype: 'F32', shape: [3], data: bad })), WeightsError, 'WEIGHTS_NON_FINITE', 'conv_out.bias');
    });

    it('non-float dtype', () => {
      expectError(() => model.loadWeights(withEntry('conv_out.bias', { dtype: 'I32', shape: [3], data: new Int32Array(3) })), WeightsError, 'WEIGHTS_DTYPE', 'conv_out.bias');
    });

    it('nothing was modified by the failed loads', () => {
      const now = model.stateDict();
      for (const [k, v] of sd) expect(Array.from(now.get(k)?.data as Float32Array)).toEqual(Array.from(v.data as Float32Array));
    });

    it('non-strict mode reports instead of throwing', () => {
      const m = withEntry('conv_out.bias', undefined);
      m.set('unused.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
      const r = model.loadWeights(m, { strict: false });
      expect(r.missing).toEqual(['conv_out.bias']);
      expect(r.unexpected).toEqual(['unused.weight']);
    });
  });

  it('accepts legacy attention names (query/key/value/proj_attn) and tf tensors', () => {
    const a = UNet2DModel.fromConfig(TINY, { seed: 6 });
    const b = UNet2DModel.fromConfig(TINY, { seed: 7 });
    try {
      const legacy = new Map<string, SafetensorsTensor | tf.Tensor>();
      for (const [k, v] of a.stateDict()) {
        const renamed = k.replace('.to_q.', '.query.').replace('.to_k.', '.key.').replace('.to_v.', '.value.').replace('.to_out.0.', '.proj_attn.');
        legacy.set(renamed, k.startsWith('conv_in') ? tf.tensor(v.data as Float32Array, v.shape) : v);
      }
      const r = b.loadWeights(legacy);
      expect(r.renamed).toContainEqual(['down_blocks.1.attentions.0.query.weight', 'down_blocks.1.attentions.0.to_q.weight']);
      expect(r.renamed).toContainEqual(['mid_block.attentions.0.proj_attn.bias', 'mid_block.attentions.0.to_out.0.bias']);
      expect(Array.from(b.stateDict().get('mid_block.attentions.0.to_k.weight')?.data as Float32Array)).toEqual(
        Array.from(a.stateDict().get('mid_block.attentions.0.to_k.weight')?.data as Float32Array),
      );
      // Giving both spellings of one parameter is ambiguous.
      const both = new Map<string, SafetensorsTensor | tf.Tensor>(a.stateDict());
      both.set('mid_block.attentions.0.query.weight', a.stateDict().get('mid_block.attentions.0.to_q.weight') as SafetensorsTensor);
      expectError(() => b.loadWeights(both), WeightsError, 'WEIGHTS_UNEXPECTED', 'query.weight');
      tf.dispose([...legacy.values()].filter((v): v is tf.Tensor => v instanceof tf.Tensor));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('dispose() frees every variable', () => {
    const before = tf.memory().numTensors;
    const m = UNet2DModel.fromConfig(TINY, { seed: 0 });
    expect(tf.memory().numTensors).toBe(before + UNet2DModel.parameterSpecs(TINY).length);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(m.isDisposed).toBe(true);
    expectError(() => m.predict(tf.zeros([1, 8, 8, 3]) as tf.Tensor4D, 1), DiffmemError, 'MODEL_DISPOSED');
    m.dispose(); // idempotent
  });
});

describe('gradients (cpu backend: wasm lacks Conv2DBackpropFilter)', () => {
  it('tf.variableGrads reaches every trainable variable', async () => {
    await tf.setBackend('cpu');
    const m = UNet2DModel.fromConfig(TINY_CLASS, { seed: 9 });
    try {
      const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
      const labels = tf.tensor1d([1, 3], 'int32');
      const before = tf.memory().numTensors;
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(m.predict(x, tf.tensor1d([10, 500]), labels))) as tf.Scalar, m.trainableVariables());
      const names = [...m.variables.entries()].map(([n, v]) => [n, v.name] as const);
      const zero = names.filter(([, vn]) => tf.tidy(() => tf.max(tf.abs(grads[vn] as tf.Tensor)).dataSync()[0] as number) === 0).map(([n]) => n);
      // Only labels 1 and 3 get gradient in the class table; every other variable must get some.
      expect(zero).toEqual([]);
      expect(Object.keys(grads)).toHaveLength(m.trainableVariables().length);
      tf.dispose([value, ...Object.values(grads)]);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, labels]);
    } finally {
      m.dispose();
      await tf.setBackend('wasm');
    }
  });
});

describe('input gradients (what guidance needs) work on wasm and agree with cpu', () => {
  it('d sum(ε̂²) / dx matches between backends', async () => {
    const grads: Float32Array[] = [];
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const m = UNet2DModel.fromConfig({ ...TINY_CLASS, attention_head_dim: 4 }, { seed: 10 });
      const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 6) as tf.Tensor4D;
      const labels = tf.tensor1d([2, 4], 'int32');
      const before = tf.memory().numTensors;
      const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.square(m.predict(xi as tf.Tensor4D, 250, labels))))(x);
      grads.push(Float32Array.from(g.dataSync()));
      g.dispose();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, labels]);
      m.dispose();
    }
    const [c, w] = grads as [Float32Array, Float32Array];
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < c.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs((c[i] as number) - (w[i] as number)));
      maxAbs = Math.max(maxAbs, Math.abs(c[i] as number));
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    expect(maxDiff).toBeLessThan(1e-4 * Math.max(1, maxAbs));
  });
});

describe('timestep embedding', () => {
  it('matches DDPM formula: [sin, cos] with f_k = exp(−ln(10⁴)·k/(half − shift))', () => {
    const e = tf.tidy(() => getTimestepEmbedding(tf.tensor1d([0, 999]), 8, false, 1).arraySync());
    const half = 4;
    for (let k = 0; k < half; k++) {
      const f = Math.exp((-Math.log(10000) * k) / (half - 1));
      expect(e[1]?.[k]).toBeCloseTo(Math.sin(999 * f), 3);
      expect(e[1]?.[k + half]).toBeCloseTo(Math.cos(999 * f), 3);
    }
    expect(e[0]).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    const flipped = tf.tidy(() => getTimestepEmbedding(tf.tensor1d([0]), 5, true, 0).arraySync());
    expect(flipped[0]).toEqual([1, 1, 0, 0, 0]); // [cos, sin] then a zero pad for odd dims
  });
});
