/**
 * `diffmem detect`: inference-time memorization detection of Wen et al. (ICLR 2024) on a
 * class-conditional classifier-free-guided model. For every class c, N seeded generations are
 * sampled with DDIM + CFG and each is scored by
 *
 *   d = (1/|T'|) Σ_{t∈T'} ‖ε_θ(x_t, c) − ε_θ(x_t, ∅)‖₂
 *
 * over the chosen steps T' (`sampleWithWenScore` in `@diffmem/metrics`, one batched model call of
 * 2N per step). The per-class mean is Wen's per-prompt score. A ground truth for the ROC comes from
 * the training run: positives are either the generations of classes that hold duplicated
 * training images (`membership.json`, default) or the generations that are copies of a training
 * image (RMS ℓ2 to the nearest training image below a threshold). Prints AUC, TPR at the target
 * FPR (Wen's TPR@1%FPR convention: strictly below), the threshold calibrated on the negatives at
 * that FPR, and writes everything as JSON.
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDIMScheduler,
  InputError,
  imageGridPng,
  loadDatasetFromSpec,
  loadDiffusionPipeline,
  toDisplayRange,
  writeFileAtomicSync,
  type ImageBatch,
} from '@diffmem/core';
import { ReferenceIndex, bestAccuracy, rocAuc, sampleWithWenScore, thresholdAtFpr, tprAtFpr, type StepSelection } from '@diffmem/metrics';
import { trainingReferences } from './audit_nl2.js';
import { ProgressBar } from '../progress.js';
import type { GlobalFlags } from '../util.js';

/** How generations are labelled positive (memorized) for the ROC. */
export type DetectPositive = 'duplicated-classes' | 'copies';

/** Options of {@link runDetect} (the command's flags). */
export interface DetectOptions extends GlobalFlags {
  model: string;
  /** Generations per class (Wen: 4 per prompt; default 8). */
  perClass: number;
  /** Classes to sample (default: every class except the null class). */
  classes?: number[];
  /** DDIM steps (default 50, Wen's). */
  steps: number;
  /** CFG scale of the sampling (default 7.5, Wen's); magnitudes use the raw difference. */
  guidanceScale: number;
  /** Scored steps: `all`, `first`, `first:K` or a comma list of step indices (default all). */
  scoreSteps: string;
  positive: DetectPositive;
  /** `copies`: RMS ℓ2 ([0,1] units) below which a generation is a copy (default 0.1). */
  rmsThreshold: number;
  /** Target false-positive rate (default 0.01). */
  fpr: number;
  seed: number;
  /** JSON report file. */
  out?: string;
  /** Optional PNG grid of the generations (one row per class). */
  grid?: string;
}

/** One scored generation. */
export interface DetectSample {
  class: number;
  /** Generation index within its class. */
  index: number;
  magnitude: number;
  positive: boolean;
  /** RMS ℓ2 ([0,1] units) to the nearest training image and its id (null when the training set is unknown). */
  rms: number | null;
  nearestId: string | number | null;
}

/** Per-class summary. */
export interface DetectClass {
  class: number;
  n: number;
  /** Wen's per-condition score: mean magnitude over the class's generations. */
  meanMagnitude: number;
  /** Duplicated training images in this class (from the membership). */
  duplicatedImages: number;
  /** Generations labelled positive. */
  positives: number;
}

/** What {@link runDetect} returns (and writes to `out`). */
export interface DetectResult {
  model: string;
  positive: DetectPositive;
  settings: { perClass: number; steps: number; guidanceScale: number; scoreSteps: string; scoredStepIndices: number[]; scoredTimesteps: number[]; nullClassId: number; seed: number; rmsThreshold: number | null };
  classes: DetectClass[];
  samples: DetectSample[];
  positives: number;
  negatives: number;
  auc: number;
  targetFpr: number;
  /** Largest TPR with FPR strictly below the target (Wen's TPR@1%FPR at the default 0.01). */
  tprAtFpr: number;
  /** Flag a generation when its magnitude > threshold: calibrated on the negatives at the target FPR. */
  threshold: number;
  achievedFpr: number;
  tprAtThreshold: number;
  accuracy: number;
  seconds: number;
}

/** Parses `--score-steps`. */
export function parseScoreSteps(v: string, numSteps: number): StepSelection {
  const s = v.trim();
  if (s === 'all') return () => true;
  if (s === 'first') return [0];
  const m = /^first:(\d+)$/.exec(s);
  if (m) {
    const k = Number(m[1]);
    if (!(k >= 1 && k <= numSteps)) throw new ConfigError(`--score-steps first:K needs 1 ≤ K ≤ ${numSteps} (the DDIM steps), got "${v}"`);
    return Array.from({ length: k }, (_, i) => i);
  }
  const list = s.split(',').map((x) => Number(x.trim()));
  if (list.length === 0 || list.some((i) => !Number.isInteger(i) || i < 0 || i >= numSteps)) {
    throw new ConfigError(`--score-steps must be all, first, first:K or step indices in [0, ${numSteps}) like 0,1,2, got "${v}"`);
  }
  return list;
}

