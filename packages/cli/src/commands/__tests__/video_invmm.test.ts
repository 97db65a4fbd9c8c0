// Regression tests for two command bugs found while documenting the CLI: `video decode` wrote
// into a folder named after a printf pattern, and `audit invmm` refused class-conditional models.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '@diffmem/core';
import { runCli, tmpDir, trainTiny } from './harness.js';

// packages/cli/src/commands/__tests__ → five levels up.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const clip = path.resolve(repoRoot, '../shared/data/Megamind.avi');
const haveClip = fs.existsSync(clip);
let root: string;

beforeAll(async () => {
  await selectBackend({ prefer: ['wasm'] });
  root = tmpDir('cli-misc');
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

(haveClip ? test : test.skip)(`video decode writes frame_000000.png … into --out${haveClip ? '' : ` — skipped: ${clip} not found`}`, async () => {
  const out = path.join(root, 'frames');
  const r = await runCli(['--json', 'video', 'decode', clip, '-o', out, '--size', '32', '--max-frames', '3']);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).frames).toBe(3);
  expect(fs.readdirSync(out).sort()).toEqual(['frame_000000.png', 'frame_000001.png', 'frame_000002.png']);
});

(haveClip ? test : test.skip)(`video audit prints the content and motion verdicts${haveClip ? '' : ' — skipped: no shared data'}`, async () => {
  const bugy = path.resolve(path.dirname(clip), 'Megamind_bugy.avi');
  const r = await runCli(['-q', 'video', 'audit', bugy, '-r', clip, '--frames', '6', '--size', '32']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/content: score [\d.]+ (MEMORIZED|not memorized)/);
  expect(r.stdout).toMatch(/motion: {2}OFS ([\d.]+|–) (MEMORIZED|not memorized) \(threshold [\d.]+\)/);
});

test('audit invmm inverts the images of a class-conditional model under their labels', async () => {
  const model = await trainTiny(path.join(root, 'cond'));
  // One duplicated image keeps this test short (InvMM runs up to 100 optimisation steps).
  const r = await runCli(['--json', 'audit', 'invmm', '-m', model, '--per-group', '1', '--groups', 'duplicated', '--results', path.join(root, 'inv')]);
  expect(r.stderr).not.toContain('pass labels');
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(Object.keys(j.groups)).toEqual(['duplicated']);
  expect(j.groups.duplicated.count).toBe(1);
  expect(j.records ?? null).toBeNull(); // the summary, not the per-image records
}, 300_000);
