/**
 * UNet2DModel training and diffusers pipeline folders.
 *
 * A trained model is stored as diffusers' `DDPMPipeline` layout — `model_index.json`,
 * `unet/{config.json, diffusion_pytorch_model.safetensors}`, `scheduler/scheduler_config.json` —
 * so `DDPMPipeline.from_pretrained(dir)` in Python loads it, plus diffmem's study files:
 * `membership.json` (what was trained on, how often, what was held out) and `diffmem.json`
 * (where the images came from, and the classifier-free-guidance null class). A training run's output folder holds `checkpoint-NNNNNN/`
 * pipeline folders and a `latest` pointer; {@link loadDiffusionPipeline} accepts either.
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, InputError } from '../errors.js';
import type { DatasetSpec, ImageDataset, Membership } from '../data/dataset.js';
import { loadMembership, trainingIndices } from '../data/dataset.js';
import { writeFileAtomicSync } from '../io/image.js';
import { loadUNet2DFromFolder, saveUNet2DToFolder } from '../models/pretrained.js';
import { UNet2DModel } from '../models/unet_2d.js';
import { schedulerFromConfig } from '../schedulers/auto.js';
import { DDPMScheduler } from '../schedulers/scheduling_ddpm.js';
import type { ImageBatch } from '../tensor/types.js';
import { toModelRange } from '../tensor/convert.js';
import { latestCheckpoint, trainDiffusionModel, type TrainOptions, type TrainResult } from './trainer.js';

/** A loaded pipeline folder. Dispose `unet` when done. */
export interface DiffusionPipelineFolder {
  /** The folder the files were read from (a checkpoint folder for training outputs). */
  dir: string;
  unet: UNet2DModel;
  scheduler: DDPMScheduler;
  membership: Membership | null;
  dataset: DatasetSpec | null;
  /** The class id reserved for classifier-free guidance, when trained with class dropout. */
  nullClassId: number | null;
}

/** Options of {@link smallUNetConfig}. */
export interface SmallUNetOptions {
  sampleSize: number;
  channels: number;
  /** Widths per resolution level (default [32, 64, 64]). */
  blockOutChannels?: number[];
  layersPerBlock?: number;
  /** Embedding rows for class-conditional models (classes + 1 null row for CFG), else omitted. */
  numClassEmbeds?: number;
  /** Self-attention at all (default true); `false` overrides `attentionLevels`. */
  attention?: boolean;
  /**
   * Resolution levels (0 = full resolution) whose down/up blocks carry self-attention (default
   * [1], the second level, as google/ddpm-cifar10-32). At 32×32 and above, `[widths.length − 1]`
   * keeps attention at the coarsest level, where its cost is smallest.
   */
  attentionLevels?: number[];
  normNumGroups?: number;
}

/**
 * Down/up block type names of a small UNet whose `attentionLevels` carry attention (up blocks
 * mirror the down blocks). Shared by the image and video configs.
 * @throws ConfigError for a level outside [0, levels).
 */
export function smallUNetBlockTypes(levels: number, attentionLevels: readonly number[], dim: '2D' | '3D'): { down: string[]; up: string[] } {
  for (const l of attentionLevels) {
    if (!Number.isInteger(l) || l < 0 || l >= levels) {
      throw new ConfigError(`attention level ${l} does not exist: the UNet has levels 0…${levels - 1}`, { key: 'attentionLevels', value: l });
    }
  }
  const down = Array.from({ length: levels }, (_, i) => (attentionLevels.includes(i) ? `AttnDownBlock${dim}` : `DownBlock${dim}`));
  const up = [...down].reverse().map((d) => d.replace('Down', 'Up'));
  return { down, up };
}

