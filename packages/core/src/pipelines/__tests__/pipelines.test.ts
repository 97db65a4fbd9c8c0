import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { DDIMPipeline, DDPMPipeline, GaussianDenoiser, guidedModelOutput, prepareConditioning, type StepCallbackInfo } from '../index.js';
import { DDIMScheduler, DDPMScheduler } from '../../schedulers/index.js';
import { EmpiricalDenoiser } from '../../models/empirical_denoiser.js';
import { Generator, randn } from '../../random.js';
import { asImageBatch } from '../../tensor/validate.js';
import type { Denoiser } from '../../models/types.js';
import { ConfigError, NonFiniteError, ShapeError, ValueRangeError } from '../../errors.js';

const S = 8;
const C = 3;

function stats(x: tf.Tensor): { mean: number; std: number; min: number; max: number } {
  const v = x.dataSync();
  let s = 0;
  let s2 = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const a of v) {
    s += a;
    s2 += a * a;
    min = Math.min(min, a);
    max = Math.max(max, a);
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(s2 / v.length - mean * mean), min, max };
}

/** Law of strided DDPM (leading, fixed_small, no clipping) for Gaussian data N(μ, s²), in float64. */
function stridedDdpmLaw(n: number, mu: number, s: number): { mean: number; std: number } {
  const T = 1000;
  const ac: number[] = [];
  let acc = 1;
  for (let i = 0; i < T; i++) {
    acc *= 1 - (1e-4 + (i * (0.02 - 1e-4)) / (T - 1));
    ac.push(acc);
  }
  const r = Math.floor(T / n);
  const ts = Array.from({ length: n }, (_, i) => (n - 1 - i) * r);
  let m = 0;
  let v = 1;
  ts.forEach((t, i) => {
    const tp = i + 1 < n ? (ts[i + 1] as number) : -1;
    const a = ac[t] as number;
    const ap = tp >= 0 ? (ac[tp] as number) : 1;
    const b = 1 - a;
    const alpha = a / ap;
    const beta = 1 - alpha;
    const p = (Math.sqrt(a) * s * s) / (a * s * s + b); // x̂0 = p·x + q
    const q = (b * mu) / (a * s * s + b);
    const c0 = (Math.sqrt(ap) * beta) / b;
    const c1 = (Math.sqrt(alpha) * (1 - ap)) / b;
    const A = c0 * p + c1;
    m = A * m + c0 * q;
    v = A * A * v + (t > 0 ? Math.max(((1 - ap) / b) * beta, 1e-20) : 0);
  });
  return { mean: m, std: Math.sqrt(v) };
}

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

