import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  DDIMInverseScheduler,
  DDIMScheduler,
  DDPMScheduler,
  parseSchedulerJson,
  schedulerFromConfig,
  type DDIMSchedulerConfig,
} from '../index.js';
import { ConfigError, DTypeError, ShapeError, ValueRangeError } from '../../errors.js';

/** google/ddpm-cifar10-32 scheduler_config.json as quoted by third-party copies. */
const CIFAR_DDPM = {
  _class_name: 'DDPMScheduler',
  _diffusers_version: '0.1.1',
  beta_end: 0.02,
  beta_schedule: 'linear',
  beta_start: 0.0001,
  clip_sample: true,
  num_train_timesteps: 1000,
  trained_betas: null,
  variance_type: 'fixed_large',
};

/** A Stable Diffusion style PNDM config, loaded into DDIM as `DDIMScheduler.from_config` does. */
const SD_PNDM = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('fromConfig', () => {
  test('loads google/ddpm-cifar10-32 into DDPM, DDIM (variance_type ignored) and via _class_name', () => {
    const ddpm = DDPMScheduler.fromConfig(CIFAR_DDPM);
    expect(ddpm.config.varianceType).toBe('fixed_large');
    expect(ddpm.config.clipSample).toBe(true);
    const ddim = DDIMScheduler.fromConfig(JSON.stringify(CIFAR_DDPM));
    expect(ddim.config.setAlphaToOne).toBe(true);
    expect(Array.from(ddim.alphasCumprod)).toEqual(Array.from(ddpm.alphasCumprod));
    expect(schedulerFromConfig(CIFAR_DDPM)).toBeInstanceOf(DDPMScheduler);
    const parsed = parseSchedulerJson<DDIMSchedulerConfig>('DDIMScheduler', CIFAR_DDPM, ['numTrainTimesteps', 'betaStart', 'betaEnd', 'betaSchedule', 'trainedBetas', 'clipSample']);
    expect(parsed.ignoredKeys).toEqual(['variance_type']);
    expect(parsed.sourceClassName).toBe('DDPMScheduler');
  });

  test('a PNDM config converts to DDIM (skip_prk_steps ignored) but is not auto-dispatched', () => {
    const ddim = DDIMScheduler.fromConfig(SD_PNDM);
    expect(ddim.config).toMatchObject({ betaSchedule: 'scaled_linear', setAlphaToOne: false, stepsOffset: 1, clipSample: false });
    expect(ddim.setTimesteps(5)).toEqual([801, 601, 401, 201, 1]);
    expect(() => schedulerFromConfig(SD_PNDM)).toThrow(ConfigError);
  });

  test('_use_default_values keys fall back to defaults; deprecated aliases are honoured', () => {
    const s = DDIMScheduler.fromConfig({ _class_name: 'DDIMScheduler', clip_sample: false, _use_default_values: ['clip_sample'] });
    expect(s.config.clipSample).toBe(true);
    expect(DDIMInverseScheduler.fromConfig({ set_alpha_to_zero: false }).config.setAlphaToOne).toBe(false);
    expect(DDPMScheduler.fromConfig({ predict_epsilon: false }).config.predictionType).toBe('sample');
    expect(() => DDPMScheduler.fromConfig({ predict_epsilon: false, prediction_type: 'epsilon' })).toThrow(ConfigError);
    expect(DDPMScheduler.fromConfig({ variance_type: null }).config.varianceType).toBe('fixed_small');
  });

  test('round trip: toConfig → JSON → fromConfig gives the same config and tables', () => {
    const schedulers = [
      new DDPMScheduler({ varianceType: 'learned_range', betaSchedule: 'sigmoid', thresholding: true, sampleMaxValue: 1.5, timestepSpacing: 'trailing' }),
      new DDIMScheduler({ betaSchedule: 'squaredcos_cap_v2', setAlphaToOne: false, stepsOffset: 1, predictionType: 'v_prediction', rescaleBetasZeroSnr: true }),
      new DDIMInverseScheduler({ betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, clipSample: false }),
      new DDIMScheduler({ trainedBetas: Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1)) }),
    ];
    for (const s of schedulers) {
      const json = JSON.parse(JSON.stringify(s.toConfig())) as Record<string, unknown>;
      expect(json['_class_name']).toBe(s.className);
      const back = schedulerFromConfig(json);
      expect(back.constructor).toBe(s.constructor);
      expect(back.config).toEqual(s.config);
      expect(back.toConfig()).toEqual(s.toConfig());
      expect(Array.from(back.alphasCumprod)).toEqual(Array.from(s.alphasCumprod));
    }
    // diffusers' snake-case keys, sorted.
    const keys = Object.keys(new DDIMScheduler().toConfig());
    expect(keys.slice(2)).toEqual([...keys.slice(2)].sort());
    expect(keys).toContain('set_alpha_to_one');
  });

  test.each<[string, unknown, RegExp]>([
    ['bad beta_schedule', { beta_schedule: 'cosine' }, /beta_schedule/],
    ['bad timestep_spacing', { timestep_spacing: 'uniform' }, /timestep_spacing/],
    ['bad prediction_type', { prediction_type: 'eps' }, /prediction_type/],
    ['typo key', { beta_shedule: 'linear' }, /unknown scheduler config key "beta_shedule"/],
    ['unknown private key', { _foo: 1 }, /unknown scheduler config key "_foo"/],
    ['model config.json', { _class_name: 'UNet2DModel', sample_size: 32 }, /not a scheduler/],
    ['num_train_timesteps 0', { num_train_timesteps: 0 }, /num_train_timesteps/],
    ['string boolean', { clip_sample: 'yes' }, /clip_sample/],
    ['beta outside [0,1]', { beta_end: 2 }, /beta_end/],
    ['trained_betas length', { num_train_timesteps: 1000, trained_betas: [0.1, 0.2] }, /trained_betas has 2 entries/],
    ['trained_betas value', { trained_betas: [0.1, 1.2] }, /trained_betas"\[1\]/],
    ['sigmoid for DDIM', { beta_schedule: 'sigmoid' }, /does not implement beta_schedule "sigmoid"/],
    ['not JSON', '{"beta_start": ', /not valid JSON/],
    ['an array', [1, 2], /JSON object/],
    ['null value', { steps_offset: null }, /steps_offset/],
  ])('DDIM %s → ConfigError', (_name, json, message) => {
    expect(() => DDIMScheduler.fromConfig(json as Record<string, unknown>)).toThrow(ConfigError);
    expect(() => DDIMScheduler.fromConfig(json as Record<string, unknown>)).toThrow(message);
  });

  test('DDPM accepts sigmoid/laplace; inverse rejects linspace; TS options are validated too', () => {
    expect(new DDPMScheduler({ betaSchedule: 'laplace' }).betas).toHaveLength(1000);
    expect(() => DDIMInverseScheduler.fromConfig({ timestep_spacing: 'linspace' })).toThrow(/does not support timestep_spacing "linspace"/);
    expect(() => DDIMInverseScheduler.fromDDIM(new DDIMScheduler({ timestepSpacing: 'linspace' }))).toThrow(ConfigError);
    expect(() => new DDIMScheduler({ eta: 1 } as never)).toThrow(/unknown DDIMScheduler option "eta"/);
    expect(() => new DDIMScheduler({ clipSampleRange: -1 })).toThrow(ConfigError);
    expect(() => new DDPMScheduler({ varianceType: 'fixed' as never })).toThrow(/variance_type/);
  });
});