/** The config fields every small diffusers-style UNet of diffmem shares (image and video). */
export function smallUNetCommonFields(o: Omit<SmallUNetOptions, 'attention' | 'attentionLevels'> & { blockOutChannels: number[] }): Record<string, unknown> {
  return {
    sample_size: o.sampleSize,
    in_channels: o.channels,
    out_channels: o.channels,
    block_out_channels: o.blockOutChannels,
    layers_per_block: o.layersPerBlock ?? 1,
    attention_head_dim: null,
    norm_num_groups: o.normNumGroups ?? 8,
    norm_eps: 1e-6,
    downsample_padding: 0,
    flip_sin_to_cos: false,
    freq_shift: 1,
    num_class_embeds: o.numClassEmbeds ?? null,
  };
}

/**
 * A diffusers `config.json` for a small UNet2DModel that trains in minutes on 2 CPU cores (the
 * google/ddpm-cifar10-32 family at reduced width: attention at the second level, GroupNorm).
 */
export function smallUNetConfig(o: SmallUNetOptions): Record<string, unknown> {
  const widths = o.blockOutChannels ?? [32, 64, 64];
  const levels = widths.length;
  if (o.sampleSize % 2 ** (levels - 1) !== 0) {
    throw new ConfigError(`sampleSize ${o.sampleSize} must be divisible by ${2 ** (levels - 1)} for ${levels} resolution levels`);
  }
  const { down, up } = smallUNetBlockTypes(levels, o.attention === false ? [] : (o.attentionLevels ?? (levels > 1 ? [1] : [])), '2D');
  const { attention: _a, attentionLevels: _l, blockOutChannels: _w, ...rest } = o;
  const common = smallUNetCommonFields({ ...rest, blockOutChannels: widths });
  return { _class_name: 'UNet2DModel', ...common, down_block_types: down, up_block_types: up };
}

/** Saves a pipeline folder (atomically per file). */
export async function saveDiffusionPipeline(
  dir: string,
  unet: UNet2DModel,
  scheduler: DDPMScheduler,
  extras: { membership?: Membership; dataset?: DatasetSpec; nullClassId?: number | null } = {},
): Promise<void> {
  await saveUNet2DToFolder(unet, path.join(dir, 'unet'));
  writeFileAtomicSync(path.join(dir, 'scheduler', 'scheduler_config.json'), `${JSON.stringify(scheduler.toConfig(), null, 2)}\n`);
  writeFileAtomicSync(
    path.join(dir, 'model_index.json'),
    `${JSON.stringify({ _class_name: 'DDPMPipeline', _diffusers_version: '0.30.0', unet: ['diffusers', 'UNet2DModel'], scheduler: ['diffusers', 'DDPMScheduler'] }, null, 2)}\n`,
  );
  if (extras.membership) writeFileAtomicSync(path.join(dir, 'membership.json'), JSON.stringify(extras.membership, null, 1));
  if (extras.dataset || extras.nullClassId !== undefined) {
    writeFileAtomicSync(path.join(dir, 'diffmem.json'), JSON.stringify({ dataset: extras.dataset ?? null, nullClassId: extras.nullClassId ?? null }, null, 1));
  }
}

/**
 * Loads a pipeline folder, a training output folder (its newest checkpoint) or a bare UNet folder
 * (then with diffusers' default DDPMScheduler).
 */
export async function loadDiffusionPipeline(dir: string): Promise<DiffusionPipelineFolder> {
  if (!fs.existsSync(dir)) throw new InputError('MODEL_NOT_FOUND', `model folder ${dir} does not exist`, { dir });
  const ck = fs.existsSync(path.join(dir, 'model_index.json')) ? null : latestCheckpoint(dir);
  const root = ck ?? dir;
  const unet = await loadUNet2DFromFolder(root);
  try {
    const schedFile = [path.join(root, 'scheduler', 'scheduler_config.json'), path.join(root, 'scheduler_config.json')].find((f) => fs.existsSync(f));
    let scheduler: DDPMScheduler;
    if (schedFile) {
      const json = JSON.parse(fs.readFileSync(schedFile, 'utf8')) as Record<string, unknown>;
      const s = json['_class_name'] === 'DDPMScheduler' ? schedulerFromConfig(json) : DDPMScheduler.fromConfig(json);
      scheduler = s as DDPMScheduler;
    } else {
      scheduler = new DDPMScheduler();
    }
    const memFile = path.join(root, 'membership.json');
    const membership = fs.existsSync(memFile) ? loadMembership(memFile) : null;
    const metaFile = path.join(root, 'diffmem.json');
    const meta = fs.existsSync(metaFile)
      ? (JSON.parse(fs.readFileSync(metaFile, 'utf8')) as { dataset: DatasetSpec | null; nullClassId: number | null })
      : { dataset: null, nullClassId: null };
    return { dir: root, unet, scheduler, membership, dataset: meta.dataset, nullClassId: meta.nullClassId };
  } catch (err) {
    unet.dispose();
    throw err;
  }
}

