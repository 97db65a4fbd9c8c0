import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  ConfigError,
  DDIMPipeline,
  DDIMScheduler,
  DDPMPipeline,
  DDPMScheduler,
  EmpiricalDenoiser,
  NonFiniteError,
  type Denoiser,
  type ImageBatch,
} from '@diffmem/core';
import { ReferenceIndex, nl2 } from '@diffmem/metrics';
import {
  AMGPipeline,
  OFFICIAL_SD_THRESHOLD,
  PixelNl2Similarity,
  THRESHOLDS,
  officialSDConfig,
  paperConfig,
  thresholdAt,
  type AMGStepLog,
} from '../index.js';
import { FakeScorer } from './fake_scorer.js';
import { maxAbsDiff, saturation, smoothImages, toDisplay, toModel } from './helpers.js';

const S = 8;
const C = 3;
const M = 64;

let trainD: ImageBatch<'display'>;
let train: ImageBatch<'model'>;
let labels: Int32Array;
let index: ReferenceIndex;

beforeAll(async () => {
  await tf.setBackend('wasm');
  trainD = smoothImages(M, S, C, 1);
  train = toModel(trainD);
  labels = Int32Array.from({ length: M }, (_, i) => i % 4);
  index = ReferenceIndex.fromImages(trainD);
});

afterAll(() => {
  tf.dispose([trainD, train]);
  index.dispose();
});

const never = THRESHOLDS.constant(1e9);

describe('AMG sampling equals core sampling when guidance never fires', () => {
  test('DDIM, unconditional', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    const plain = await new DDIMPipeline(den, sched).generate({ batchSize: 4, numInferenceSteps: 10, generator: 11 });
    const before = tf.memory().numTensors;
    const sim = new PixelNl2Similarity(index);
    const out = await new AMGPipeline(den, sched).generate({
      batchSize: 4,
      numInferenceSteps: 10,
      generator: 11,
      amg: { ...paperConfig(sim), threshold: never },
    });
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(maxAbsDiff(out.images, plain)).toBe(0);
    expect(out.log).toHaveLength(10);
    expect(out.guidedSteps).toEqual([0, 0, 0, 0]);
    expect(out.log[0]?.sigma.every((s) => s <= 0)).toBe(true);
    tf.dispose([plain, out.images]);
    den.dispose();
  });

  test('DDPM, class-conditional with classifier-free guidance (null class = last row)', async () => {
    const sched = new DDPMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    const cond = { classLabels: [0, 1, 2, 3], guidanceScale: 3, nullClassId: 4 };
    const plain = await new DDPMPipeline(den, sched).generate({ ...cond, batchSize: 4, numInferenceSteps: 8, generator: 5 });
    const sim = new PixelNl2Similarity(index, { labels });
    const out = await new AMGPipeline(den, sched).generate({
      ...cond,
      batchSize: 4,
      numInferenceSteps: 8,
      generator: 5,
      amg: { ...paperConfig(sim, { cfg: true }), threshold: never },
    });
    expect(maxAbsDiff(out.images, plain)).toBe(0);
    tf.dispose([plain, out.images]);
    den.dispose();
  });

  test('DDPM with learned variance (2C output channels, learned_range): plain equivalence, and the mean shift runs', async () => {
    const sched = new DDPMScheduler({ varianceType: 'learned_range' });
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    // ε plus a constant variance channel v = 0.3 (interpolates log β̃ and log β).
    const learned: Denoiser = {
      info: { ...den.info, outChannels: 2 * C },
      predict: (x, t, y) => tf.tidy(() => tf.concat([den.predict(x, t, y), tf.fill(x.shape, 0.3)], 3) as tf.Tensor4D),
    };
    const plain = await new DDPMPipeline(learned, sched).generate({ batchSize: 3, numInferenceSteps: 6, generator: 8 });
    const sim = new PixelNl2Similarity(index);
    const out = await new AMGPipeline(learned, sched).generate({ batchSize: 3, numInferenceSteps: 6, generator: 8, amg: { ...paperConfig(sim), threshold: never } });
    expect(maxAbsDiff(out.images, plain)).toBe(0);
    const shifted = await new AMGPipeline(learned, sched).generate({
      batchSize: 3,
      numInferenceSteps: 6,
      generator: 8,
      amg: { similarity: sim, threshold: THRESHOLDS.constant(-1.9), sim: { kind: 'mean-shift', scale: 80000 } },
    });
    expect(shifted.guidedSteps.every((g) => g > 0)).toBe(true);
    expect(maxAbsDiff(shifted.images, plain)).toBeGreaterThan(1e-3);
    tf.dispose([plain, out.images, shifted.images]);
    den.dispose();
  });
});

