#!/usr/bin/env node
// InvMM evidence run (Ma et al., ICCV 2025): invert a few duplicated / ordinary / held-out images
// of a trained model and print the score distribution per group, the AUCs duplicated-vs-ordinary
// and duplicated-vs-held-out, and the median time per image. Runs against the built packages
// (`npm run build` first). The work is done by evaluateInvMMOnMembership in
// packages/metrics/src/invmm/evaluate.ts; this file only parses arguments and loads inputs.
//
//   node scripts/eval-invmm.mjs --model runs/dup-mnist            # a training output / pipeline folder
//   node scripts/eval-invmm.mjs --empirical --membership m.json --data mnist --size 32
//                                                                 # the closed-form memorizing model
// Run with --help for every option.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as core from '@diffmem/core';

const here = path.dirname(fileURLToPath(import.meta.url));
const distInvmm = path.join(here, '..', 'packages', 'metrics', 'dist', 'invmm', 'index.js');
const distMetrics = path.join(here, '..', 'packages', 'metrics', 'dist', 'index.js');

const HELP = `usage: node scripts/eval-invmm.mjs (--model DIR | --empirical) [options]

model and data
  --model DIR            diffusers UNet / DDPMPipeline folder or training output (newest checkpoint);
                         its membership.json and diffmem.json (dataset spec) are used when present
  --empirical            use the closed-form EmpiricalDenoiser of the membership's training set
                         (a perfectly memorizing model; noise schedule from --model if given)
  --membership FILE      membership.json (default: <model>/membership.json)
  --dataset FILE         a DatasetSpec JSON (default: the model's diffmem.json dataset)
  --data SRC             mnist | opencv-digits:PATH | folder:PATH (instead of a spec)
  --size N --channels C  image size / channels for --data (default: the model's)
selection
  --per-group N          images per group, first N in membership order (default 4)
  --groups LIST          comma list of duplicated,ordinary,held-out (default all)
  --labels given|soft|none  class-conditional models: true labels (default) or inverted soft
                         labels; with --empirical, none builds an unconditional model
InvMM settings (default: preset ddpm-cifar10, the official DDPM constants)
  --preset NAME          ddpm-cifar10 | ldm-faces | sd | ddpm-cpu | cpu-quick
  --max-steps N --batch-size B --check-every C --lambda-increment D --stall-threshold X
  --verify-steps N --samples N --sampler official|scheduler --guidance LIST (e.g. 1,3)
  --metric rms|nl2|copy-descriptor   replication test (default rms); SSCD is not bundled
  --threshold T          default 0.1 (rms, RMS in [0,1] units), 1.0 (nl2), 0.95 (copy-descriptor
                         similarity) — none of them calibrated against SSCD's β = 0.5
run
  --results DIR          resumable results folder (default: <tmp>/invmm-eval-<name>)
  --workers N            worker threads (default 1 = this thread)
  --parallel MODE        images (default): one image per worker, best throughput;
                         samples: one image at a time, its samples split over this
                         thread + N-1 workers, best latency per image
  --seed S               audit seed (default 0)
  --backend LIST         backend preference (default wasm,cpu)
  --json FILE            also write the evaluation as JSON
`;

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    empirical: { type: 'boolean', default: false },
    membership: { type: 'string' },
    dataset: { type: 'string' },
    data: { type: 'string' },
    size: { type: 'string' },
    channels: { type: 'string' },
    'per-group': { type: 'string', default: '4' },
    groups: { type: 'string' },
    labels: { type: 'string', default: 'given' },
    preset: { type: 'string' },
    'max-steps': { type: 'string' },
    'batch-size': { type: 'string' },
    'check-every': { type: 'string' },
    'lambda-increment': { type: 'string' },
    'stall-threshold': { type: 'string' },
    'verify-steps': { type: 'string' },
    samples: { type: 'string' },
    sampler: { type: 'string' },
    guidance: { type: 'string' },
    metric: { type: 'string', default: 'rms' },
    threshold: { type: 'string' },
    results: { type: 'string' },
    workers: { type: 'string', default: '1' },
    parallel: { type: 'string', default: 'images' },
    seed: { type: 'string', default: '0' },
    backend: { type: 'string', default: 'wasm,cpu' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

function fail(msg) {
  process.stderr.write(`eval-invmm: ${msg}\n\n${HELP}`);
  process.exit(2);
}
const int = (k) => {
  if (a[k] === undefined) return undefined;
  const v = Number(a[k]);
  if (!Number.isInteger(v)) fail(`--${k} must be an integer, got ${a[k]}`);
  return v;
};
const num = (k) => {
  if (a[k] === undefined) return undefined;
  const v = Number(a[k]);
  if (!Number.isFinite(v)) fail(`--${k} must be a number, got ${a[k]}`);
  return v;
};

if (a.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
if (!a.model && !a.empirical) fail('pass --model DIR or --empirical');
if (!fs.existsSync(distInvmm)) fail(`${distInvmm} is missing: run "npm run build" first`);
const invmm = await import(distInvmm);
const metrics = await import(distMetrics);

const backend = await core.selectBackend({ prefer: a.backend.split(',') });

// --- the model folder (pipeline / checkpoint), its membership and dataset spec ----------------
let modelRoot = null;
let meta = { dataset: null, nullClassId: null };
if (a.model) {
  modelRoot = invmm.resolveInvMMModelFolder(a.model);
  const metaFile = path.join(modelRoot, 'diffmem.json');
  if (fs.existsSync(metaFile)) meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
}
const membershipFile = a.membership ?? (modelRoot ? path.join(modelRoot, 'membership.json') : null);
if (!membershipFile || !fs.existsSync(membershipFile)) fail(`no membership file (looked for ${membershipFile ?? '--membership'})`);
const membership = core.loadMembership(membershipFile);

// The model on this thread (also gives the image size); workers load it again from its source.
let model;
let source = null;
let info;
const schedulerJson = modelRoot ? await core.readSchedulerConfigFromFolder(modelRoot) : null;

function datasetSpec(size, channels) {
  if (a.dataset) return JSON.parse(fs.readFileSync(a.dataset, 'utf8'));
  if (a.data) {
    const [kind, ...rest] = a.data.split(':');
    const p = rest.join(':');
    const opts = { ...(size ? { size } : {}), ...(channels ? { channels } : {}) };
    if (kind === 'mnist') return { source: 'mnist', ...opts };
    if (kind === 'opencv-digits') return { source: 'opencv-digits', path: p, ...opts };
    if (kind === 'folder') return { source: 'folder', path: p, ...opts };
    fail(`--data must be mnist, opencv-digits:PATH or folder:PATH, got ${a.data}`);
  }
  if (meta.dataset) return meta.dataset;
  fail('no dataset: pass --dataset spec.json or --data (the model folder has no diffmem.json)');
}

let dataset;
if (a.empirical) {
  const size = int('size') ?? 32;
  const channels = int('channels') ?? 1;
  dataset = core.loadDatasetFromSpec(datasetSpec(size, channels));
  const conditional = a.labels !== 'none' && dataset.numClasses !== null && membership.entries.every((e) => e.label !== null);
  const arg = { ...invmm.empiricalArgFromMembership(membership, dataset, conditional), ...(schedulerJson ? { schedulerConfig: schedulerJson } : {}) };
  model = invmm.createEmpiricalInvMMModel(arg);
  source = { kind: 'module', module: path.join(here, '..', 'packages', 'metrics', 'dist', 'invmm', 'empirical_model.js'), fn: 'createEmpiricalInvMMModel', arg };
  info = model.denoiser.info;
} else {
  model = await invmm.loadInvMMModelFromFolder(modelRoot);
  source = { kind: 'folder', dir: modelRoot };
  info = model.denoiser.info;
  dataset = core.loadDatasetFromSpec(datasetSpec(int('size') ?? info.sampleSize, int('channels') ?? info.inChannels));
}
const [, dh, , dc] = dataset.images.shape;
if (dh !== info.sampleSize || dc !== info.inChannels) {
  fail(`the dataset gives ${dh}x${dh}x${dc} images but the model takes ${info.sampleSize}x${info.sampleSize}x${info.inChannels}; fix --size/--channels or the spec`);
}

// --- replication test ----------------------------------------------------------------------------
const name = path.basename(path.resolve(a.model ?? `empirical-${membership.dataset}`));
const resultsDir = a.results ?? path.join(os.tmpdir(), `invmm-eval-${name}${a.empirical ? '-empirical' : ''}`);
let replication;
if (a.metric === 'rms') {
  replication = { kind: 'rms', threshold: num('threshold') ?? 0.1 };
} else if (a.metric === 'nl2') {
  // The neighbourhood is the set of unique training images.
  const byId = new Map(dataset.records.map((r, i) => [r.id, i]));
  const train = membership.entries.filter((e) => e.copies > 0).map((e) => byId.get(e.id));
  if (train.some((i) => i === undefined)) fail('a training image of the membership is not in the dataset');
  const trainImages = core.subsetDataset(dataset, train);
  const indexDir = path.join(resultsDir, 'reference-index');
  const index = await metrics.ReferenceIndex.build([{ data: trainImages.images, ids: trainImages.records.map((r) => r.id) }], { dir: indexDir, overwrite: true });
  index.dispose();
  trainImages.images.dispose();
  replication = { kind: 'nl2', threshold: num('threshold') ?? 1.0, indexDir };
} else if (a.metric === 'copy-descriptor') {
  replication = { kind: 'copy-descriptor', threshold: num('threshold') ?? 0.95 };
} else {
  fail(`--metric must be rms, nl2 or copy-descriptor, got ${a.metric}`);
}

// --- settings -------------------------------------------------------------------------------------
const verification = {
  ...(int('verify-steps') !== undefined ? { numInferenceSteps: int('verify-steps') } : {}),
  ...(int('samples') !== undefined ? { numSamples: int('samples') } : {}),
  ...(a.sampler ? { sampler: a.sampler } : {}),
  ...(a.guidance ? { guidanceScales: a.guidance.split(',').map(Number) } : {}),
};
const settings = {
  ...(a.preset ? { preset: a.preset } : {}),
  ...(int('max-steps') !== undefined ? { maxSteps: int('max-steps') } : {}),
  ...(int('batch-size') !== undefined ? { batchSize: int('batch-size') } : {}),
  ...(int('check-every') !== undefined ? { checkEvery: int('check-every') } : {}),
  ...(num('lambda-increment') !== undefined ? { lambdaIncrement: num('lambda-increment') } : {}),
  ...(num('stall-threshold') !== undefined ? { stallThreshold: num('stall-threshold') } : {}),
  verification,
};
const workers = int('workers') ?? 1;
if (a.parallel !== 'images' && a.parallel !== 'samples') fail(`--parallel must be images or samples, got ${a.parallel}`);
const groups = a.groups ? a.groups.split(',') : undefined;

const controller = new AbortController();
process.once('SIGINT', () => {
  process.stderr.write('\ninterrupt: finishing the images in progress is skipped; finished ones are saved — rerun to resume\n');
  controller.abort();
});

process.stderr.write(
  `InvMM on ${a.empirical ? 'the empirical (memorizing) model' : modelRoot} (${info.sampleSize}x${info.sampleSize}x${info.inChannels}), ` +
    `${a['per-group']} image(s) per group, backend ${backend.backendName}, results in ${resultsDir}\n`,
);
const t0 = performance.now();
let evaluation;
try {
  evaluation = await invmm.evaluateInvMMOnMembership({
    ...settings,
    model: workers > 1 ? source : model,
    membership,
    dataset,
    perGroup: int('per-group'),
    ...(groups ? { groups } : {}),
    ...(info.numClassEmbeds !== null ? { classConditioning: a.labels === 'soft' ? 'soft' : 'given' } : {}),
    ...(meta.nullClassId !== null && meta.nullClassId !== undefined ? { nullClassId: meta.nullClassId } : {}),
    replication,
    seed: int('seed') ?? 0,
    resultsDir,
    workers,
    parallelism: a.parallel,
    modelId: a.empirical ? `empirical:${membershipFile}` : modelRoot,
    signal: controller.signal,
    onProgress: (e) => {
      if (e.type !== 'image') return;
      const r = e.record;
      const score = Number.isFinite(r.score) ? r.score.toPrecision(4) : r.status === 'non-finite' ? 'non-finite' : '∞';
      process.stderr.write(
        `  [${e.done}/${e.total}] ${e.group.padEnd(10)} ${r.id}: ${score}` +
          (e.resumed ? ' (resumed)' : ` — ${r.steps} steps, ${r.checks.length} checks, ${r.seconds.toFixed(1)} s`) +
          '\n',
      );
    },
  });
} finally {
  model.dispose();
  dataset.images.dispose();
}

process.stdout.write(`${invmm.formatInvMMEvaluation(evaluation)}\n`);
process.stdout.write(`wall clock: ${((performance.now() - t0) / 1000).toFixed(1)} s with ${workers} worker(s) (parallel ${a.parallel}) on ${backend.backendName}\n`);
if (a.json) {
  const out = {
    groups: evaluation.groups,
    auc: evaluation.auc,
    medianSecondsPerImage: evaluation.medianSecondsPerImage,
    config: evaluation.config,
    replication: evaluation.replication,
    workers,
    parallelism: a.parallel,
    records: evaluation.records.map(({ group, record }) => ({
      group,
      id: record.id,
      status: record.status,
      score: Number.isFinite(record.score) ? record.score : null,
      steps: record.steps,
      seconds: record.seconds,
    })),
  };
  fs.writeFileSync(a.json, `${JSON.stringify(out, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1)}\n`);
}
if (evaluation.interrupted) process.exitCode = 130;
