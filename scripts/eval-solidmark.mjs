#!/usr/bin/env node
// SolidMark evidence runner (Kriplani et al., arXiv 2503.00592; docs/solidmark.md).
//
// Scores a model trained on SolidMark-marked images: outpaints every keymap image's border,
// reads the predicted key and prints the (ℓ_SM, δ)-eidetic counts next to the three nulls —
// analytic chance 2δ − δ², a shuffled-key control and a random-initialised model of the same
// configuration run the same way — overall, per membership group and per duplication group,
// with the time per image. All logic lives in @diffmem/metrics (runSolidMarkEvaluation); this
// file parses arguments and loads files. Runs against the built JS: `npm run build` first.
//
//   node scripts/eval-solidmark.mjs --model runs/solidmark-mnist [options]
//
//   --model DIR          marked model: a pipeline / UNet folder, or a training output folder
//                        (its newest checkpoint-NNNNNN is used)
//   --null-model X       random-init null: a model folder, "random[:SEED]" (default random:0, built
//                        from the marked model's config.json) or "none"
//   --keymap FILE        default DIR/solidmark_keymap.json (missing → the score is refused)
//   --membership FILE    default DIR/membership.json when present (checked against the keymap)
//   --data SPEC          mnist | opencv-digits:PATH | folder:PATH | a DatasetSpec JSON;
//                        default DIR/diffmem.json's dataset, else the keymap's "mnist"
//   --sampler ddpm|ddim  default: the model's scheduler (DDPMScheduler → ddpm)
//   --steps N            reverse steps (default 250, the official --sampling-steps)
//   --eta X              DDIM η (default 0)        --resample U   RePaint resampling (default 1 = official)
//   --repeats R          outpaintings per image (default 1; the duplication study used 10)
//   --batch B            outpaintings per model call (default 8)
//   --seed S             noise seed (default 0)    --permutations P  shuffled-key draws (default 200)
//   --limit N            first N keymap images     --groups a,b   duplicated,ordinary,held-out
//   --deltas a,b,c       default 0.1,0.05,0.005
//   --out DIR            resumable results folder (rerun to continue after Ctrl-C / a crash)
//   --json FILE          also write the summary as JSON
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => pathToFileURL(path.join(root, 'packages', p)).href;

