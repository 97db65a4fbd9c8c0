/**
 * Golden values ported from diffusers' scheduler tests (tests/schedulers/test_scheduler_ddim.py,
 * test_scheduler_ddim_inverse.py, test_scheduler_ddpm.py): deterministic dummy sample k/768 of
 * NCHW shape 4×3×8×8 (here the same values in NHWC), dummy model m = x·t/(t+1), 10 steps,
 * sum/mean of |x| after the loop, with diffusers' tolerances (1e-2 on sums, 1e-3 on means).
 * Run on both the cpu and the wasm backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { DDIMScheduler, DDIMInverseScheduler, DDPMScheduler, ddimTimesteps } from '../index.js';
import { Generator } from '../../random.js';

const B = 4;
const C = 3;
const H = 8;
const W = 8;
const N = B * C * H * W;

/** diffusers' `dummy_sample_deter` (flip = `dummy_noise_deter`), reordered from NCHW to NHWC. */
function dummyDeter(flip = false): tf.Tensor4D {
  const v = new Float32Array(N);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++)
        for (let c = 0; c < C; c++) {
          // torch: arange(N).reshape(C,H,W,B) / N, then permute(3,0,1,2) → [B,C,H,W].
          const k = c * H * W * B + h * W * B + w * B + b;
          v[((b * H + h) * W + w) * C + c] = (flip ? N - 1 - k : k) / N;
        }
  return tf.tensor4d(v, [B, H, W, C]);
}

/** diffusers' `dummy_model`: m = x·t/(t+1). */
function dummyModel(x: tf.Tensor, t: number): tf.Tensor {
  return tf.tidy(() => tf.div(tf.mul(x, t), t + 1));
}

function absStats(x: tf.Tensor): { sum: number; mean: number } {
  const v = x.dataSync();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += Math.abs(v[i] as number);
  return { sum: s, mean: s / v.length };
}

function ddimLoop(config: ConstructorParameters<typeof DDIMScheduler>[0]): tf.Tensor {
  const scheduler = new DDIMScheduler({ clipSample: true, ...config });
  scheduler.setTimesteps(10);
  let sample: tf.Tensor = dummyDeter();
  for (const t of scheduler.timesteps) {
    const next = tf.tidy(() => scheduler.step(dummyModel(sample, t), t, sample, { eta: 0 }).prevSample);
    sample.dispose();
    sample = next;
  }
  return sample;
}

function inverseLoop(config: ConstructorParameters<typeof DDIMInverseScheduler>[0]): tf.Tensor {
  const scheduler = new DDIMInverseScheduler({ clipSample: true, ...config });
  scheduler.setTimesteps(10);
  let sample: tf.Tensor = dummyDeter();
  for (const t of scheduler.timesteps) {
    const next = tf.tidy(() => scheduler.step(dummyModel(sample, t), t, sample).prevSample);
    sample.dispose();
    sample = next;
  }
  return sample;
}

