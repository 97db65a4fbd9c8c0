import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '@diffmem/core';
import { chanceRate, UnmarkedModelError } from '@diffmem/metrics';
import { runAuditSolidMark, type AuditSolidMarkOptions } from '../audit_solidmark.js';
import { runCli, tmpDir, trainTiny } from './harness.js';

let root: string;
let marked: string;
let unmarked: string;

beforeAll(async () => {
  await selectBackend({ prefer: ['wasm'] }); // registers core's wasm gradient kernels (training)
  root = tmpDir('solidmark');
  // 8×8 digits with a 2-pixel key border → 12×12 canvases.
  marked = await trainTiny(path.join(root, 'marked'), { solidmark: 2 });
  unmarked = await trainTiny(path.join(root, 'plain'));
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const fast = ['--steps', '4', '--batch', '8', '--permutations', '20'];

test('audit solidmark --json: eidetic counts next to the three nulls, overall and per group; resumable', async () => {
  const out = path.join(root, 'sm-out');
  const r = await runCli(['--json', 'audit', 'solidmark', '-m', marked, ...fast, '-o', out]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(j.complete).toBe(true);
  expect(j.nullModel).toBe('random-init:0');
  expect(j.sampler).toBe('ddpm');
  // 2 duplicated + 3 ordinary trained images, 2 held-out control keys; both models ran on all.
  expect(j.summary.overall.n).toBe(5);
  expect(j.summary.byGroup['held-out'].n).toBe(2);
  expect(j.computed).toBe(14);
  expect(j.summary.deltas).toEqual([0.1, 0.05, 0.005]);
  for (const c of j.summary.overall.counts) {
    expect(c.chance.rate).toBeCloseTo(chanceRate(c.delta), 12); // 2δ − δ²
    expect(c.shuffled.mean).toBeGreaterThanOrEqual(0);
    expect(c.randomInit.count).toBeGreaterThanOrEqual(0);
    expect(c.count).toBeLessThanOrEqual(5);
  }
  expect(j.summary.secondsPerImage.model).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(true);
  expect(fs.readdirSync(path.join(out, 'model'))).toHaveLength(7);

  // Rerun: everything is reused from disk and the counts are identical.
  const again = await runCli(['--json', 'audit', 'solidmark', '-m', marked, ...fast, '-o', out]);
  const k = JSON.parse(again.stdout);
  expect(k.computed).toBe(0);
  expect(k.reused).toBe(14);
  expect(k.summary.overall.counts).toEqual(j.summary.overall.counts);

  // Settings that change the results are refused on the same folder.
  const other = await runCli(['--json', 'audit', 'solidmark', '-m', marked, '--steps', '5', '-o', out]);
  expect(other.code).toBe(2);
  expect(JSON.parse(other.stdout).error.code).toBe('SOLIDMARK_AUDIT_MISMATCH');
});

test('audit solidmark text output: the table with the nulls and the time per image', async () => {
  const r = await runCli(['-q', 'audit', 'solidmark', '-m', marked, ...fast, '--groups', 'duplicated', '--null-model', 'none']);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('SolidMark audit: 2 image(s)');
  expect(r.stdout).toMatch(/chance 2δ−δ²/);
  expect(r.stdout).toContain('shuffled keys');
  expect(r.stdout).toContain('not run'); // no random-init model
  expect(r.stdout).toMatch(/Time per image: model [\d.]+ s/);
});

test('a model trained without marks → UnmarkedModelError, exit code 2', async () => {
  const r = await runCli(['audit', 'solidmark', '-m', unmarked, ...fast]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/^error \[SOLIDMARK_NO_KEYMAP\]: no SolidMark keymap/m);
  expect(r.stderr).toContain('diffmem train --solidmark');
  const j = await runCli(['--json', 'audit', 'solidmark', '-m', unmarked, ...fast]);
  expect(j.code).toBe(2);
  expect(JSON.parse(j.stdout).error.code).toBe('SOLIDMARK_NO_KEYMAP');
  const o: AuditSolidMarkOptions = { model: unmarked, nullModel: 'none', steps: 4, repeats: 1, batch: 8, seed: 0, quiet: true };
  await expect(runAuditSolidMark(o)).rejects.toBeInstanceOf(UnmarkedModelError);
});

test('bad input: typed errors and option errors name the problem; no tensors leak', async () => {
  const o: AuditSolidMarkOptions = { model: marked, nullModel: 'random:0', steps: 3, repeats: 1, batch: 8, seed: 0, quiet: true, limit: 1, permutations: 5 };
  const before = tf.memory().numTensors;
  const r = await runAuditSolidMark(o);
  expect(r.report.results).toHaveLength(1);
  expect(tf.memory().numTensors).toBe(before);

  const missing = await runCli(['audit', 'solidmark', '-m', path.join(root, 'nope')]);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('[MODEL_NOT_FOUND]');
  const badNull = await runCli(['audit', 'solidmark', '-m', marked, '--null-model', 'random:x']);
  expect(badNull.code).toBe(2);
  expect(badNull.stderr).toContain('--null-model random:SEED');
  const badGroup = await runCli(['audit', 'solidmark', '-m', marked, '--groups', 'members']);
  expect(badGroup.code).toBe(1);
  expect(badGroup.stderr).toContain('--groups must be a comma list of duplicated, ordinary, held-out');
  const badDelta = await runCli(['audit', 'solidmark', '-m', marked, '--deltas', '0.1,2']);
  expect(badDelta.stderr).toContain('--deltas must be');
  const help = await runCli(['audit', 'solidmark', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('--null-model');
  expect(tf.memory().numTensors).toBe(before);
});