describe('AMG against a perfectly memorizing model (core EmpiricalDenoiser)', () => {
  test('DDPM: plain sampling copies training images; AMG (strong) leaves none below nL2 1.4, in range', async () => {
    const sched = new DDPMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    const opts = { batchSize: 32, numInferenceSteps: 20, generator: 3 };
    const t0 = performance.now();
    const plain = await new DDPMPipeline(den, sched).generate(opts);
    const plainMs = performance.now() - t0;
    const plainNl2 = nl2(toDisplay(plain), index).nl2;
    const before = tf.memory().numTensors;
    const sim = new PixelNl2Similarity(index);
    const t1 = performance.now();
    const out = await new AMGPipeline(den, sched).generate({ ...opts, amg: paperConfig(sim, { scale: 800 }) });
    const amgMs = performance.now() - t1;
    expect(tf.memory().numTensors).toBe(before + 1);
    const d = toDisplay(out.images);
    const amgNl2 = nl2(d, index).nl2;
    const frac = (v: number[]): number => v.filter((x) => x < 1.4).length / v.length;
    console.log(
      `EmpiricalDenoiser DDPM 20 steps, 32 samples: plain %<1.4 = ${frac(plainNl2)} (${plainMs.toFixed(0)} ms), ` +
        `AMG %<1.4 = ${frac(amgNl2)}, min nL2 ${Math.min(...amgNl2).toFixed(3)}, saturated ${saturation(out.images).toFixed(4)} (${amgMs.toFixed(0)} ms)`,
    );
    expect(frac(plainNl2)).toBe(1);
    expect(frac(amgNl2)).toBeLessThanOrEqual(0.05);
    expect(saturation(out.images)).toBeLessThan(0.1);
    expect(out.guidedSteps.every((g) => g > 0)).toBe(true);
    tf.dispose([plain, out.images, d]);
    den.dispose();
  });

  test('DDIM: AMG measurably moves samples off the training images', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    const opts = { batchSize: 16, numInferenceSteps: 10, generator: 4 };
    const plain = await new DDIMPipeline(den, sched).generate(opts);
    const sim = new PixelNl2Similarity(index);
    const out = await new AMGPipeline(den, sched).generate({ ...opts, amg: paperConfig(sim, { scale: 800 }) });
    const p = nl2(toDisplay(plain), index).nl2;
    const a = nl2(toDisplay(out.images), index).nl2;
    expect(Math.max(...p)).toBeLessThan(1e-3);
    expect(Math.min(...a)).toBeGreaterThan(0.3);
    tf.dispose([plain, out.images]);
    den.dispose();
  });
});