describe.each(['cpu', 'wasm'])('scheduler goldens on %s', (backend) => {
  beforeAll(async () => {
    await tf.setBackend(backend);
    await tf.ready();
  });

  const cases: Array<[string, () => tf.Tensor, number, number]> = [
    ['DDIM epsilon', () => ddimLoop({}), 172.0067, 0.223967],
    ['DDIM v_prediction', () => ddimLoop({ predictionType: 'v_prediction' }), 52.5302, 0.0684],
    ['DDIM set_alpha_to_one, beta_start .01', () => ddimLoop({ setAlphaToOne: true, betaStart: 0.01 }), 149.8295, 0.1951],
    ['DDIM !set_alpha_to_one, beta_start .01', () => ddimLoop({ setAlphaToOne: false, betaStart: 0.01 }), 149.0784, 0.1941],
    ['inverse epsilon', () => inverseLoop({}), 671.6816, 0.8746],
    ['inverse v_prediction', () => inverseLoop({ predictionType: 'v_prediction' }), 1394.2185, 1.8154],
    ['inverse set_alpha_to_one, beta_start .01', () => inverseLoop({ setAlphaToOne: true, betaStart: 0.01 }), 539.9622, 0.7031],
    ['inverse !set_alpha_to_one, beta_start .01', () => inverseLoop({ setAlphaToOne: false, betaStart: 0.01 }), 542.6722, 0.7066],
  ];

  test.each(cases)('%s full loop matches diffusers', (_name, run, sum, mean) => {
    const before = tf.memory().numTensors;
    const x = run();
    const s = absStats(x);
    x.dispose();
    expect(Math.abs(s.sum - sum)).toBeLessThan(1e-2);
    expect(Math.abs(s.mean - mean)).toBeLessThan(1e-3);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('DDIM full loop with noise (add_noise at t=100, 2 steps) matches diffusers', () => {
    const before = tf.memory().numTensors;
    const scheduler = new DDIMScheduler({ clipSample: true });
    scheduler.setTimesteps(10);
    const timesteps = scheduler.timesteps.slice(8);
    expect(timesteps).toEqual([100, 0]);
    const x0 = dummyDeter();
    const noise = dummyDeter(true);
    let sample: tf.Tensor = scheduler.addNoise(x0, noise, timesteps[0] as number);
    x0.dispose();
    noise.dispose();
    for (const t of timesteps) {
      const next = tf.tidy(() => scheduler.step(dummyModel(sample, t), t, sample).prevSample);
      sample.dispose();
      sample = next;
    }
    const s = absStats(sample);
    sample.dispose();
    expect(Math.abs(s.sum - 354.5418)).toBeLessThan(1e-2);
    expect(Math.abs(s.mean - 0.4616)).toBeLessThan(1e-3);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('step returns new tensors and disposes none of the inputs', () => {
    const scheduler = new DDIMScheduler();
    scheduler.setTimesteps(10);
    const x = dummyDeter();
    const m = dummyModel(x, 900);
    const before = tf.memory().numTensors;
    const out = scheduler.step(m, 900, x);
    expect(tf.memory().numTensors).toBe(before + 2);
    expect(x.isDisposed || m.isDisposed).toBe(false);
    expect(out.prevSample.shape).toEqual([B, H, W, C]);
    tf.dispose([out.prevSample, out.predOriginalSample, x, m]);
  });

  test('DDPM posterior step equals DDIM with eta=1 and the same noise (fixed_small, no clipping)', () => {
    // With n = T the DDIM η=1 variance is DDPM's posterior variance β̃_t (Song et al. 2021 §4.1).
    const ddpm = new DDPMScheduler({ clipSample: false });
    const ddim = new DDIMScheduler({ clipSample: false });
    ddim.setTimesteps(1000);
    const x = dummyDeter();
    const z = dummyDeter(true);
    for (const t of [999, 500, 37, 1]) {
      const m = dummyModel(x, t);
      const a = ddpm.step(m, t, x, { varianceNoise: z });
      const b = ddim.step(m, t, x, { eta: 1, varianceNoise: z });
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a.prevSample, b.prevSample))).dataSync()[0] as number);
      // At t=1 DDIM's √(1 − ᾱ_prev − σ²) cancels catastrophically in float32.
      expect(diff).toBeLessThan(t <= 1 ? 1e-4 : 2e-6);
      tf.dispose([m, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
    }
    tf.dispose([x, z]);
  });

  test('DDPM draws noise only for t > 0 and reproducibly from a Generator', () => {
    const ddpm = new DDPMScheduler();
    const x = dummyDeter();
    const m = dummyModel(x, 5);
    const r1 = ddpm.step(m, 5, x, { generator: new Generator(7) });
    const r2 = ddpm.step(m, 5, x, { generator: new Generator(7) });
    expect(Array.from(r1.prevSample.dataSync())).toEqual(Array.from(r2.prevSample.dataSync()));
    const mean = tf.tidy(() => {
      const r0 = ddpm.step(m, 5, x, { varianceNoise: tf.zerosLike(x) });
      return tf.max(tf.abs(tf.sub(r1.prevSample, r0.prevSample))).dataSync()[0] as number;
    });
    expect(mean).toBeGreaterThan(0);
    // t = 0: deterministic, no generator needed.
    const last = ddpm.step(m, 0, x);
    expect(absStats(last.prevSample).sum).toBeGreaterThan(0);
    tf.dispose([x, m, r1.prevSample, r1.predOriginalSample, r2.prevSample, r2.predOriginalSample, last.prevSample, last.predOriginalSample]);
  });
});

describe('timesteps and variances (diffusers tests)', () => {
  test('leading n=50 is 980…0; steps_offset=1 n=5 is [801,601,401,201,1]; inverse ascending', () => {
    const ddim = new DDIMScheduler();
    const ts = ddim.setTimesteps(50);
    expect(ts[0]).toBe(980);
    expect(ts[49]).toBe(0);
    expect(new DDIMScheduler({ stepsOffset: 1 }).setTimesteps(5)).toEqual([801, 601, 401, 201, 1]);
    expect(new DDIMInverseScheduler({ stepsOffset: 1 }).setTimesteps(5)).toEqual([1, 201, 401, 601, 801]);
    expect(new DDPMScheduler({ stepsOffset: 1 }).setTimesteps(5)).toEqual([801, 601, 401, 201, 1]);
  });

  test('trailing and linspace grids match NumPy (round half to even)', () => {
    expect(ddimTimesteps('trailing', 1000, 10)).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(new DDIMInverseScheduler({ timestepSpacing: 'trailing' }).setTimesteps(10)).toEqual([
      99, 199, 299, 399, 499, 599, 699, 799, 899, 999,
    ]);
    // np.round(np.arange(1000, 0, -1000/16)) - 1: 937.5→938, 812.5→812, 687.5→688, 562.5→562 …
    expect(ddimTimesteps('trailing', 1000, 16)).toEqual([
      999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61,
    ]);
    expect(ddimTimesteps('trailing', 1000, 3)).toEqual([999, 666, 332]);
    expect(ddimTimesteps('trailing', 1000, 7)).toEqual([999, 856, 713, 570, 428, 285, 142]);
    expect(ddimTimesteps('linspace', 1000, 7)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    expect(ddimTimesteps('linspace', 1000, 4)).toEqual([999, 666, 333, 0]);
    // NumPy yields a 62nd value (−1) here; we keep exactly n.
    const t61 = ddimTimesteps('trailing', 1000, 61);
    expect(t61).toHaveLength(61);
    expect(Math.min(...t61)).toBeGreaterThanOrEqual(0);
  });

  test('DDIM _get_variance goldens', () => {
    const s = new DDIMScheduler({ clipSample: true });
    expect(Math.abs(s.getVariance(0, 0) - 0)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(420, 400) - 0.14771)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(980, 960) - 0.3246)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(487, 486) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(999, 998) - 0.02)).toBeLessThan(1e-5);
  });

  test('DDPM _get_variance goldens (fixed_small)', () => {
    const s = new DDPMScheduler({ varianceType: 'fixed_small', clipSample: true });
    expect(Math.abs(s.getVariance(0) - 0)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(487) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(999) - 0.02)).toBeLessThan(1e-5);
  });

  test('DDPM custom timesteps: previousTimestep walks the list', () => {
    const s = new DDPMScheduler();
    const timesteps = [100, 87, 50, 1, 0];
    s.setTimesteps({ timesteps });
    timesteps.forEach((t, i) => {
      expect(s.previousTimestep(t)).toBe(i === timesteps.length - 1 ? -1 : timesteps[i + 1]);
    });
    expect(() => s.setTimesteps({ timesteps: [100, 87, 50, 51, 0] })).toThrow(/descending/);
    expect(() => s.setTimesteps({ timesteps: [1000] })).toThrow(/start below/);
    // Full chain before setTimesteps.
    expect(new DDPMScheduler().previousTimestep(10)).toBe(9);
  });
});
