#!/usr/bin/env node
/**
 * Evaluates Anti-Memorization Guidance (Chen, Liu & Xu, CVPR 2024) on a trained model folder:
 * plain sampling vs AMG (+ threshold / per-term ablations) vs GNI and the Jain et al. CFG
 * schedules, scored by nL2 (Top5%, Top1, %<1.4, %<1.6), the Fréchet distance to the held-out
 * images and time. The logic is `evaluateModelFolder` in @diffmem/guidance; this script parses
 * arguments. Uses the built JS (run `npm run build` first).
 *
 *   node scripts/eval-amg.mjs --model runs/cifar-dup/checkpoint-020000 --samples 200 --steps 50 \
 *        [--membership FILE] [--sampler ddim|ddpm] [--batch 16] [--seed 0] [--guidance-scale 3] \
 *        [--null-class 10] [--scale 100] [--no-ablations] [--out amg-eval.json] [--backend wasm|cpu]
 *        [--scheduler-config '{"clip_sample":false}']   (diffusers fields overriding the folder's)
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    membership: { type: 'string' },
    samples: { type: 'string', default: '100' },
    steps: { type: 'string', default: '50' },
    sampler: { type: 'string', default: 'ddim' },
    batch: { type: 'string', default: '16' },
    seed: { type: 'string', default: '0' },
    'guidance-scale': { type: 'string' },
    'null-class': { type: 'string' },
    scale: { type: 'string', default: '100' },
    'no-ablations': { type: 'boolean', default: false },
    out: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
    'scheduler-config': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help || !values.model) {
  console.log('usage: node scripts/eval-amg.mjs --model DIR [--samples N] [--steps S] [--sampler ddim|ddpm] [--batch B] [--seed S]\n' +
    '       [--membership FILE] [--guidance-scale W] [--null-class ID] [--scale C3] [--no-ablations] [--out FILE] [--backend wasm|cpu]');
  process.exit(values.help ? 0 : 2);
}

const int = (name) => {
  const v = Number(values[name]);
  if (!Number.isInteger(v)) throw new Error(`--${name} must be an integer, got ${values[name]}`);
  return v;
};
const float = (name) => {
  const v = Number(values[name]);
  if (!Number.isFinite(v)) throw new Error(`--${name} must be a number, got ${values[name]}`);
  return v;
};
if (values.sampler !== 'ddim' && values.sampler !== 'ddpm') throw new Error(`--sampler must be ddim or ddpm, got ${values.sampler}`);

await import(values.backend === 'cpu' ? '@tensorflow/tfjs-backend-cpu' : '@tensorflow/tfjs-backend-wasm');
await tf.setBackend(values.backend);

const core = await import('@diffmem/core');
const { evaluateModelFolder } = await import('@diffmem/guidance');
// core's model loader (from its index when exported, else its built module).
const loadModel = core.loadUNet2DFromFolder ?? (await import('../packages/core/dist/models/pretrained.js')).loadUNet2DFromFolder;

const report = await evaluateModelFolder({
  modelDir: values.model,
  ...(values.membership ? { membershipFile: values.membership } : {}),
  loadModel,
  sampler: values.sampler,
  numSamples: int('samples'),
  batchSize: int('batch'),
  numInferenceSteps: int('steps'),
  seed: int('seed'),
  scale: float('scale'),
  ablations: !values['no-ablations'],
  ...(values['guidance-scale'] !== undefined ? { guidanceScale: float('guidance-scale') } : {}),
  ...(values['null-class'] !== undefined ? { nullClassId: int('null-class') } : {}),
  ...(values['scheduler-config'] !== undefined ? { schedulerConfig: JSON.parse(values['scheduler-config']) } : {}),
  outFile: values.out ?? path.join(values.model, 'amg-eval.json'),
  log: (line) => console.error(line),
});
console.log(report.table);
console.error(`report: ${values.out ?? path.join(values.model, 'amg-eval.json')}`);