/** Options of {@link trainUNet2D}. */
export interface TrainUNet2DOptions
  extends Omit<TrainOptions, 'images' | 'trainIndices' | 'labels' | 'alphasCumprod' | 'checkpoint' | 'nullClassId'> {
  unet: UNet2DModel;
  scheduler: DDPMScheduler;
  dataset: ImageDataset;
  membership: Membership;
  /** Where to reproduce the dataset from (stored as `diffmem.json`). */
  datasetSpec?: DatasetSpec;
  /** Train class-conditionally on the dataset labels (the model needs `num_class_embeds`). */
  classConditional?: boolean;
  /** Output folder: checkpoints are written here. */
  outDir: string;
  checkpointEvery?: number;
  /** Extra JSON files stored in every checkpoint (e.g. a SolidMark keymap). */
  extraFiles?: Record<string, unknown>;
}

/**
 * Trains a UNet2DModel on the training set of `membership` (duplicates repeated), checkpointing
 * pipeline folders into `outDir`. Class-conditional training with `classDropout` > 0 uses the
 * last embedding row as the null class.
 */
export async function trainUNet2D(o: TrainUNet2DOptions): Promise<TrainResult> {
  const { unet, scheduler, dataset, membership } = o;
  const ds = dataset.images.shape;
  if (ds[1] !== unet.config.sample_size || ds[2] !== unet.config.sample_size || ds[3] !== unet.config.in_channels) {
    throw new ConfigError(
      `dataset images are ${ds[1]}x${ds[2]}x${ds[3]} but the UNet expects ${unet.config.sample_size}x${unet.config.sample_size}x${unet.config.in_channels}`,
    );
  }
  let labels: Int32Array | undefined;
  let nullClassId: number | null = null;
  if (o.classConditional) {
    const rows = unet.info.numClassEmbeds;
    if (rows === null) throw new ConfigError('classConditional training needs a UNet with num_class_embeds');
    if (dataset.numClasses === null) throw new ConfigError(`dataset ${dataset.name} has no labels for class-conditional training`);
    const cfg = (o.classDropout ?? 0) > 0;
    const need = dataset.numClasses + (cfg ? 1 : 0);
    if (rows < need) throw new ConfigError(`the UNet has ${rows} class rows; ${need} are needed (${dataset.numClasses} classes${cfg ? ' + 1 null row' : ''})`);
    labels = Int32Array.from(dataset.records, (r) => r.label ?? 0);
    if (cfg) nullClassId = rows - 1;
  }
  const images = tf.tidy(() => toModelRange(dataset.images)) as ImageBatch<'model'>;
  const extras = { membership, ...(o.datasetSpec ? { dataset: o.datasetSpec } : {}), nullClassId };
  try {
    return await trainDiffusionModel(unet, {
      ...o,
      images,
      trainIndices: trainingIndices(membership),
      ...(labels ? { labels } : {}),
      ...(nullClassId !== null ? { nullClassId } : {}),
      alphasCumprod: scheduler.alphasCumprod,
      predictionType: o.predictionType ?? (scheduler.config.predictionType as TrainOptions['predictionType']),
      checkpoint: {
        dir: o.outDir,
        every: o.checkpointEvery ?? 500,
        modelConfig: unet.config,
        ...(o.extraFiles ? { extraFiles: o.extraFiles } : {}),
        saveModel: (dir) => saveDiffusionPipeline(dir, unet, scheduler, extras),
      },
    });
  } finally {
    images.dispose();
  }
}