describe('setTimesteps / step errors', () => {
  test('n > T, n = 0, non-integer n and an overflowing steps_offset throw ConfigError', () => {
    for (const s of [new DDIMScheduler(), new DDPMScheduler(), new DDIMInverseScheduler()]) {
      expect(() => s.setTimesteps(1001)).toThrow(/cannot be larger than num_train_timesteps/);
      expect(() => s.setTimesteps(0)).toThrow(ConfigError);
      expect(() => s.setTimesteps(2.5)).toThrow(ConfigError);
    }
    expect(() => new DDIMScheduler({ stepsOffset: 10 }).setTimesteps(1000)).toThrow(/steps_offset/);
    expect(() => new DDPMScheduler().setTimesteps({ timesteps: [] })).toThrow(ConfigError);
  });

  test('step before setTimesteps, eta>0 without noise source, DDPM noise without generator', () => {
    const x = tf.zeros([1, 2, 2, 1]);
    expect(() => new DDIMScheduler().step(x, 10, x)).toThrow(/call setTimesteps/);
    expect(() => new DDIMInverseScheduler().step(x, 10, x)).toThrow(/call setTimesteps/);
    const ddim = new DDIMScheduler();
    ddim.setTimesteps(10);
    expect(() => ddim.step(x, 900, x, { eta: 0.5 })).toThrow(/pass a generator/);
    expect(() => ddim.step(x, 900, x, { eta: -1 })).toThrow(ConfigError);
    expect(() => new DDPMScheduler().step(x, 10, x)).toThrow(/pass a generator/);
    x.dispose();
  });

  test('bad tensors and timesteps throw ShapeError / DTypeError / ValueRangeError', () => {
    const x = tf.zeros([1, 2, 2, 3]);
    const wrong = tf.zeros([1, 2, 2, 1]);
    const ints = tf.zeros([1, 2, 2, 3], 'int32');
    const ddim = new DDIMScheduler();
    ddim.setTimesteps(10);
    expect(() => ddim.step(wrong, 900, x)).toThrow(ShapeError);
    expect(() => ddim.step(ints, 900, x)).toThrow(DTypeError);
    expect(() => ddim.step(x, 1000, x)).toThrow(ValueRangeError);
    expect(() => ddim.step(x, 1.5, x)).toThrow(ValueRangeError);
    const ddpm = new DDPMScheduler({ varianceType: 'learned_range' });
    expect(() => ddpm.step(x, 0, x)).toThrow(/twice the sample's channels/);
    ddpm.setTimesteps(10);
    expect(() => ddpm.previousTimestep(901)).toThrow(ValueRangeError);
    expect(() => new DDPMScheduler().getVariance(5, 'learned')).toThrow(ConfigError);
    tf.dispose([x, wrong, ints]);
  });

  test('DDPM learned_range splits the channel axis and interpolates the log variance', () => {
    const s = new DDPMScheduler({ varianceType: 'learned_range', clipSample: false });
    const x = tf.ones([1, 1, 1, 2]);
    const z = tf.ones([1, 1, 1, 2]);
    const t = 500;
    const run = (v: number): number[] =>
      tf.tidy(() => {
        const m = tf.tensor4d([0.1, 0.2, v, v], [1, 1, 1, 4]);
        const withNoise = s.step(m, t, x, { varianceNoise: z });
        const noNoise = s.step(m, t, x, { varianceNoise: tf.zeros([1, 1, 1, 2]) });
        return Array.from(tf.sub(withNoise.prevSample, noNoise.prevSample).dataSync());
      });
    const before = tf.memory().numTensors;
    // v = 1 → σ² = β'; v = −1 → σ² = β̃ (the posterior variance).
    const upper = run(1);
    const lower = run(-1);
    expect(upper[0]).toBeCloseTo(Math.sqrt(s.getVariance(t, 'fixed_large')), 5);
    expect(lower[0]).toBeCloseTo(Math.sqrt(s.getVariance(t, 'fixed_small')), 5);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, z]);
  });
});
