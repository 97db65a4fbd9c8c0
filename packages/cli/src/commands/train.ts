/**
 * `diffmem train`: train a small UNet2DModel DDPM on a dataset with a memorization split
 * (k duplicated images × n copies, ordinary images, held-out images), checkpointing a diffusers
 * pipeline folder that every audit command reads.
 * @module
 */
import {
  ConfigError,
  DDPMScheduler,
  loadDatasetFromSpec,
  makeMemorizationSplit,
  saveDiffusionPipeline,
  smallUNetConfig,
  trainDiffusionModel,
  trainUNet2D,
  UNet2DModel,
  type DatasetSpec,
  type TrainOptions,
  type TrainResult,
} from '@diffmem/core';
import { makeMarkedTrainingSet, markedCanvasSize, type BorderMarkSpec } from '@diffmem/metrics';
import { ProgressBar } from '../progress.js';
import { interruptSignal, type GlobalFlags } from '../util.js';

/** Options of {@link runTrain} (the CLI flags, parsed). */
export interface TrainCommandOptions extends GlobalFlags {
  out: string;
  data: string;
  size: number;
  channels: 1 | 3;
  perClass?: number;
  duplicated: number;
  /** Draw the duplicated images from these classes only (`--duplicated-classes`). */
  duplicatedClasses?: number[];
  /** With `duplicatedClasses`: those classes hold only their duplicated images (`--exclusive-duplicated-classes`). */
  exclusiveDuplicatedClasses?: boolean;
  copies: number;
  ordinary: number;
  heldOut: number;
  steps: number;
  batch: number;
  lr: number;
  widths: number[];
  layers: number;
  /** Levels with self-attention (`--attention-levels`; default [1], the second level). */
  attentionLevels?: number[];
  classConditional: boolean;
  cfgDropout: number;
  emaDecay: number;
  checkpointEvery: number;
  resume: boolean;
  seed: number;
  /** SolidMark border thickness p (`--solidmark`): train on key-bordered images (Kriplani et al.). */
  solidmark?: number;
  /** With `solidmark`: each copy of a duplicated image gets its own key (the duplication study). */
  freshKeyPerCopy?: boolean;
}

/** Turns `--data` into a dataset spec: `mnist`, `digits:PATH` (OpenCV sheet) or `folder:PATH`. */
export function parseDataSpec(data: string, size: number, channels: 1 | 3, perClass?: number): DatasetSpec {
  const [kind, ...rest] = data.split(':');
  const p = rest.join(':');
  const common = { size, channels, ...(perClass ? { perClass } : {}) };
  // Digits are padded to larger sizes (keeping stroke width) and resized down to smaller ones.
  if (kind === 'mnist') return { source: 'mnist', ...common, fit: size < 28 ? 'resize' : 'pad' };
  if (kind === 'digits') return { source: 'opencv-digits', path: p, ...common, fit: size < 20 ? 'resize' : 'pad' };
  if (kind === 'folder') return { source: 'folder', path: p, size, channels, fit: 'resize', labelsFromSubfolders: true };
  throw new ConfigError(`--data must be mnist, digits:PATH or folder:PATH, got "${data}"`);
}

/** Trains and returns the trainer's result (the model is written to `out`). */
export async function runTrain(o: TrainCommandOptions): Promise<TrainResult & { out: string; params: number }> {
  const spec = parseDataSpec(o.data, o.size, o.channels, o.perClass);
  const mark: BorderMarkSpec | null = o.solidmark !== undefined ? { kind: 'border', thickness: o.solidmark } : null;
  // Validate the mark before loading anything: a border must leave a canvas the UNet can halve.
  const canvas = mark ? markedCanvasSize(mark, o.size) : o.size;
  if (o.freshKeyPerCopy && !mark) throw new ConfigError('--fresh-key-per-copy needs --solidmark');
  const dataset = loadDatasetFromSpec(spec);
  const numClasses = dataset.numClasses ?? 0;
  const cfg = o.classConditional && o.cfgDropout > 0;
  const config = smallUNetConfig({
    sampleSize: canvas,
    channels: o.channels,
    blockOutChannels: o.widths,
    layersPerBlock: o.layers,
    ...(o.attentionLevels ? { attentionLevels: o.attentionLevels } : {}),
    ...(o.classConditional ? { numClassEmbeds: numClasses + (cfg ? 1 : 0) } : {}),
  });
  const unet = UNet2DModel.fromConfig(config, { seed: o.seed });
  const scheduler = new DDPMScheduler({ varianceType: 'fixed_small', clipSample: true });
  const membership = makeMemorizationSplit(dataset, {
    duplicated: o.duplicated,
    copies: o.copies,
    ordinary: o.ordinary,
    heldOut: o.heldOut,
    seed: o.seed,
    ...(o.duplicatedClasses ? { duplicatedClasses: o.duplicatedClasses } : {}),
    ...(o.exclusiveDuplicatedClasses ? { duplicatedClassesExclusive: true } : {}),
  });
  const bar = new ProgressBar('train', o.steps, { quiet: o.quiet || o.json });
  const common = {
    batchSize: o.batch,
    maxSteps: o.steps,
    optimizer: { kind: 'adamw', learningRate: o.lr, weightDecay: 0 },
    warmupSteps: Math.min(100, Math.floor(o.steps / 10)),
    ema: { decay: o.emaDecay, useEmaWarmup: false },
    seed: o.seed,
    logEvery: 10,
    onProgress: (p) => bar.update(p.step, `loss ${p.loss.toFixed(4)} ${p.stepsPerSecond.toFixed(2)} it/s`),
    signal: interruptSignal(),
  } satisfies Partial<TrainOptions>;
  try {
    let r: TrainResult;
    if (mark) {
      // SolidMark: every trained image is bordered with its key; the keymap is stored in every
      // checkpoint (solidmark_keymap.json) so `audit solidmark` can score the model later.
      const set = makeMarkedTrainingSet(dataset, { seed: o.seed, membership, mark, freshKeyPerCopy: o.freshKeyPerCopy ?? false });
      const nullClassId = o.classConditional && cfg ? numClasses : null;
      const extras = { membership, dataset: spec, nullClassId };
      try {
        r = await trainDiffusionModel(unet, {
          ...common,
          images: set.images,
          trainIndices: set.trainIndices,
          ...(o.classConditional && set.labels ? { labels: set.labels, classDropout: o.cfgDropout } : {}),
          ...(nullClassId !== null ? { nullClassId } : {}),
          alphasCumprod: scheduler.alphasCumprod,
          checkpoint: {
            dir: o.out,
            every: o.checkpointEvery,
            modelConfig: unet.config,
            extraFiles: set.extraFiles,
            saveModel: (dir) => saveDiffusionPipeline(dir, unet, scheduler, extras),
          },
          resume: o.resume,
        });
      } finally {
        set.images.dispose();
      }
    } else {
      r = await trainUNet2D({
      unet,
      scheduler,
      dataset,
      membership,
      datasetSpec: spec,
      classConditional: o.classConditional,
      classDropout: o.classConditional ? o.cfgDropout : 0,
      outDir: o.out,
      checkpointEvery: o.checkpointEvery,
      resume: o.resume,
      ...common,
    });
    }
    r.ema?.dispose();
    return { ...r, out: o.out, params: unet.paramCount() };
  } finally {
    unet.dispose();
    dataset.images.dispose();
  }
}