/** The official iDDPM p_sample / p_sample_loop_progressive control flow, batch of one, globals as in the code. */
function officialIddpmReference(nl2Seq: number[], thres: (step: number) => number): { guided: boolean[]; triggered: boolean[] } {
  let skip = 0;
  let countdown = 10;
  let trigger = false;
  const guided: boolean[] = [];
  const triggered: boolean[] = [];
  for (let i = 0; i < nl2Seq.length; i++) {
    const ml2 = nl2Seq[i] as number;
    // ablated call (cond_fn = None)
    if (skip !== 3 || countdown === 0) {
      if (countdown === 0) {
        countdown = 10;
        skip = 0;
      }
      if (ml2 < 1.5) trigger = true;
    } else countdown -= 1;
    let g = false;
    if (trigger) {
      // guided call
      if (skip !== 3 || countdown === 0) {
        if (countdown === 0) {
          countdown = 10;
          skip = 0;
        }
        if (ml2 < thres(i)) {
          skip = 0;
          g = true;
        } else skip += 1;
      } else countdown -= 1;
    }
    guided.push(g);
    triggered.push(trigger);
  }
  return { guided, triggered };
}

describe('official iDDPM control flow (trigger, skip/countdown pause)', () => {
  test('fires exactly where the official code would', async () => {
    const n = 40;
    // nL2 of the sample: quiet, then a trigger at step 5, then alternating spells (mulberry-ish sequence).
    const seq = Array.from({ length: n }, (_, i) => (i < 5 ? 1.9 : i === 5 ? 1.45 : [1.6, 1.8, 1.8, 1.8, 1.6, 1.6, 1.8][i % 7] as number));
    const sched = new DDPMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    const scorer = new FakeScorer('nl2', (call, ctx, req, m) => new Array(m).fill(-(seq[sched.timesteps.indexOf(ctx.timestep)] as number)));
    const out = await new AMGPipeline(den, sched).generate({
      batchSize: 2,
      numInferenceSteps: n,
      generator: 1,
      amg: { similarity: scorer, flow: 'official-iddpm', threshold: THRESHOLDS.constant(-1.7), sim: { kind: 'paper', c3: 0 } },
    });
    const ref = officialIddpmReference(seq, () => 1.7);
    expect(out.log.map((l: AMGStepLog) => l.fired.sim[0])).toEqual(ref.guided);
    expect(out.log.map((l: AMGStepLog) => l.fired.sim[1])).toEqual(ref.guided);
    expect(out.log.map((l: AMGStepLog) => l.triggered?.[0])).toEqual(ref.triggered);
    expect(ref.guided.filter(Boolean).length).toBeGreaterThan(3);
    expect(out.log.some((l) => l.paused?.[0])).toBe(true);
    out.images.dispose();
    den.dispose();
  });
});

/** The official SD G_spe/G_dup bookkeeping (`p_sample_ddim`, s0 = 7.5, dup caption present). */
function officialSdReference(sigma1: number[], thr: number[]): { s1: number[]; s2: number[]; dup: boolean[] } {
  let g3 = 10;
  const s1: number[] = [];
  const s2: number[] = [];
  const dup: boolean[] = [];
  sigma1.forEach((s, i) => {
    let a = 0;
    let b = 0;
    let d = false;
    if (s > 0) {
      a = Math.max(Math.min(6.5, (6.5 / 0.5) * s), 0);
      if (s > (thr[i] as number) || g3 !== 10) {
        if (s > (thr[i] as number)) g3 = 10;
        g3 -= 1;
        if (g3 === 0) g3 = 10;
        b = Math.max(Math.min(6.5 - a, ((6.5 - a) / 0.3) * s), 0);
        d = true;
      }
    }
    s1.push(a);
    s2.push(b);
    dup.push(d);
  });
  return { s1, s2, dup };
}

