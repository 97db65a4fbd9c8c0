// auditInvMM: results folder, resume, interruption, settings changes, non-finite images, input
// validation, and the worker-thread path (which needs the compiled dist/ build).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ConfigError, ShapeError, ValueRangeError } from '@diffmem/core';
import { auditInvMM, type InvMMAuditEvent } from '../audit.js';
import type { InvMMRecord } from '../invert.js';
import { invmmImageSeed, readRecordFile, recordFileName, recordFromJSON, recordToJSON } from '../record_io.js';
import { rmsReplicationTest } from '../replication.js';
import { CH, FAST, S, empiricalModel, nanForClass, randomImages } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../../../..');
const rms = rmsReplicationTest({ threshold: 0.05 });
const tmpDirs: string[] = [];
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'invmm-audit-'));
  tmpDirs.push(d);
  return d;
};

let train: tf.Tensor4D;
let targets: tf.Tensor4D; // [dup training image, ordinary training image, far image]
let model: ReturnType<typeof empiricalModel>;
const ids = ['digits/a:0', 'c', 'far'];

beforeAll(async () => {
  await tf.setBackend('wasm');
  const imgs = randomImages(3, 1);
  const first = tf.slice(imgs, [0, 0, 0, 0], [1, -1, -1, -1]);
  train = tf.concat([imgs, first, first, first], 0) as tf.Tensor4D;
  targets = tf.concat([tf.slice(imgs, [0, 0, 0, 0], [2, -1, -1, -1]), tf.fill([1, S, S, CH], 0.5)], 0) as tf.Tensor4D;
  tf.dispose([imgs, first]);
  model = empiricalModel(train);
});
afterAll(() => {
  tf.dispose([train, targets]);
  model.dispose();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

const base = () => ({ ...FAST, maxSteps: 30, model, images: targets, ids, replication: rms, seed: 11 });

function sameRecords(a: InvMMRecord[], b: InvMMRecord[]): void {
  expect(a.map((r) => r.id)).toEqual(b.map((r) => r.id));
  a.forEach((r, i) => {
    const o = b[i]!;
    expect(r.status).toBe(o.status);
    expect(r.score).toBe(o.score);
    expect(r.steps).toBe(o.steps);
    expect(Buffer.from(r.mu.buffer).equals(Buffer.from(o.mu.buffer))).toBe(true);
    expect(Buffer.from(r.logvar.buffer).equals(Buffer.from(o.logvar.buffer))).toBe(true);
    expect(r.checks.map((c) => c.similarities)).toEqual(o.checks.map((c) => c.similarities));
  });
}

describe('auditInvMM (sequential)', () => {
  test('writes one record per image plus a manifest; a rerun resumes everything', async () => {
    const dir = tmp();
    const events: InvMMAuditEvent[] = [];
    const before = tf.memory().numTensors;
    const first = await auditInvMM({ ...base(), resultsDir: dir, onProgress: (e) => events.push(e) });
    expect(tf.memory().numTensors).toBe(before);
    expect(first.records.map((r) => r.status)).toEqual(['replicated', 'replicated', 'not-replicated']);
    expect(first.records[0]!.score).toBeLessThan(first.records[1]!.score); // duplicated < ordinary
    expect(first).toMatchObject({ computed: 3, resumed: 0, interrupted: false });
    expect(events.filter((e) => e.type === 'image').map((e) => (e as { done: number }).done)).toEqual([1, 2, 3]);
    expect(events.some((e) => e.type === 'check')).toBe(true);
    // files: stable names, far image stored as score null / replicated false
    for (const id of ids) expect(fs.existsSync(path.join(dir, 'records', recordFileName(id)))).toBe(true);
    const farJson = JSON.parse(fs.readFileSync(path.join(dir, 'records', recordFileName('far')), 'utf8'));
    expect(farJson).toMatchObject({ id: 'far', score: null, replicated: false, status: 'not-replicated' });
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'diffmem-invmm-audit', counts: { finished: 3, replicated: 2, notReplicated: 1, nonFinite: 0 } });
    expect(manifest.items.map((i: { id: string }) => i.id)).toEqual(ids);
    // the record's seed is a function of (audit seed, id) only
    expect(first.records[2]!.seed).toBe(invmmImageSeed(11, 'far'));

    const resumedEvents: InvMMAuditEvent[] = [];
    const again = await auditInvMM({ ...base(), resultsDir: dir, onProgress: (e) => resumedEvents.push(e) });
    expect(again).toMatchObject({ computed: 0, resumed: 3, resumedIds: ids, interrupted: false });
    expect(resumedEvents.map((e) => e.type === 'image' && [e.done, e.resumed])).toEqual([[1, true], [2, true], [3, true]]);
    sameRecords(again.records, first.records);
  });

  test('an interrupted audit loses nothing: the rerun finishes with the same results as an uninterrupted one', async () => {
    const reference = await auditInvMM(base());
    const dir = tmp();
    const ctl = new AbortController();
    const cut = await auditInvMM({ ...base(), resultsDir: dir, signal: ctl.signal, onProgress: (e) => e.type === 'image' && ctl.abort() });
    expect(cut.interrupted).toBe(true);
    expect(cut.records.map((r) => r.id)).toEqual([ids[0]]);
    expect(fs.readdirSync(path.join(dir, 'records')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    // abort in the middle of an image: that image is dropped, not half-written
    const ctl2 = new AbortController();
    const mid = await auditInvMM({ ...base(), resultsDir: dir, signal: ctl2.signal, onProgress: (e) => e.type === 'check' && e.id === 'far' && ctl2.abort() });
    expect(mid).toMatchObject({ interrupted: true, computed: 1, resumed: 1 });
    expect(mid.records.map((r) => r.id)).toEqual(ids.slice(0, 2));
    expect(fs.readdirSync(path.join(dir, 'records')).filter((f) => f.endsWith('.json'))).toHaveLength(2);
    const rest = await auditInvMM({ ...base(), resultsDir: dir });
    expect(rest).toMatchObject({ computed: 1, resumed: 2, interrupted: false });
    sameRecords(rest.records, reference.records);
  });

  test('other settings in the same folder are refused unless overwrite', async () => {
    const dir = tmp();
    await auditInvMM({ ...base(), images: tf.slice(targets, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D, ids: ['x'], resultsDir: dir });
    await expect(auditInvMM({ ...base(), ids: ['x', 'y', 'z'], resultsDir: dir, lambdaIncrement: 1e-3 })).rejects.toThrow(/other settings/);
    const redo = await auditInvMM({ ...base(), ids: ['x', 'y', 'z'], resultsDir: dir, lambdaIncrement: 1e-3, overwrite: true });
    expect(redo).toMatchObject({ computed: 3, resumed: 0 });
    expect(redo.records[0]!.config.lambdaIncrement).toBe(1e-3);
    // adding images with the same settings extends the folder
    const more = await auditInvMM({ ...base(), ids: ['x', 'y', 'w'], resultsDir: dir, lambdaIncrement: 1e-3 });
    expect(more).toMatchObject({ computed: 1, resumed: 2 });
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.items.map((i: { id: string }) => i.id).sort()).toEqual(['w', 'x', 'y', 'z']);
  });

  test('a non-finite image is recorded as such and the others are kept', async () => {
    const imgs = randomImages(3, 4);
    const cond = empiricalModel(imgs, { labels: Int32Array.from([0, 1, 2]), numClasses: 3 });
    const dir = tmp();
    const res = await auditInvMM({
      ...FAST,
      model: { denoiser: nanForClass(cond.denoiser, 1), scheduler: cond.scheduler },
      images: imgs,
      labels: [0, 1, 2],
      replication: rms,
      seed: 1,
      resultsDir: dir,
    });
    expect(res.records.map((r) => r.status)).toEqual(['replicated', 'non-finite', 'replicated']);
    const { record } = readRecordFile(path.join(dir, 'records', recordFileName('1')));
    expect(record.status).toBe('non-finite');
    expect(Number.isNaN(record.score)).toBe(true);
    expect(record.error).toMatch(/non-finite/);
    imgs.dispose();
    cond.dispose();
  });

  test('bad input is rejected before any work', async () => {
    const bytes = tf.mul(targets, 255) as tf.Tensor4D;
    await expect(auditInvMM({ ...base(), images: bytes })).rejects.toThrow(ValueRangeError);
    const big = randomImages(3, 1, 16);
    await expect(auditInvMM({ ...base(), images: big })).rejects.toThrow(ShapeError);
    await expect(auditInvMM({ ...base(), ids: ['a', 'a', 'b'] })).rejects.toThrow(/unique/);
    await expect(auditInvMM({ ...base(), ids: ['a'] })).rejects.toThrow(ShapeError);
    await expect(auditInvMM({ ...base(), workers: 2 })).rejects.toThrow(/serialisable model source/);
    const imgs = randomImages(2, 4);
    const cond = empiricalModel(imgs, { labels: Int32Array.from([0, 1]), numClasses: 2 });
    await expect(auditInvMM({ ...base(), model: cond, images: imgs, ids: ['p', 'q'] })).rejects.toThrow(ConfigError);
    tf.dispose([bytes, big, imgs]);
    cond.dispose();
  });
});

describe('record files', () => {
  test('JSON round trip keeps ∞, NaN and float32 arrays exactly; names are safe and distinct', async () => {
    const res = await auditInvMM({ ...base(), maxSteps: 10 });
    for (const r of res.records) {
      const j = JSON.parse(JSON.stringify(recordToJSON(r, 'fp')));
      const back = recordFromJSON(j);
      expect(back.fingerprint).toBe('fp');
      sameRecords([back.record], [r]);
      expect(back.record.checks).toEqual(r.checks);
    }
    const odd = { ...res.records[2]!, checks: [{ ...res.records[2]!.checks[0]!, similarities: [NaN, Infinity, 0.5] }] };
    expect(recordFromJSON(JSON.parse(JSON.stringify(recordToJSON(odd)))).record.checks[0]!.similarities).toEqual([NaN, Infinity, 0.5]);
    expect(recordFileName('a/b:c')).toMatch(/^a_b_c-[0-9a-f]{8}\.json$/);
    expect(recordFileName('a/b:c')).not.toBe(recordFileName('a_b_c'));
    expect(invmmImageSeed(1, 'x')).toBe(invmmImageSeed(1, 'x'));
    expect(invmmImageSeed(1, 'x')).not.toBe(invmmImageSeed(2, 'x'));
  });
});

// The parallel path runs compiled JS in worker threads: it needs `npm run build` (npm test builds
// first; a stale dist/ makes this test fail rather than skip).
function parallelReadiness(): string | null {
  const distDir = path.join(repoRoot, 'packages/metrics/dist/invmm');
  const task = path.join(distDir, 'worker_task.js');
  if (!fs.existsSync(task)) return `${task} is not built (run npm run build)`;
  try {
    const keys = execFileSync(process.execPath, ['--input-type=module', '-e', "import('@diffmem/core').then((m) => process.stdout.write(JSON.stringify(Object.keys(m))))"], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    const needed = ['DDPMScheduler', 'DDIMScheduler', 'AdamOptimizer', 'EmpiricalDenoiser', 'loadUNet2DFromFolder', 'latestCheckpoint'];
    const missing = needed.filter((k) => !JSON.parse(keys).includes(k));
    return missing.length ? `the built @diffmem/core does not export ${missing.join(', ')}` : null;
  } catch (err) {
    return `cannot import the built @diffmem/core: ${(err as Error).message.split('\n')[0]}`;
  }
}

describe('auditInvMM (worker threads)', () => {
  const notReady = parallelReadiness();
  const maybe = notReady ? test.skip : test;
  if (notReady) console.warn(`skipping the parallel InvMM audit test: ${notReady}`);

  maybe('two workers give the same records as the sequential audit, and resume the same way', async () => {
    const sequential = await auditInvMM(base());
    const source = {
      kind: 'module' as const,
      module: path.join(repoRoot, 'packages/metrics/dist/invmm/empirical_model.js'),
      fn: 'createEmpiricalInvMMModel',
      arg: { images: new Float32Array(train.dataSync()), shape: train.shape as [number, number, number, number] },
    };
    const dir = tmp();
    const par = await auditInvMM({ ...base(), model: source, replication: { kind: 'rms', threshold: 0.05 }, workers: 2, resultsDir: dir });
    expect(par).toMatchObject({ computed: 3, interrupted: false });
    sameRecords(par.records, sequential.records);
    const again = await auditInvMM({ ...base(), model: source, replication: { kind: 'rms', threshold: 0.05 }, workers: 2, resultsDir: dir });
    expect(again).toMatchObject({ computed: 0, resumed: 3 });
  });
});
