import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { AdamOptimizer, clipGradNorm, learningRateAt } from '../optimizer.js';
import { EmaWeights } from '../ema.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const fx = JSON.parse(fs.readFileSync(path.join(here, 'fixtures', 'optimizer.json'), 'utf8')) as {
  p0: number[];
  grads: number[][];
  cases: Record<string, { weight_decay: number; max_norm: number; norms: number[]; final: number[] }>;
};

beforeAll(async () => {
  await tf.setBackend('wasm');
});

test.each(['adamw', 'adam'] as const)('%s + clip_grad_norm_ match torch.optim', (kind) => {
  const c = fx.cases[kind] as (typeof fx.cases)[string];
  const p = tf.variable(tf.tensor1d(fx.p0));
  const vars = new Map([['p', p]]);
  const opt = new AdamOptimizer({ kind, learningRate: 0.1, weightDecay: c.weight_decay });
  const before = tf.memory().numTensors;
  fx.grads.forEach((g, i) => {
    const grads: Record<string, tf.Tensor> = { p: tf.tensor1d(g) };
    expect(clipGradNorm(grads, c.max_norm)).toBeCloseTo(c.norms[i] as number, 4);
    opt.apply(vars, grads);
    tf.dispose(Object.values(grads));
  });
  expect(tf.memory().numTensors - before).toBe(2); // the two moment variables
  const got = Array.from(p.dataSync());
  got.forEach((v, i) => expect(v).toBeCloseTo(c.final[i] as number, 5));
  // state round trip resumes identically
  const st = opt.getState();
  const opt2 = new AdamOptimizer({ kind, learningRate: 0.1, weightDecay: c.weight_decay });
  opt2.setState(st, vars);
  expect(opt2.step).toBe(4);
  expect(opt2.getState().m.get('p')).toEqual(st.m.get('p'));
  opt.dispose();
  opt2.dispose();
  p.dispose();
});

test('warm-up schedules and EMA decay follow diffusers', () => {
  expect(learningRateAt(1e-3, 0, 'constant_with_warmup', 10, 100)).toBeCloseTo(1e-4);
  expect(learningRateAt(1e-3, 50, 'constant_with_warmup', 10, 100)).toBe(1e-3);
  expect(learningRateAt(1e-3, 100, 'cosine', 0, 100)).toBeCloseTo(0);
  const w = tf.variable(tf.zeros([2]));
  const ema = new EmaWeights(new Map([['w', w]]), { decay: 0.999, useEmaWarmup: false });
  expect(ema.decayAt(1)).toBe(0);
  expect(ema.decayAt(2)).toBeCloseTo(2 / 11);
  expect(ema.decayAt(100000)).toBe(0.999);
  w.assign(tf.ones([2]));
  ema.update(new Map([['w', w]])); // decay 0 at the first step: copies the weights
  expect(Array.from(ema.shadow.get('w')?.dataSync() ?? [])).toEqual([1, 1]);
  ema.dispose();
  w.dispose();
  expect(() => new AdamOptimizer({ learningRate: -1 })).toThrow(/learningRate/);
});