describe('official SD control flow (G_spe, G_dup latch, σ recomputed before G_sim)', () => {
  test('scales and the 10-step G_dup latch follow the code', async () => {
    const n = 30;
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    sched.setTimesteps(n);
    const ts = [...sched.timesteps];
    const thr = ts.map((t) => thresholdAt(OFFICIAL_SD_THRESHOLD, t, 1000));
    // σ1 per step: mostly below λ (≈0.3–0.4), a few spikes above it, never ≥ 0.5 (so s2 has budget).
    const sigma1 = ts.map((_, i) => ([2, 17].includes(i) ? 0.45 : i === 25 ? -0.1 : 0.2 + 0.005 * (i % 5)));
    const scorer = new FakeScorer(
      'cosine',
      (call, ctx, req, m) => new Array(m).fill((sigma1[ts.indexOf(ctx.timestep)] as number) - (req.grad ? 0.05 : 0)),
      Int32Array.from({ length: 100 }, () => 2),
    );
    const out = await new AMGPipeline(den, sched).generate({
      batchSize: 1,
      numInferenceSteps: n,
      generator: 2,
      classLabels: [1],
      guidanceScale: 7.5,
      nullClassId: 4,
      amg: officialSDConfig(scorer, { cfg: true }),
    });
    const ref = officialSdReference(sigma1, thr);
    out.log.forEach((l, i) => {
      expect(l.scales.s1[0]).toBeCloseTo(ref.s1[i] as number, 10);
      expect(l.scales.s2[0]).toBeCloseTo(ref.s2[i] as number, 10);
      expect(l.fired.dup[0]).toBe(ref.dup[i]);
      if (sigma1[i] as number > 0) {
        expect(l.sigmaBefore?.[0]).toBeCloseTo(sigma1[i] as number, 12);
        expect(l.sigma[0]).toBeCloseTo((sigma1[i] as number) - 0.05, 12); // σ2 from the second evaluation
        expect(l.fired.sim[0]).toBe((sigma1[i] as number) - 0.05 > (thr[i] as number));
      } else {
        expect(l.fired.spe[0]).toBe(false);
        expect(l.fired.sim[0]).toBe(false);
      }
      expect(l.dupLabel[0]).toBe(2);
    });
    expect(ref.dup.filter(Boolean).length).toBe(20); // two spikes × 10 latched steps
    expect(scorer.calls.filter((c) => c.grad).length).toBe(n - 1); // σ2 + ∇σ2 wherever σ1 > 0
    out.images.dispose();
    den.dispose();
  });
});

describe('the guided ε̂ is Eqs. 10–17', () => {
  test('ε = ε_u + (s0 − s1)(ε_c − ε_u) + s2(ε_u − ε_N) + c3·√(1−ᾱ)·∇_{x_t}σ', async () => {
    const sched = new DDIMScheduler({ clipSample: false });
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    const scorer = new FakeScorer('cosine', (call, ctx, req, m) => new Array(m).fill(0.35), Int32Array.from({ length: 100 }, () => 3), 100, 0.01);
    const latents = tf.randomNormal([2, S, S, C], 0, 1, 'float32', 8) as tf.Tensor4D;
    let captured: tf.Tensor4D | null = null;
    let log0: AMGStepLog | null = null;
    const out = await new AMGPipeline(den, sched).generate({
      latents,
      numInferenceSteps: 2,
      classLabels: [0, 1],
      guidanceScale: 4,
      nullClassId: 4,
      amg: { ...paperConfig(scorer, { cfg: true }), sim: { kind: 'paper', c3: 3 }, threshold: THRESHOLDS.constant(0.3) },
      callback: ({ step, prevSample, log }) => {
        if (step === 0) {
          captured = tf.clone(prevSample);
          log0 = log;
        }
      },
    });
    const l = log0 as unknown as AMGStepLog;
    const t = l.timestep;
    const a = sched.alphasCumprod[t] as number;
    expect(l.fired.spe).toEqual([true, true]);
    expect(l.fired.dup).toEqual([true, true]);
    expect(l.dupLabel).toEqual([3, 3]);
    const s1 = l.scales.s1[0] as number;
    const s2 = l.scales.s2[0] as number;
    expect(s1).toBeCloseTo(Math.min((3 / 0.5) * 0.35, 3), 6);
    expect(s2).toBeCloseTo(Math.min(((3 - s1) / 0.3) * 0.35, 3 - s1), 6);
    const expected = tf.tidy(() => {
      const epsC = den.predict(latents, t, tf.tensor1d([0, 1], 'int32'));
      const epsU = den.predict(latents, t, tf.tensor1d([4, 4], 'int32'));
      const epsN = den.predict(latents, t, tf.tensor1d([3, 3], 'int32'));
      const grad = tf.fill(latents.shape, 0.01 / Math.fround(Math.sqrt(a)));
      const eps = tf.add(
        tf.add(tf.add(epsU, tf.mul(4 - s1, tf.sub(epsC, epsU))), tf.mul(s2, tf.sub(epsU, epsN))),
        tf.mul(3 * Math.sqrt(1 - a), grad),
      ) as tf.Tensor4D;
      sched.setTimesteps(2);
      return sched.step(eps, t, latents).prevSample;
    });
    expect(maxAbsDiff(captured as unknown as tf.Tensor4D, expected)).toBeLessThan(1e-4);
    tf.dispose([latents, captured as unknown as tf.Tensor, expected, out.images]);
    den.dispose();
  });
});