/** Runs the detection (see the module docs). */
export async function runDetect(o: DetectOptions): Promise<DetectResult> {
  const t0 = performance.now();
  if (!(o.fpr > 0 && o.fpr < 1)) throw new ConfigError(`--fpr must be in (0, 1), got ${o.fpr}`);
  if (!(o.guidanceScale >= 0)) throw new ConfigError(`--guidance-scale must be ≥ 0, got ${o.guidanceScale}`);
  const pipe = await loadDiffusionPipeline(o.model);
  const unet = pipe.unet;
  const tensorsToFree: tf.Tensor[] = [];
  try {
    const rows = unet.info.numClassEmbeds;
    if (rows === null) {
      throw new InputError(
        'DETECT_UNCONDITIONAL_MODEL',
        `${pipe.dir} holds an unconditional model: Wen et al. detection needs a conditional model (it compares ε(x_t, c) with ε(x_t, ∅)); train one with diffmem train --class-conditional --cfg-dropout 0.1`,
        { dir: pipe.dir },
      );
    }
    if (pipe.nullClassId === null) {
      throw new InputError(
        'DETECT_NO_NULL_CLASS',
        `${pipe.dir} is class-conditional but has no classifier-free-guidance null class (diffmem.json nullClassId): Wen et al. detection needs ε(x_t, ∅); train with --cfg-dropout > 0`,
        { dir: pipe.dir },
      );
    }
    const nullClassId = pipe.nullClassId;
    const allClasses = Array.from({ length: rows }, (_, c) => c).filter((c) => c !== nullClassId);
    const classes = o.classes ?? allClasses;
    for (const c of classes) {
      if (!allClasses.includes(c)) throw new ConfigError(`class ${c} is not a class of this model (0…${rows - 1}, null class ${nullClassId})`, { class: c });
    }
    if (new Set(classes).size !== classes.length) throw new ConfigError(`--classes lists a class twice: ${classes.join(',')}`);

    // The model's own DDIM grid (spacing and offset of its scheduler config).
    const ddim = DDIMScheduler.fromConfig(pipe.scheduler.toConfig());
    const timesteps = [...ddim.setTimesteps(o.steps)];
    const steps = parseScoreSteps(o.scoreSteps, timesteps.length);
    const predictionType = pipe.scheduler.config.predictionType as 'epsilon' | 'v_prediction' | 'sample';

    // Ground truth.
    const membership = pipe.membership;
    const dupPerClass = new Map<number, number>();
    if (membership) {
      for (const e of membership.entries) if (e.group === 'duplicated' && e.label !== null) dupPerClass.set(e.label, (dupPerClass.get(e.label) ?? 0) + 1);
    }
    if (o.positive === 'duplicated-classes') {
      if (!membership) throw new InputError('MEMBERSHIP_NOT_FOUND', `${pipe.dir} has no membership.json: --positive duplicated-classes needs the training membership`);
      if (membership.entries.some((e) => e.group === 'duplicated' && e.label === null)) throw new ConfigError('the membership has duplicated images without labels: use --positive copies');
    }
    // The exact training set, when known: every generation gets its RMS distance to the nearest
    // training image (the ground truth of --positive copies, and context otherwise).
    let index: ReferenceIndex | null = null;
    if (o.positive === 'copies' && (!membership || !pipe.dataset)) {
      throw new InputError('MEMBERSHIP_NOT_FOUND', `${pipe.dir} has no membership.json / diffmem.json: --positive copies needs the exact training set`);
    }
    if (membership && pipe.dataset) {
      const ds = loadDatasetFromSpec(pipe.dataset);
      try {
        const refs = trainingReferences(ds, membership);
        index = ReferenceIndex.fromImages(refs.images, { ids: refs.ids });
        refs.images.dispose();
      } finally {
        ds.images.dispose();
      }
    }

    const bar = new ProgressBar('detect', classes.length, { quiet: o.quiet || o.json });
    const samples: DetectSample[] = [];
    const perClass: DetectClass[] = [];
    let scoredStepIndices: number[] = [];
    let scoredTimesteps: number[] = [];
    try {
      for (const [ci, c] of classes.entries()) {
        // One seeded stream per class: a class's generations do not depend on which others run.
        const r = sampleWithWenScore(unet, {
          nullClass: nullClassId,
          classLabel: c,
          numGenerations: o.perClass,
          alphasCumprod: pipe.scheduler.alphasCumprod,
          timesteps,
          setAlphaToOne: ddim.config.setAlphaToOne,
          guidanceScale: o.guidanceScale,
          predictionType,
          steps,
          seed: o.seed * 100_003 + c,
          returnSamples: index !== null || o.grid !== undefined,
        });
        scoredStepIndices = r.stepIndices;
        scoredTimesteps = r.timesteps;
        let rms: number[] | null = null;
        let ids: (string | number)[] | null = null;
        if (r.samples) {
          const display = toDisplayRange(r.samples as ImageBatch<'model'>);
          r.samples.dispose();
          if (index) {
            const knn = index.search(display, { k: 1 });
            rms = knn.values.map((v) => v[0] as number);
            ids = knn.ids.map((v) => v[0] as string | number);
          }
          if (o.grid) tensorsToFree.push(display);
          else display.dispose();
        }
        const pos = r.perSample.map((_, j) => (o.positive === 'copies' ? (rms?.[j] as number) < o.rmsThreshold : (dupPerClass.get(c) ?? 0) > 0));
        r.perSample.forEach((m, j) =>
          samples.push({ class: c, index: j, magnitude: m, positive: pos[j] as boolean, rms: rms?.[j] ?? null, nearestId: ids?.[j] ?? null }),
        );
        perClass.push({ class: c, n: r.perSample.length, meanMagnitude: r.score, duplicatedImages: dupPerClass.get(c) ?? 0, positives: pos.filter(Boolean).length });
        bar.update(ci + 1, `class ${c}: ${r.score.toFixed(3)}`);
      }
      if (o.grid && tensorsToFree.length > 0) {
        const all = tf.concat(tensorsToFree, 0) as ImageBatch<'display'>;
        writeFileAtomicSync(o.grid, imageGridPng(all, o.perClass));
        all.dispose();
      }
    } finally {
      index?.dispose();
    }

    const scores = samples.map((s) => s.magnitude);
    const labels = samples.map((s) => s.positive);
    const positives = labels.filter(Boolean).length;
    const negatives = labels.length - positives;
    if (positives === 0 || negatives === 0) {
      const why =
        o.positive === 'copies'
          ? `${positives === 0 ? 'no' : 'every'} generation is a copy (RMS < ${o.rmsThreshold}): change --rms-threshold, sample more, or use --positive duplicated-classes`
          : `${positives === 0 ? 'none' : 'all'} of the sampled classes (${classes.join(',')}) hold duplicated training images: sample classes with and without duplicates (--classes)`;
      throw new InputError('DETECT_ONE_CLASS', `the ROC needs positives and negatives, but ${why}`, { positives, negatives });
    }
    const negScores = samples.filter((s) => !s.positive).map((s) => s.magnitude);
    const cal = thresholdAtFpr(negScores, o.fpr);
    const posScores = samples.filter((s) => s.positive).map((s) => s.magnitude);
    const result: DetectResult = {
      model: pipe.dir,
      positive: o.positive,
      settings: {
        perClass: o.perClass,
        steps: o.steps,
        guidanceScale: o.guidanceScale,
        scoreSteps: o.scoreSteps,
        scoredStepIndices,
        scoredTimesteps,
        nullClassId,
        seed: o.seed,
        rmsThreshold: o.positive === 'copies' ? o.rmsThreshold : null,
      },
      classes: perClass,
      samples,
      positives,
      negatives,
      auc: rocAuc(scores, labels),
      targetFpr: o.fpr,
      tprAtFpr: tprAtFpr(scores, labels, o.fpr),
      threshold: cal.threshold,
      achievedFpr: cal.fpr,
      tprAtThreshold: posScores.filter((s) => s > cal.threshold).length / posScores.length,
      accuracy: bestAccuracy(scores, labels).accuracy,
      seconds: (performance.now() - t0) / 1000,
    };
    if (o.out) writeFileAtomicSync(o.out, JSON.stringify(result, null, 1));
    return result;
  } finally {
    tf.dispose(tensorsToFree);
    unet.dispose();
  }
}

