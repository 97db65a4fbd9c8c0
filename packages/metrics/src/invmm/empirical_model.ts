/**
 * An InvMM model built from a finite training set with core's {@link EmpiricalDenoiser} (the
 * closed-form optimal denoiser — a perfectly memorizing model). Used as a known-answer reference
 * (training images invert with a small KL; images off the training set cannot be replicated) and
 * as a worker-thread model source (`{kind: 'module', module: <this file>, fn:
 * 'createEmpiricalInvMMModel', arg}`).
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  DDPMScheduler,
  EmpiricalDenoiser,
  InputError,
  type ImageDataset,
  type Membership,
  type SchedulerJson,
} from '@diffmem/core';
import type { OwnedInvMMModel } from './model.js';

/** The argument of {@link createEmpiricalInvMMModel} (structured-clone safe). */
export interface EmpiricalModelArg {
  /** Training images, display space [0, 1], [N,H,W,C] row-major (repeat an image to weight it). */
  images: Float32Array;
  shape: [number, number, number, number];
  /** Class of each training image (class-conditional), with `numClasses`. */
  labels?: Int32Array;
  numClasses?: number;
  /** The noise schedule (diffusers `scheduler_config.json`; default DDPMScheduler defaults: T = 1000, linear β). */
  schedulerConfig?: SchedulerJson;
}

/** Builds `{denoiser: EmpiricalDenoiser, scheduler, dispose}` from plain data. */
export function createEmpiricalInvMMModel(arg: EmpiricalModelArg): OwnedInvMMModel {
  const [n, h, w, c] = arg.shape;
  if (arg.images.length !== n * h * w * c) throw new ConfigError(`images hold ${arg.images.length} values, shape [${arg.shape.join(',')}] needs ${n * h * w * c}`);
  const scheduler = arg.schedulerConfig ? DDPMScheduler.fromConfig(arg.schedulerConfig) : new DDPMScheduler();
  const model = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(arg.images, arg.shape), 2), 1));
  try {
    const denoiser = new EmpiricalDenoiser(model as never, {
      alphasCumprod: scheduler.alphasCumprod,
      ...(arg.labels ? { labels: arg.labels } : {}),
      ...(arg.numClasses !== undefined ? { numClasses: arg.numClasses } : {}),
    });
    return { denoiser, scheduler, dispose: () => denoiser.dispose() };
  } finally {
    model.dispose();
  }
}

/**
 * The {@link EmpiricalModelArg} of a training run's membership: every trained image repeated
 * `copies` times (the empirical distribution of the duplicated training set), found in `dataset`
 * by id. Labels are included when the dataset is labelled and `conditional` is true.
 * @throws InputError when a membership id is not in the dataset.
 */
export function empiricalArgFromMembership(membership: Membership, dataset: ImageDataset, conditional = false): EmpiricalModelArg {
  const byId = new Map(dataset.records.map((r, i) => [r.id, i]));
  const [, h, w, c] = dataset.images.shape;
  const per = h * w * c;
  const all = dataset.images.dataSync() as Float32Array;
  const rows: number[] = [];
  const labels: number[] = [];
  for (const e of membership.entries) {
    if (e.copies === 0) continue;
    const i = byId.get(e.id);
    if (i === undefined) throw new InputError('MEMBERSHIP_ID_NOT_IN_DATASET', `membership image ${e.id} is not in dataset ${dataset.name}`, { id: e.id });
    for (let k = 0; k < e.copies; k++) {
      rows.push(i);
      labels.push(e.label ?? 0);
    }
  }
  if (rows.length === 0) throw new InputError('MEMBERSHIP_EMPTY', 'the membership has no training images (copies > 0)');
  const images = new Float32Array(rows.length * per);
  rows.forEach((r, j) => images.set(all.subarray(r * per, (r + 1) * per), j * per));
  const useLabels = conditional && dataset.numClasses !== null;
  return {
    images,
    shape: [rows.length, h, w, c],
    ...(useLabels ? { labels: Int32Array.from(labels), numClasses: dataset.numClasses as number } : {}),
  };
}