describe('bad input', () => {
  test('G_spe / G_dup on an unconditional model, G_dup without labels, mean shift with DDIM η = 0', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    const sim = new PixelNl2Similarity(index);
    const condDen = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod, labels, numClasses: 4 });
    const before = tf.memory().numTensors;
    const base = { batchSize: 2, numInferenceSteps: 3, generator: 0 };
    await expect(new AMGPipeline(den, sched).generate({ ...base, amg: { ...paperConfig(sim), spe: { c1: 'auto' } } })).rejects.toThrow(ConfigError);
    await expect(new AMGPipeline(den, sched).generate({ ...base, amg: { ...paperConfig(sim), dup: {} } })).rejects.toThrow(/labels/);
    await expect(new AMGPipeline(den, sched).generate({ ...base, amg: { ...paperConfig(sim), sim: { kind: 'mean-shift', scale: 1 } } })).rejects.toThrow(/stochastic/);
    const labelled = new PixelNl2Similarity(index, { labels });
    // Class-conditional but without CFG: G_spe has nothing to reduce.
    await expect(
      new AMGPipeline(condDen, sched).generate({ ...base, classLabels: [0, 1], amg: paperConfig(labelled, { cfg: true }) }),
    ).rejects.toThrow(/guidanceScale > 1/);
    expect(tf.memory().numTensors).toBe(before);
    den.dispose();
    condDen.dispose();
  });

  test('NaN from the model or from guidance stops with the step and leaks nothing', async () => {
    const sched = new DDIMScheduler();
    const den = new EmpiricalDenoiser(train, { alphasCumprod: sched.alphasCumprod });
    let calls = 0;
    const broken: Denoiser = {
      info: den.info,
      predict: (x, t, y) => {
        calls += 1;
        const e = den.predict(x, t, y);
        if (calls < 3) return e;
        const bad = tf.mul(e, Number.NaN) as tf.Tensor4D;
        e.dispose();
        return bad;
      },
    };
    const sim = new PixelNl2Similarity(index);
    const before = tf.memory().numTensors;
    const err = await new AMGPipeline(broken, sched)
      .generate({ batchSize: 2, numInferenceSteps: 5, generator: 0, amg: { ...paperConfig(sim), threshold: never } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as NonFiniteError).details?.['step']).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    // Guidance that overflows: c3 so large the edited ε̂ becomes Inf/NaN.
    const err2 = await new AMGPipeline(den, sched)
      .generate({ batchSize: 2, numInferenceSteps: 5, generator: 0, amg: { ...paperConfig(sim), sim: { kind: 'paper', c3: 3e38 }, threshold: THRESHOLDS.always() } })
      .catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(NonFiniteError);
    expect((err2 as NonFiniteError).message).toMatch(/step 0 .*timestep/);
    expect(tf.memory().numTensors).toBe(before);
    den.dispose();
  });
});
