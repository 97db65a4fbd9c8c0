import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { decodeImageBytes, selectBackend } from '@diffmem/core';
import { runSampleAMG, type SampleAMGOptions, type SampleAMGResult } from '../sample_amg.js';
import { runCli, tmpDir, trainTiny } from './harness.js';

let root: string;
let model: string;

beforeAll(async () => {
  await selectBackend({ prefer: ['wasm'] });
  root = tmpDir('amg');
  model = await trainTiny(path.join(root, 'model'));
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const opts = (o: Partial<SampleAMGOptions> = {}): SampleAMGOptions => ({
  model,
  n: 4,
  steps: 5,
  scheduler: 'ddim',
  seed: 3,
  amgScale: 100,
  amgThreshold: { kind: 'official' },
  gsim: true,
  gspe: true,
  gdup: true,
  similarity: 'nl2',
  k: 50,
  alpha: 0.5,
  quiet: true,
  ...o,
});

test('sample --amg --json writes the grid and a per-step log (σ_t, λ_t, fired terms, neighbour ids)', async () => {
  const out = path.join(root, 'amg.png');
  const r = await runCli(['--json', 'sample', '-m', model, '--amg', '-n', '4', '--steps', '5', '--guidance-scale', '3', '--amg-threshold', 'always', '-o', out]);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout) as SampleAMGResult;
  expect(j.terms).toEqual({ sim: true, spe: true, dup: true }); // CFG model with --guidance-scale: all three
  expect(j.references).toBe(5); // 2 duplicated + 3 ordinary training images
  expect(j.guidedSteps).toEqual([5, 5, 5, 5]); // always on: G_sim fires at every step
  expect(j.finalNl2.values).toHaveLength(4);
  const png = decodeImageBytes(fs.readFileSync(out), 1, out);
  expect(png.height).toBeGreaterThanOrEqual(8);
  const log = JSON.parse(fs.readFileSync(j.log as string, 'utf8'));
  expect(j.log).toBe(path.join(root, 'amg.amg-log.json'));
  expect(log.steps).toHaveLength(5);
  expect(log.settings.threshold.kind).toBe('always');
  for (const s of log.steps) {
    expect(s.lambda).toBe('-Infinity');
    expect(s.sigma).toHaveLength(4);
    s.sigma.forEach((v: number, i: number) => expect(v).toBeCloseTo(-s.nl2[i], 12)); // σ = −nL2
    expect(s.fired.sim).toEqual([true, true, true, true]);
    for (const id of s.neighbourId) expect(String(id)).toMatch(/^mnist:/);
  }
});

test('with a threshold that never opens, AMG equals plain DDIM sampling bit for bit', async () => {
  const before = tf.memory().numTensors;
  const amgPng = path.join(root, 'quiet.png');
  // σ = −nL2 ≤ 0, so λ = 0 never lets a term fire.
  const r = await runSampleAMG(opts({ amgThreshold: { kind: 'constant', value: 0 }, out: amgPng }));
  expect(tf.memory().numTensors).toBe(before);
  expect(r.guidedSamples).toBe(0);
  const plainPng = path.join(root, 'plain.png');
  const p = await runCli(['-q', 'sample', '-m', model, '-n', '4', '--steps', '5', '--seed', '3', '-o', plainPng]);
  expect(p.code).toBe(0);
  expect(Buffer.compare(fs.readFileSync(amgPng), fs.readFileSync(plainPng))).toBe(0);
  // The official schedule is a different, working configuration: G_sim only without CFG.
  const off = await runSampleAMG(opts());
  expect(off.terms).toEqual({ sim: true, spe: false, dup: false });
  expect(off.threshold.kind).toBe('saturating-exponential');
});

test('text output and bad input', async () => {
  const t = await runCli(['-q', 'sample', '-m', model, '--amg', '-n', '2', '--steps', '3', '--amg-threshold', 'constant:-1.9', '--no-gdup', '--guidance-scale', '2']);
  expect(t.code).toBe(0);
  expect(t.stdout).toMatch(/AMG sampled 2 images in [\d.]+ s \(G_sim \+ G_spe, scale 100, λ_t constant -1\.9; 5 training images\)/);
  expect(t.stdout).toMatch(/final nL2: %<1\.4 [\d.]+/);

  const noTerms = await runCli(['sample', '-m', model, '--amg', '--no-gsim', '-n', '1', '--steps', '2']);
  expect(noTerms.code).toBe(2);
  expect(noTerms.stderr).toContain('nothing would guide');
  const needs = await runCli(['sample', '-m', model, '--amg-scale', '3', '--no-gspe']);
  expect(needs.code).toBe(2);
  expect(needs.stderr).toContain('--amg-scale, --gspe need --amg');
  const workers = await runCli(['sample', '-m', model, '--amg', '--workers', '2']);
  expect(workers.stderr).toContain('drop --workers');
  const thr = await runCli(['sample', '-m', model, '--amg', '--amg-threshold', 'parabolic']);
  expect(thr.code).toBe(1);
  expect(thr.stderr).toContain('--amg-threshold must be official, constant:X');
  const cls = await runCli(['sample', '-m', model, '--amg', '--class-label', '10', '-n', '1', '--steps', '2']);
  expect(cls.stderr).toContain('--class-label 10 is not a class of this model');
  expect((await runCli(['sample', '--help'])).stdout).toContain('--no-gdup');
});
