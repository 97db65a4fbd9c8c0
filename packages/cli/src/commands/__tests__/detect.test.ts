import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DDIMScheduler, decodeImageBytes, loadDiffusionPipeline, randn, selectBackend } from '@diffmem/core';
import { rocAuc } from '@diffmem/metrics';
import { runDetect, type DetectOptions, type DetectResult } from '../detect.js';
import { runCli, tmpDir, trainTiny } from './harness.js';

let root: string;
let cond: string;

beforeAll(async () => {
  await selectBackend({ prefer: ['wasm'] });
  root = tmpDir('detect');
  cond = await trainTiny(path.join(root, 'cond')); // duplicated images in class 1, CFG null class 10
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const base = (o: Partial<DetectOptions> = {}): DetectOptions => ({
  model: cond,
  perClass: 3,
  classes: [0, 1, 2],
  steps: 4,
  guidanceScale: 7.5,
  scoreSteps: 'all',
  positive: 'duplicated-classes',
  rmsThreshold: 0.1,
  fpr: 0.01,
  seed: 0,
  quiet: true,
  ...o,
});

test('detect --json: per-class magnitudes, duplicated classes as positives, AUC / TPR@FPR / threshold; writes JSON and a grid', async () => {
  const out = path.join(root, 'det.json');
  const grid = path.join(root, 'det.png');
  const r = await runCli(['--json', 'detect', '-m', cond, '--per-class', '3', '--classes', '0,1,2', '--steps', '4', '-o', out, '--grid', grid]);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout) as DetectResult;
  expect(JSON.parse(fs.readFileSync(out, 'utf8')).auc).toBe(j.auc);
  expect(j.samples).toHaveLength(9);
  expect(j.classes.map((c) => c.duplicatedImages)).toEqual([0, 2, 0]);
  expect(j.samples.filter((s) => s.positive).map((s) => s.class)).toEqual([1, 1, 1]);
  expect(j.positives).toBe(3);
  expect(j.negatives).toBe(6);
  for (const c of j.classes) {
    const m = j.samples.filter((s) => s.class === c.class).map((s) => s.magnitude);
    expect(c.meanMagnitude).toBeCloseTo(m.reduce((a, b) => a + b, 0) / m.length, 10);
  }
  expect(j.auc).toBeCloseTo(rocAuc(j.samples.map((s) => s.magnitude), j.samples.map((s) => s.positive)), 12);
  // Calibrated on the negatives: none of 6 may exceed the threshold at 1% FPR.
  expect(j.threshold).toBe(Math.max(...j.samples.filter((s) => !s.positive).map((s) => s.magnitude)));
  expect(j.achievedFpr).toBe(0);
  expect(j.settings.scoredTimesteps).toEqual([750, 500, 250, 0]);
  // Every generation is compared with the training set.
  for (const s of j.samples) expect(s.rms).toBeGreaterThan(0);
  const png = decodeImageBytes(fs.readFileSync(grid), 1, grid);
  expect(png.width).toBeGreaterThan(3 * 8);
});

test('the magnitude is ‖ε(x_T, c) − ε(x_T, ∅)‖₂ of the seeded x_T (first step), independent of the other classes', async () => {
  const before = tf.memory().numTensors;
  const r = await runDetect(base({ scoreSteps: 'first' }));
  expect(tf.memory().numTensors).toBe(before);
  const pipe = await loadDiffusionPipeline(cond);
  try {
    const t = DDIMScheduler.fromConfig(pipe.scheduler.toConfig()).setTimesteps(4)[0] as number;
    const c = 2;
    const x = randn([3, 8, 8, 1], 0 * 100_003 + c);
    const norms = tf.tidy(() => {
      const out = pipe.unet.predict(tf.concat([x, x]), t, tf.tensor1d([c, c, c, 10, 10, 10], 'int32'));
      const [ec, eu] = tf.split(out, 2);
      return tf.sqrt(tf.sum(tf.square(tf.sub(ec as tf.Tensor, eu as tf.Tensor)), [1, 2, 3]));
    });
    const want = Array.from(norms.dataSync());
    tf.dispose([x, norms]);
    const got = r.samples.filter((s) => s.class === c).map((s) => s.magnitude);
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i] as number, 4));
  } finally {
    pipe.unet.dispose();
  }
  // Class 2's generations do not depend on which other classes are sampled.
  const only = await runDetect(base({ classes: [1, 2], scoreSteps: 'first' }));
  expect(only.samples.filter((s) => s.class === 2).map((s) => s.magnitude)).toEqual(r.samples.filter((s) => s.class === 2).map((s) => s.magnitude));
});

test('--positive copies labels generations by RMS to the nearest training image', async () => {
  const first = await runDetect(base());
  const rms = first.samples.map((s) => s.rms as number).sort((a, b) => a - b);
  const thr = ((rms[3] as number) + (rms[4] as number)) / 2;
  const r = await runDetect(base({ positive: 'copies', rmsThreshold: thr }));
  expect(r.samples.map((s) => s.positive)).toEqual(r.samples.map((s) => (s.rms as number) < thr));
  expect(r.positives).toBe(4);
  // No copy at all → no ROC: a typed error that says why.
  await expect(runDetect(base({ positive: 'copies', rmsThreshold: 0 }))).rejects.toMatchObject({ code: 'DETECT_ONE_CLASS' });
});

test('text output, and typed errors for unconditional models and bad options', async () => {
  const t = await runCli(['-q', 'detect', '-m', cond, '--per-class', '2', '--classes', '0,1', '--steps', '3', '-o', path.join(root, 'd2.json')]);
  expect(t.code).toBe(0);
  expect(t.stdout).toMatch(/AUC [\d.]+ {2}TPR@1\.0%FPR [\d.]+/);
  expect(t.stdout).toMatch(/threshold at FPR 1\.0%: magnitude > [\d.]+/);

  const uncond = await trainTiny(path.join(root, 'uncond'), { classConditional: false });
  const u = await runCli(['detect', '-m', uncond, '--steps', '3']);
  expect(u.code).toBe(2);
  expect(u.stderr).toContain('[DETECT_UNCONDITIONAL_MODEL]');
  expect(u.stderr).toContain('needs a conditional model');
  const noNull = await trainTiny(path.join(root, 'nonull'), { cfgDropout: 0 });
  expect((await runCli(['detect', '-m', noNull, '--steps', '3'])).stderr).toContain('[DETECT_NO_NULL_CLASS]');
  const same = await runCli(['detect', '-m', cond, '--classes', '3,4', '--steps', '3', '--per-class', '1']);
  expect(same.code).toBe(2);
  expect(same.stderr).toContain('[DETECT_ONE_CLASS]');
  expect((await runCli(['detect', '-m', cond, '--classes', '10'])).stderr).toContain('class 10 is not a class of this model');
  expect((await runCli(['detect', '-m', cond, '--fpr', '1.5'])).stderr).toContain('--fpr must be in (0, 1)');
  expect((await runCli(['detect', '-m', cond, '--score-steps', 'first:9', '--steps', '3'])).stderr).toContain('--score-steps first:K');
  expect((await runCli(['detect', '-m', cond, '--positive', 'maybe'])).code).toBe(1);
  expect((await runCli(['detect', '--help'])).stdout).toContain('--positive <p>');
});