function usage(msg) {
  if (msg) console.error(`eval-solidmark: ${msg}`);
  console.error('usage: node scripts/eval-solidmark.mjs --model DIR [--null-model random|DIR|none] [--keymap FILE] [--membership FILE]');
  console.error('       [--data SPEC] [--sampler ddpm|ddim] [--steps N] [--eta X] [--resample U] [--repeats R] [--batch B]');
  console.error('       [--seed S] [--limit N] [--groups a,b] [--deltas a,b,c] [--permutations P] [--out DIR] [--json FILE]');
  process.exit(2);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') usage();
    if (!a.startsWith('--')) usage(`unexpected argument ${a}`);
    const key = a.slice(2);
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`);
    out[key] = v;
    i++;
  }
  return out;
}

const num = (v, name) => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) usage(`${name} must be a number, got ${v}`);
  return x;
};

// @diffmem/core's package index may not re-export everything yet: fall back to its dist modules.
async function coreExport(name, sub) {
  const core = await import('@diffmem/core');
  if (core[name] !== undefined) return core[name];
  const mod = await import(dist(`core/dist/${sub}`));
  if (mod[name] === undefined) throw new Error(`@diffmem/core has no ${name} (looked in dist/${sub}); run npm run build`);
  return mod[name];
}

async function loadModelFolder(dir, sampler) {
  if (!fs.existsSync(dir)) usage(`model folder ${dir} does not exist`);
  const loadUNet2DFromFolder = await coreExport('loadUNet2DFromFolder', 'models/pretrained.js');
  const readSchedulerConfigFromFolder = await coreExport('readSchedulerConfigFromFolder', 'models/pretrained.js');
  const latestCheckpoint = await coreExport('latestCheckpoint', 'training/trainer.js');
  const isModel = ['model_index.json', 'config.json', path.join('unet', 'config.json')].some((f) => fs.existsSync(path.join(dir, f)));
  const folder = isModel ? dir : latestCheckpoint(dir);
  if (!folder) usage(`${dir} holds neither a model (config.json / unet/config.json) nor checkpoint-NNNNNN folders`);
  const unet = await loadUNet2DFromFolder(folder);
  const json = (await readSchedulerConfigFromFolder(folder)) ?? { _class_name: 'DDPMScheduler' };
  const kind = sampler ?? (json._class_name === 'DDIMScheduler' ? 'ddim' : 'ddpm');
  if (kind !== 'ddpm' && kind !== 'ddim') usage(`--sampler must be ddpm or ddim, got ${kind}`);
  const Scheduler = await coreExport(kind === 'ddim' ? 'DDIMScheduler' : 'DDPMScheduler', 'schedulers/index.js');
  return { folder, unet, scheduler: Scheduler.fromConfig(json), sampler: kind };
}

function parseDataSpec(s) {
  if (s.startsWith('{')) return JSON.parse(s);
  if (s === 'mnist') return { source: 'mnist' };
  const [src, ...rest] = s.split(':');
  if ((src === 'opencv-digits' || src === 'folder') && rest.length) return { source: src, path: rest.join(':') };
  usage(`--data must be mnist, opencv-digits:PATH, folder:PATH or a JSON DatasetSpec, got ${s}`);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (!a.model) usage('--model is required');
  const core = await import('@diffmem/core');
  const sm = await import(dist('metrics/dist/solidmark/index.js'));
  const backend = await core.selectBackend({ prefer: ['node-gpu', 'node', 'wasm', 'cpu'] });
  console.error(`backend: ${backend.reason}`);

  const t0 = performance.now();
  const model = await loadModelFolder(a.model, a.sampler);
  console.error(`model: ${model.folder} (${model.unet.info.sampleSize}px ×${model.unet.info.inChannels}, ${model.sampler} sampler)`);

  const keymapFile = a.keymap ?? path.join(model.folder, sm.SOLIDMARK_KEYMAP_FILE);
  // A missing keymap is passed on as null: the audit refuses it with UnmarkedModelError.
  const keymap = fs.existsSync(keymapFile) ? sm.loadSolidMarkKeymap(keymapFile) : null;
  if (!keymap) console.error(`no keymap at ${keymapFile}`);
  const memFile = a.membership ?? path.join(model.folder, 'membership.json');
  const membership = fs.existsSync(memFile) ? core.loadMembership(memFile) : undefined;
  if (a.membership && !membership) usage(`membership ${a.membership} does not exist`);

  let spec;
  if (a.data) spec = parseDataSpec(a.data);
  else if (fs.existsSync(path.join(model.folder, 'diffmem.json'))) spec = JSON.parse(fs.readFileSync(path.join(model.folder, 'diffmem.json'), 'utf8')).dataset;
  if (!spec && keymap?.dataset === 'mnist') spec = { source: 'mnist' };
  if (!spec && keymap) usage(`cannot tell where dataset "${keymap.dataset}" comes from: pass --data`);
  if (spec && keymap && spec.channels === undefined) spec = { ...spec, channels: keymap.channels };
  const loadDatasetFromSpec = await coreExport('loadDatasetFromSpec', 'data/dataset.js');
  const dataset = spec ? loadDatasetFromSpec(spec) : { images: null, records: [] };

  let nullDenoiser;
  let nullModelId;
  const nm = a['null-model'] ?? 'random:0';
  if (nm.startsWith('random')) {
    const UNet2DModel = await coreExport('UNet2DModel', 'models/unet_2d.js');
    const toJSON = await coreExport('unet2DConfigToJSON', 'models/unet_2d_config.js');
    const seed = Number(nm.split(':')[1] ?? 0);
    nullDenoiser = UNet2DModel.fromConfig(toJSON(model.unet.config), { seed });
    nullModelId = `random-init:${seed}`;
  } else if (nm !== 'none') {
    nullDenoiser = (await loadModelFolder(nm, model.sampler)).unet;
    nullModelId = path.resolve(nm);
  }
  console.error(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; random-init null: ${nullModelId ?? 'none'}`);

  const ctrl = new AbortController();
  process.once('SIGINT', () => {
    console.error('SIGINT: finishing the current step; finished images are kept (use --out to resume)');
    ctrl.abort();
  });
  const t1 = performance.now();
  const { report, text } = await sm.runSolidMarkEvaluation({
    denoiser: model.unet,
    ...(nullDenoiser ? { nullDenoiser, nullModelId } : {}),
    scheduler: model.scheduler,
    numInferenceSteps: num(a.steps, '--steps') ?? 250,
    ...(a.eta !== undefined ? { eta: num(a.eta, '--eta') } : {}),
    ...(a.resample !== undefined ? { resample: num(a.resample, '--resample') } : {}),
    dataset,
    keymap,
    ...(membership ? { membership } : {}),
    ...(a.groups ? { groups: a.groups.split(',') } : {}),
    ...(a.limit ? { limit: num(a.limit, '--limit') } : {}),
    repeats: num(a.repeats, '--repeats') ?? 1,
    batchSize: num(a.batch, '--batch') ?? 8,
    seed: num(a.seed, '--seed') ?? 0,
    ...(a.out ? { outDir: a.out } : {}),
    modelId: path.resolve(model.folder),
    summary: {
      ...(a.deltas ? { deltas: a.deltas.split(',').map((d) => num(d, '--deltas')) } : {}),
      ...(a.permutations ? { permutations: num(a.permutations, '--permutations') } : {}),
    },
    signal: ctrl.signal,
    log: (line) => console.error(line),
  });
  console.log(text);
  console.log(`Wall time: ${((performance.now() - t1) / 1000).toFixed(1)} s for ${report.computed} outpainted image(s) this run`);
  if (a.json) core.writeFileAtomicSync(a.json, JSON.stringify({ complete: report.complete, summary: report.summary }, null, 1));
  dataset.images?.dispose();
  model.unet.dispose();
  nullDenoiser?.dispose();
  process.exitCode = report.complete ? 0 : 3;
}

main().catch((err) => {
  console.error(`eval-solidmark: ${err?.name ?? 'Error'}${err?.code ? ` [${err.code}]` : ''}: ${err?.message ?? err}`);
  process.exit(1);
});