/** The human-readable report of {@link runDetect}. */
export function formatDetect(r: DetectResult): string {
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `Wen et al. detection: ${r.samples.length} generations (${r.settings.perClass} per class, ${r.settings.steps} DDIM steps, CFG ${r.settings.guidanceScale}, scored steps ${r.settings.scoreSteps}); positives = ${r.positive === 'copies' ? `copies (RMS < ${r.settings.rmsThreshold})` : 'classes with duplicated training images'}`,
    `  ${'class'.padEnd(6)} ${'n'.padStart(3)} ${'mean ‖ε_c − ε_∅‖'.padStart(17)} ${'dup. images'.padStart(11)} ${'positives'.padStart(9)}`,
    ...r.classes.map((c) => `  ${String(c.class).padEnd(6)} ${String(c.n).padStart(3)} ${c.meanMagnitude.toFixed(4).padStart(17)} ${String(c.duplicatedImages).padStart(11)} ${String(c.positives).padStart(9)}`),
    `AUC ${r.auc.toFixed(3)}  TPR@${pct(r.targetFpr)}FPR ${r.tprAtFpr.toFixed(3)}  best accuracy ${r.accuracy.toFixed(3)}  (${r.positives} positive, ${r.negatives} negative generations)`,
    `threshold at FPR ${pct(r.targetFpr)}: magnitude > ${r.threshold.toFixed(4)} (achieved FPR ${pct(r.achievedFpr)}, TPR ${pct(r.tprAtThreshold)})`,
  ];
  return lines.join('\n');
}
