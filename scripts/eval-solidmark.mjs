#!/usr/bin/env node
// SolidMark evidence runner (Kriplani et al., arXiv 2503.00592; docs/solidmark.md).
//
// Scores a model trained on SolidMark-marked images: outpaints every keymap image's border,
// reads the predicted key and prints the (ℓ_SM, δ)-eidetic counts next to the three nulls —
// analytic chance 2δ − δ², a shuffled-key control and a random-initialised model of the same
// configuration run the same way — overall, per membership group and per duplication group,
// with the time per image. This is a thin wrapper around `diffmem audit solidmark` (the loading
// logic lives in packages/cli/src/commands/audit_solidmark.ts, the audit in @diffmem/metrics'
// runSolidMarkEvaluation); it keeps this script's flags. Runs against the built JS: `npm run build` first.
//
//   node scripts/eval-solidmark.mjs --model runs/solidmark-mnist [options]
//
//   --model DIR          marked model: a pipeline / UNet folder, or a training output folder
//                        (its newest checkpoint-NNNNNN is used)
//   --null-model X       random-init null: a model folder, "random[:SEED]" (default random:0, built
//                        from the marked model's config.json) or "none"
//   --keymap FILE        default DIR/solidmark_keymap.json (missing → the score is refused)
//   --membership FILE    default DIR/membership.json when present (checked against the keymap)
//   --data SPEC          mnist | opencv-digits:PATH (or digits:PATH) | folder:PATH | a DatasetSpec JSON;
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
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FLAGS = {
  model: '-m',
  'null-model': '--null-model',
  keymap: '--keymap',
  membership: '--membership',
  data: '--data',
  sampler: '--sampler',
  steps: '--steps',
  eta: '--eta',
  resample: '--resample',
  repeats: '--repeats',
  batch: '--batch',
  seed: '--seed',
  permutations: '--permutations',
  limit: '--limit',
  groups: '--groups',
  deltas: '--deltas',
  out: '--out',
  json: '--write-json',
};

function usage(msg) {
  if (msg) console.error(`eval-solidmark: ${msg}`);
  console.error('usage: node scripts/eval-solidmark.mjs --model DIR [--null-model random|DIR|none] [--keymap FILE] [--membership FILE]');
  console.error('       [--data SPEC] [--sampler ddpm|ddim] [--steps N] [--eta X] [--resample U] [--repeats R] [--batch B]');
  console.error('       [--seed S] [--limit N] [--groups a,b] [--deltas a,b,c] [--permutations P] [--out DIR] [--json FILE]');
  console.error('(the same as: diffmem audit solidmark --help)');
  process.exit(2);
}

const argv = process.argv.slice(2);
const cli = [];
for (let i = 0; i < argv.length; i += 2) {
  const a = argv[i];
  if (a === '--help' || a === '-h') usage();
  const flag = a.startsWith('--') ? FLAGS[a.slice(2)] : undefined;
  if (!flag) usage(`unexpected argument ${a}`);
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`);
  cli.push(flag, v);
}
if (!cli.includes('-m')) usage('--model is required');

let program;
try {
  ({ buildProgram: program } = await import(pathToFileURL(path.join(root, 'packages/cli/dist/program.js')).href));
} catch (err) {
  console.error(`eval-solidmark: cannot import packages/cli/dist (${String(err.message).split('\n')[0]}). Build first: npm run build`);
  process.exit(2);
}
// Exit codes: 0 complete, 3 incomplete (interrupted; rerun with --out to resume), 2 typed errors
// (e.g. an unmarked model), 1 anything else.
await program().parseAsync(['node', 'diffmem', 'audit', 'solidmark', ...cli]);
