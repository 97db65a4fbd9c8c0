#!/usr/bin/env node
// The video memorization study end to end (moving digits → factorised space-time UNet → DDIM →
// content / motion memorization rates → detection AUC). All logic lives in
// @diffmem/metrics (packages/metrics/src/video/study); this script only parses arguments.
// Run `npm run build` first. Usage:
//   node scripts/study-vdm.mjs [--out DIR] [--config FILE.json] [--set section.field=value ...]
//     [--model RUN/model] [--backend wasm|cpu] [--quiet]
//   --model: sample + evaluate a model saved by an earlier run (same seed/data/split/model config).
//   node scripts/study-vdm.mjs --bench-scoring 1000: time one 16-frame clip against 1,000 clips.
// e.g. node scripts/study-vdm.mjs --out runs/vdm --set train.steps=1500 --set split.copies=80
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'packages', p);
for (const f of ['core/dist/index.js', 'metrics/dist/video/study/index.js']) {
  if (!fs.existsSync(dist(f))) {
    console.error(`missing ${dist(f)}: run \`npm run build\` first`);
    process.exit(2);
  }
}
const { registerWasmGradKernels } = await import(dist('core/dist/index.js'));
const { runVideoMemorizationStudy, resolveVideoStudyConfig, ClipMemorizationScorer } = await import(dist('metrics/dist/video/study/index.js'));
const { makeMovingDigits } = await import(dist('core/dist/index.js'));

function parseArgs(argv) {
  const o = { out: null, config: {}, backend: 'wasm', quiet: false, model: null, benchScoring: null };
  const set = (key, raw) => {
    const parts = key.split('.');
    let value;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    let node = o.config;
    for (const p of parts.slice(0, -1)) node = node[p] ??= {};
    node[parts[parts.length - 1]] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--out') o.out = next();
    else if (a === '--config') Object.assign(o.config, JSON.parse(fs.readFileSync(next(), 'utf8')));
    else if (a === '--set') {
      const kv = next();
      const eq = kv.indexOf('=');
      if (eq < 1) throw new Error(`--set expects section.field=value, got ${kv}`);
      set(kv.slice(0, eq), kv.slice(eq + 1));
    } else if (a === '--backend') o.backend = next();
    else if (a === '--quiet') o.quiet = true;
    else if (a === '--model') o.model = next();
    else if (a === '--bench-scoring') {
      o.benchScoring = Number(next());
      if (!Number.isInteger(o.benchScoring) || o.benchScoring < 1) throw new Error('--bench-scoring expects a positive integer');
    }
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 11).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
  resolveVideoStudyConfig(args.config); // validate before any work
} catch (e) {
  console.error(`study-vdm: ${e.message}`);
  process.exit(2);
}
await tf.setBackend(args.backend);
await tf.ready();
if (args.backend === 'wasm') registerWasmGradKernels();

if (args.benchScoring !== null) {
  // The study's scoring cost: N reference clips of 16 frames (the study's frame size and digits)
  // indexed once (both content embedders + object-motion profiles), then one 16-frame clip scored
  // against all of them (max-GSSCD per embedder, max OFS-k, OFS-k against the content match).
  const c = resolveVideoStudyConfig(args.config);
  const n = args.benchScoring;
  const ds = makeMovingDigits({ numClips: n + 3, numFrames: 16, size: c.data.size, digitsPerClip: c.data.digitsPerClip, source: c.data.source, seed: 123 });
  const refs = tf.slice(ds.clips, [0], [n]);
  const clipsInfo = ds.records.slice(0, n).map((r) => ({ id: r.id, group: 'ordinary', copies: 1, label: r.label }));
  let t = performance.now();
  const cpu0 = process.cpuUsage();
  const scorer = new ClipMemorizationScorer({ clips: refs, clipsInfo }, { motion: { mode: c.evaluation.motionMode, k: c.evaluation.ofsK } });
  const build = (performance.now() - t) / 1000;
  const buildCpu = (process.cpuUsage(cpu0).user + process.cpuUsage(cpu0).system) / 1e6;
  const times = [];
  for (let q = 0; q < 3; q++) {
    const clip = tf.tidy(() => tf.squeeze(tf.slice(ds.clips, [n + q], [1]), [0]));
    t = performance.now();
    const c0 = process.cpuUsage();
    scorer.score(clip);
    const cq = process.cpuUsage(c0);
    times.push(`${((performance.now() - t) / 1000).toFixed(2)} s wall (${((cq.user + cq.system) / 1e6).toFixed(2)} s CPU)`);
    clip.dispose();
  }
  scorer.dispose();
  tf.dispose([refs, ds.clips]);
  console.log(`scoring: ${n} reference clips × 16 frames at ${c.data.size}×${c.data.size}: index build ${build.toFixed(1)} s wall (${buildCpu.toFixed(1)} s CPU), ` +
    `one 16-frame clip: ${times.join(' / ')}`);
  process.exit(0);
}