describe('DDIMPipeline', () => {
  const scheduler = new DDIMScheduler({ clipSample: false });
  const gaussian = new GaussianDenoiser({ alphasCumprod: scheduler.alphasCumprod, sampleSize: S, channels: C, mean: 0.2, std: 0.3 });

  test('samples the Gaussian data distribution, reproducibly from a seed, without leaks', async () => {
    const pipe = new DDIMPipeline(gaussian, scheduler);
    const before = tf.memory().numTensors;
    const a = await pipe.generate({ batchSize: 64, numInferenceSteps: 100, generator: 1 });
    expect(tf.memory().numTensors).toBe(before + 1);
    const s = stats(a);
    expect(Math.abs(s.mean - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(s.std - 0.3)).toBeLessThan(0.02);
    expect(a.shape).toEqual([64, S, S, C]);
    const b = await pipe.generate({ batchSize: 64, numInferenceSteps: 100, generator: new Generator(1) });
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const c = await pipe.generate({ batchSize: 64, numInferenceSteps: 100, generator: 2 });
    expect(Array.from(c.dataSync())).not.toEqual(Array.from(a.dataSync()));
    tf.dispose([a, b, c]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('eta = 1 is stochastic but seeded; latents input needs no generator at eta = 0', async () => {
    const pipe = new DDIMPipeline(gaussian, scheduler);
    const x = await pipe.generate({ batchSize: 4, numInferenceSteps: 20, eta: 1, generator: 3 });
    const y = await pipe.generate({ batchSize: 4, numInferenceSteps: 20, eta: 1, generator: 3 });
    const d = await pipe.generate({ batchSize: 4, numInferenceSteps: 20, eta: 0, generator: 3 });
    expect(Array.from(x.dataSync())).toEqual(Array.from(y.dataSync()));
    expect(Array.from(x.dataSync())).not.toEqual(Array.from(d.dataSync()));
    d.dispose();
    const latents = randn([2, S, S, C], 4);
    const z = await pipe.generate({ latents, numInferenceSteps: 10 });
    expect(latents.isDisposed).toBe(false);
    expect(z.shape).toEqual([2, S, S, C]);
    tf.dispose([x, y, z, latents]);
  });

  test('callback sees every step: index, timestep, x_t, x_{t−r} and x̂0', async () => {
    const pipe = new DDIMPipeline(gaussian, scheduler);
    const seen: Array<Omit<StepCallbackInfo, 'sample' | 'prevSample' | 'predOriginalSample'> & { shapes: number[][] }> = [];
    const out = await pipe.generate({
      batchSize: 2,
      numInferenceSteps: 5,
      generator: 5,
      callback: async (info) => {
        await Promise.resolve();
        seen.push({
          step: info.step,
          numSteps: info.numSteps,
          timestep: info.timestep,
          shapes: [info.sample.shape, info.prevSample.shape, info.predOriginalSample.shape],
        });
      },
    });
    expect(seen.map((s) => s.timestep)).toEqual([800, 600, 400, 200, 0]);
    expect(seen.map((s) => s.step)).toEqual([0, 1, 2, 3, 4]);
    expect(seen.every((s) => s.numSteps === 5 && s.shapes.every((sh) => sh.join() === [2, S, S, C].join()))).toBe(true);
    out.dispose();
  });

  test('class-conditional sampling with a memorizing model lands on training images of the class', async () => {
    const sched = new DDIMScheduler();
    const points = asImageBatch(tf.tidy(() => tf.clipByValue(randn([6, 4, 4, 1], 6), -1, 1)), 'model');
    const labels = Int32Array.from([0, 0, 1, 1, 2, 2]);
    const model = new EmpiricalDenoiser(points, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 3 });
    const pipe = new DDIMPipeline(model, sched);
    for (const guidanceScale of [1, 3]) {
      const classLabels = [0, 1, 2, 2, 1, 0];
      const out = await pipe.generate({ batchSize: 6, numInferenceSteps: 50, generator: 7, classLabels, guidanceScale, nullClassId: 3 });
      const pts = tf.tidy(() => tf.reshape(points, [6, -1]));
      const x = tf.tidy(() => tf.reshape(out, [6, -1]));
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(tf.expandDims(x, 1), tf.expandDims(pts, 0))), 2));
      const dv = d.arraySync() as number[][];
      dv.forEach((row, i) => {
        const j = row.indexOf(Math.min(...row));
        // w = 1 reproduces a training image of the class exactly; w > 1 extrapolates (ε̃ leaves
        // the data manifold) but stays nearest to the requested class.
        if (guidanceScale === 1) expect(row[j]).toBeLessThan(1e-3);
        expect(labels[j]).toBe(classLabels[i]);
      });
      tf.dispose([out, pts, x, d]);
    }
    model.dispose();
    points.dispose();
  });

  test('bad conditioning, latents and generators throw typed errors', async () => {
    const sched = new DDIMScheduler();
    const points = asImageBatch(tf.zeros([2, 4, 4, 1]), 'model');
    const cond = new EmpiricalDenoiser(points, { alphasCumprod: sched.alphasCumprod, labels: Int32Array.from([0, 1]), numClasses: 2 });
    const pipe = new DDIMPipeline(cond, sched);
    await expect(pipe.generate({ batchSize: 2, generator: 1 })).rejects.toThrow(/pass classLabels/);
    await expect(pipe.generate({ batchSize: 2, generator: 1, classLabels: [0] })).rejects.toThrow(ShapeError);
    await expect(pipe.generate({ batchSize: 2, generator: 1, classLabels: [0, 5] })).rejects.toThrow(ValueRangeError);
    await expect(pipe.generate({ batchSize: 2, generator: 1, classLabels: [0, 1], guidanceScale: 2 })).rejects.toThrow(/nullClassId/);
    await expect(pipe.generate({ batchSize: 2, generator: 1, classLabels: [0, 1], guidanceScale: 2, nullClassId: 9 })).rejects.toThrow(ValueRangeError);
    const unc = new DDIMPipeline(gaussian, scheduler);
    await expect(unc.generate({ batchSize: 1, generator: 1, classLabels: [0] })).rejects.toThrow(/unconditional/);
    await expect(unc.generate({ batchSize: 1 })).rejects.toThrow(/pass a generator/);
    await expect(unc.generate({ batchSize: 1, eta: 0.5, latents: randn([1, S, S, C], 1) })).rejects.toThrow(ConfigError);
    const wrong = randn([1, 4, 4, C], 1);
    await expect(unc.generate({ latents: wrong })).rejects.toThrow(ShapeError);
    wrong.dispose();
    expect(() => new DDIMPipeline(gaussian, new DDPMScheduler() as never)).toThrow(ConfigError);
    cond.dispose();
    points.dispose();
  });

  test('a NaN from the model at some step throws NonFiniteError naming the step and timestep, no leaks', async () => {
    const sched = new DDIMScheduler();
    const poisoned: Denoiser = {
      info: gaussian.info,
      predict: (x, t) =>
        tf.tidy(() => {
          const eps = gaussian.predict(x, t);
          return (t === 400 ? tf.mul(eps, NaN) : eps) as tf.Tensor4D;
        }),
    };
    const pipe = new DDIMPipeline(poisoned, sched);
    const before = tf.memory().numTensors;
    const err = await pipe.generate({ batchSize: 2, numInferenceSteps: 5, generator: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as NonFiniteError).details).toMatchObject({ step: 2, timestep: 400, tensor: 'model output' });
    expect((err as Error).message).toMatch(/step 2 of 5 \(timestep 400\)/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('DDPMPipeline', () => {
  test('strided DDPM samples the Gaussian data distribution; seeded; custom timesteps', async () => {
    const sched = new DDPMScheduler({ clipSample: false });
    const model = new GaussianDenoiser({ alphasCumprod: sched.alphasCumprod, sampleSize: S, channels: C, mean: -0.1, std: 0.4 });
    const pipe = new DDPMPipeline(model, sched);
    const before = tf.memory().numTensors;
    const a = await pipe.generate({ batchSize: 16, numInferenceSteps: 100, generator: 9 });
    const s = stats(a);
    // Closed form: with ε* linear in x, every DDPM step (Ho et al. eq. 7, β̃ noise) is an affine map
    // plus Gaussian noise, so the sample law is N(m, v) with m, v from a float64 recursion.
    const exact = stridedDdpmLaw(100, -0.1, 0.4);
    expect(exact.std).toBeCloseTo(0.37, 2); // 100 strided steps under-disperse (0.396 at 1000)
    expect(Math.abs(s.mean - exact.mean)).toBeLessThan(0.02);
    expect(Math.abs(s.std - exact.std)).toBeLessThan(0.015);
    const b = await pipe.generate({ batchSize: 16, numInferenceSteps: 100, generator: 9 });
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const steps: number[] = [];
    const c = await pipe.generate({ generator: 1, timesteps: [900, 500, 100, 0], callback: (i) => void steps.push(i.timestep) });
    expect(steps).toEqual([900, 500, 100, 0]);
    tf.dispose([a, b, c]);
    expect(tf.memory().numTensors).toBe(before);
    await expect(pipe.generate({} as never)).rejects.toThrow(/pass a generator/);
    await expect(pipe.generate({ generator: 1, timesteps: [5, 1], numInferenceSteps: 2 })).rejects.toThrow(ConfigError);
  });

  test('learned_range variance: 2C-channel model outputs are split; guidance acts on the ε half', async () => {
    const sched = new DDPMScheduler({ varianceType: 'learned_range', clipSample: false });
    const base = new GaussianDenoiser({ alphasCumprod: sched.alphasCumprod, sampleSize: S, channels: C, mean: 0, std: 0.5 });
    const learned: Denoiser = {
      info: { ...base.info, outChannels: 2 * C },
      // v = 0: log σ² halfway between log β̃ and log β'.
      predict: (x, t) => tf.tidy(() => tf.concat([base.predict(x, t), tf.zerosLike(x)], 3)),
    };
    const pipe = new DDPMPipeline(learned, sched);
    const out = await pipe.generate({ batchSize: 8, numInferenceSteps: 50, generator: 2 });
    const s = stats(out);
    expect(Number.isFinite(s.mean)).toBe(true);
    expect(Math.abs(s.std - 0.5)).toBeLessThan(0.08);
    out.dispose();
  });

  test('guidedModelOutput = ε_∅ + w·(ε_y − ε_∅) on the first C channels, conditional extra channels kept', () => {
    const sched = new DDIMScheduler();
    const points = asImageBatch(tf.tidy(() => tf.clipByValue(randn([4, 4, 4, 1], 8), -1, 1)), 'model');
    const model = new EmpiricalDenoiser(points, { alphasCumprod: sched.alphasCumprod, labels: Int32Array.from([0, 0, 1, 1]), numClasses: 2 });
    const withVar: Denoiser = {
      info: { ...model.info, outChannels: 2 },
      // Extra channel = the label each row was evaluated with, to see which half it comes from.
      predict: (x, t, y) =>
        tf.tidy(() => {
          const label = tf.mul(tf.cast(tf.reshape(y as tf.Tensor, [-1, 1, 1, 1]), 'float32'), tf.onesLike(x));
          return tf.concat([model.predict(x, t, y), label], 3) as tf.Tensor4D;
        }),
    };
    const x = randn([2, 4, 4, 1], 9);
    const before = tf.memory().numTensors;
    const cond = prepareConditioning(withVar, 2, { classLabels: [0, 1], guidanceScale: 2.5, nullClassId: 2 });
    const guided = guidedModelOutput(withVar, x, 300, cond);
    expect(tf.memory().numTensors).toBe(before + 1);
    const expected = tf.tidy(() => {
      const ec = model.predict(x, 300, tf.tensor1d([0, 1], 'int32'));
      const eu = model.predict(x, 300, tf.tensor1d([2, 2], 'int32'));
      return tf.add(eu, tf.mul(2.5, tf.sub(ec, eu)));
    });
    const eps = tf.slice(guided, [0, 0, 0, 0], [-1, -1, -1, 1]);
    const extra = tf.slice(guided, [0, 0, 0, 1], [-1, -1, -1, 1]);
    expect(tf.max(tf.abs(tf.sub(eps, expected))).dataSync()[0]).toBeLessThan(1e-5);
    // the extra channel carries the conditional half's labels (0 and 1), not the null id 2.
    expect(Array.from(tf.max(extra, [1, 2, 3]).dataSync())).toEqual([0, 1]);
    tf.dispose([x, guided, expected, eps, extra, points]);
    model.dispose();
  });
});