const t0 = Date.now();
const report = await runVideoMemorizationStudy(args.config, {
  outDir: args.out ?? undefined,
  modelDir: args.model ?? undefined,
  log: args.quiet ? undefined : (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(5)}s] ${m}`),
});

const pct = (x) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);
const f3 = (x) => (x === null || x === undefined ? 'n/a' : x.toFixed(3));
const ev = report.evaluation;
console.log('\n== video memorization study ==');
for (const [phase, t] of Object.entries(report.timings)) console.log(`${phase.padEnd(9)} wall ${t.wallSeconds.toFixed(1)} s, cpu ${t.cpuSeconds.toFixed(1)} s`);
console.log(`training loss ${f3(report.training.firstLoss)} → ${f3(report.training.lastLoss)} (${report.training.steps} steps)`);
const row = (name, r) =>
  console.log(
    `${name.padEnd(26)} generated ${pct(r.generated)} | dup-class prompts ${pct(r.byLabel.withDuplicate)} vs other ${pct(r.byLabel.withoutDuplicate)} | ` +
      `copies of dup/ordinary clips ${r.copies.duplicated}/${r.copies.ordinary} | replicated dup ${pct(r.replicated.duplicated)} vs ordinary ${pct(r.replicated.ordinary)} | controls ${pct(r.controls)}`,
  );
for (const [name, r] of Object.entries(ev.rates.content)) row(`content (${name}, τ=${f3(ev.thresholds.content[name])})`, r);
row(`motion (OFS-${report.config.evaluation.ofsK}, τ=${f3(ev.thresholds.motion)})`, ev.rates.motion);
for (const [name, r] of Object.entries(ev.rates.contentAndMotion)) row(`content+motion (${name})`, r);
for (const name of Object.keys(ev.rates.content)) {
  const own = ev.generated.filter((g) => g.content[name].memorized).map((g) => g.content[name].motionScore);
  if (own.length) console.log(`content copies (${name}): OFS vs the copied clip ${own.map((x) => f3(x)).join(' ')}`);
}
if (Object.keys(ev.motionUndefined).length) console.log(`motion undefined: ${JSON.stringify(ev.motionUndefined)}`);
if (report.detection) {
  const d = report.detection;
  const line = (name, a) =>
    console.log(`${name.padEnd(26)} (+${a.positives}/−${a.negatives}) AUC D_c ${f3(a.content?.auc)}, D_f ${f3(a.perFrame?.auc)}, D_m ${f3(a.motion?.auc)}; TPR@1%FPR D_c ${f3(a.content?.tprAt1pctFpr)}`);
  line('detection: dup-class prompt', d.promptLevel);
  for (const [name, a] of Object.entries(d.contentCopies)) line(`detection: ${name} copies`, a);
  line('detection: motion copies', d.motionCopies);
  if (d.motionCopiesWithinDuplicatedClasses) line('  … within dup-class prompts', d.motionCopiesWithinDuplicatedClasses);
}
if (report.files.length) console.log(`wrote ${report.files.join(', ')}`);
